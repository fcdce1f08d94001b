"""The search path (``cfg.search`` set, on a generation task): ``guide`` (the small model tuned on
weak_train) → ``answer`` (each method's answers per split) → ``evaluate``, wired by ``run``."""
