"""The generation path (a task with free-form answers): ``teach`` (propose, pool, score) →
``aggregate`` → ``distill`` → ``align`` (``align=dpo``) → ``evaluate``, wired by ``run``."""
