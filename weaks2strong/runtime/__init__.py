"""The infrastructure every stage stands on: artifacts and the per-example cache, errors, the
config schema and its checks, processes (distributed, launch), sweeps and Hydra resolvers."""
