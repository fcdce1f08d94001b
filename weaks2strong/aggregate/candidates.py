"""Kept importable because a cache key names it: conf/aggregator/gen_bayes.yaml's
``model._target_: weaks2strong.aggregate.candidates.BayesianCandidateAggregator`` is part of
``config_slice(cfg.aggregator)``, which keys gen_aggregate (and everything downstream); pointing it at
``weaks2strong.aggregate.generation.bayes`` would invalidate those artifacts. The code lives in
``weaks2strong/aggregate/generation/``."""
from weaks2strong.aggregate.generation.bayes import BayesianCandidateAggregator  # noqa: F401  (cache keys)
