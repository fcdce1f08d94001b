"""From config to objects: the slice of the config that keys a stage, and ``instantiate`` with a
one-line error naming the key."""
from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from weaks2strong.runtime.errors import UserInputError

# config keys that change how a stage runs but not what it computes
# share_prompt: equal log-probs, tested; keep_checkpoint: whether a finished stage's resume checkpoint stays
VOLATILE_KEYS = ("progress", "device", "models_dir", "share_prompt", "keep_checkpoint")
# a teacher's inference batch size changes only its speed (the student's changes its training)
TEACHER_VOLATILE_KEYS = (*VOLATILE_KEYS, "batch_size")


def config_slice(cfg: DictConfig, ignore: tuple[str, ...] = VOLATILE_KEYS) -> dict:
    """The config slice that keys a stage, without keys that do not change its result."""
    container = OmegaConf.to_container(cfg, resolve=True)
    return {k: v for k, v in container.items() if k not in ignore} if isinstance(container, dict) else container


def settings_for(cfg: DictConfig, node: str, ceiling: bool) -> DictConfig:
    """``cfg`` with a student's settings (``node``: ``student``, or ``align`` for a DPO'd student) as the
    student trains with them or, ``ceiling=True``, as the ceiling (PGR's denominator) does.

    ``<node>.ceiling`` holds the ceiling's own settings: the student YAML writes there a copy of its
    optimizer (a YAML alias, so the two start equal). The ceiling lays it over the rest of the node; the
    student drops it. An override of the student's settings (a sweep: ``hparams_search=optuna`` tunes
    ``student.model.optimizer.lr``) so moves the student alone, and every trial reuses one ceiling;
    ``<node>.ceiling.…`` moves the ceiling. The node that keys a stage never holds ``ceiling``, so a
    run that overrides nothing has the keys it had before the copy existed."""
    if node not in cfg or "ceiling" not in cfg[node]:
        return cfg
    plain = OmegaConf.to_container(cfg[node], resolve=False)  # interpolations stay, resolved in ``out``
    own = plain.pop("ceiling") or {}
    out = cfg.copy()
    with open_dict(out):
        out[node] = OmegaConf.merge(plain, own) if ceiling else plain
    return out


def aggregator_anchor(aggregator_cfg: DictConfig, default: str) -> str:
    """``aggregator.anchor`` (none | val): whether val's gold is observed where the aggregator is
    fitted. ``default`` where the config sets none: a classification aggregator is unanchored
    (``none``), a generation one anchored (``val``), as each path has always read it."""
    return aggregator_cfg.get("anchor", default)


def build(cfg: DictConfig, key: str, **kwargs):
    """``instantiate`` with a one-line error naming the config key when the target cannot be built."""
    from hydra.errors import InstantiationException

    try:
        return instantiate(cfg, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, UserInputError):  # the constructor's own one-line complaint
            raise err.__cause__ from None
        reason = str(err).strip().splitlines()[0].split(", set env var HYDRA_FULL_ERROR")[0]
        raise UserInputError(f"config {key}: cannot build {cfg.get('_target_', '?')}: {reason}") from None


def make_loggers(logger_cfg: DictConfig | None, prefix: str) -> list:
    """Instantiate every configured logger with the stage name as metric prefix (``student/train/loss``)."""
    if not logger_cfg:
        return []
    return [instantiate(c)(prefix=prefix) for c in logger_cfg.values() if c is not None]
