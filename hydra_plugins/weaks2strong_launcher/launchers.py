"""``hydra/launcher=slurm|local``: hydra-submitit-launcher's launchers whose failed jobs exit non-zero
(``weaks2strong.runtime.scheduler``). Hydra instantiates a launcher only if its class is defined here,
under the ``hydra_plugins`` namespace."""
from hydra_plugins.hydra_submitit_launcher import submitit_launcher

from weaks2strong.runtime.scheduler import FailedJobsExitNonZero


class SlurmLauncher(FailedJobsExitNonZero, submitit_launcher.SlurmLauncher):
    pass


class LocalLauncher(FailedJobsExitNonZero, submitit_launcher.LocalLauncher):
    pass
