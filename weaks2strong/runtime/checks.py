"""Refuse a bad command line before Hydra writes anything: one line naming the key or folder."""
from __future__ import annotations

import tempfile
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from weaks2strong.runtime import schema
from weaks2strong.runtime.resolvers import CONFIG_DIR, register_resolvers

SECRET_WORDS = ("api_key", "apikey", "token", "secret", "password")


def looks_secret(key: str) -> bool:
    """A key holds a secret if one of its words is a secret word: ``hf_token`` and ``api_key`` do,
    ``max_new_tokens`` (a count of tokens) does not."""
    key = str(key).lower()
    words = set(key.replace("-", "_").split("_"))
    return "api_key" in key or any(w in words for w in SECRET_WORDS)


def secret_in(cfg: DictConfig) -> tuple[str, str] | None:
    """(key, value) of the first config entry whose key looks like it holds a secret, or None."""

    def walk(node, prefix):
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
        for key, value in items:
            path = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, (dict, list)):
                yield from walk(value, path)
            elif value not in (None, "") and looks_secret(key):
                yield path, str(value)

    plain = OmegaConf.to_container(cfg, resolve=False)
    plain.pop("hydra", None)
    return next(walk(plain, ""), None)


def find_secret(cfg: DictConfig) -> str | None:
    """The key of a secret-looking entry, after redacting its value in the config copies Hydra saved."""
    from hydra.core.hydra_config import HydraConfig

    found = secret_in(cfg)
    if found is None:
        return None
    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        files = [Path(hydra_cfg.sweep.dir) / "multirun.yaml"]
        if hydra_cfg.output_subdir:
            files += (Path(hydra_cfg.runtime.output_dir) / hydra_cfg.output_subdir).glob("*.yaml")
        for file in files:
            if file.is_file():
                file.write_text(file.read_text().replace(found[1], "***"))
    return found[0]


def check_command_line(args: list[str]) -> str | None:
    """Compose the config the way ``main`` will and return one line on what is wrong, or None.

    Hydra reports an unknown key or option in several lines with a hint to set HYDRA_FULL_ERROR,
    and a run dir it cannot create as a traceback; this names the key, or the folder, in one line.
    A value of the wrong type or range (``weaks2strong.runtime.schema``) is named the same way.
    Sweep overrides (``a=1,2``) are checked with their first value.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException, MissingConfigException

    from weaks2strong.runtime.errors import UserInputError

    register_resolvers()
    overrides = [a for a in args if ("=" in a or a.startswith("~")) and not a.startswith("-")]  # ~key deletes
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        return f"cannot parse the command line: {str(err).splitlines()[0]}"
    single = []
    for override, text in zip(parsed, overrides):
        if override.is_sweep_override():
            try:
                first = next(iter(override.sweep_string_iterator()), None)
            except HydraException:  # an interval (Optuna's): nothing to enumerate; its sweeper checks it
                first = None
            if first is None or override.is_hydra_override():
                continue
            text = f"{'+' if override.is_add() else ''}{override.key_or_group}={first}"
        single.append(text)
    try:
        with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
            cfg = compose("config", overrides=single, return_hydra_config=True)
    except MissingConfigException as err:
        options = ", ".join(sorted(err.options or []))
        return f"no config '{err.missing_cfg_file}'" + (f"; options: {options}" if options else "")
    except HydraException as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        unknown = next((line for line in lines if line.startswith("Could not override '")), None)
        if unknown:
            key = unknown.split("'")[1]
            return f"unknown config key '{key}'; to add a new key, prefix it with '+' (+{key}=...)"
        return " ".join(lines[:2])
    except UserInputError as err:
        return str(err)
    secret = secret_in(cfg)
    if secret:
        return (f"config key '{secret[0]}' looks like a secret; pass it through the environment "
                "(e.g. WANDB_API_KEY), not the config")
    params = "hydra.sweeper.params."  # what an optimising sweeper tunes: its params and the command line's sweeps
    swept = [o.key_or_group.removeprefix(params) for o in parsed
             if o.is_sweep_override() and not o.is_hydra_override() or o.key_or_group.startswith(params)]
    bad_value = schema.problem(cfg) or inputs_problem(cfg) or align_problem(cfg) or sweep_problem(cfg, swept)
    if bad_value:
        return bad_value
    try:  # the launcher's interpolations (slurm's task and GPU counts follow the trainer's devices)
        OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    except Exception as err:  # noqa: BLE001 - whatever a resolver raised, said in one line
        said = str(err.__cause__ or err).splitlines()[0]
        return f"hydra.launcher: {said.split('while resolving interpolation: ')[-1]}"
    for key in ("paths.runs_dir", "paths.cache_dir"):
        try:
            folder = Path(OmegaConf.select(cfg, key))
        except Exception:  # noqa: BLE001 - an interpolation that needs a running job: Hydra will say
            continue
        try:  # a real probe: os.access says yes to root even on a read-only mount
            folder.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=folder).close()
        except OSError as err:
            return f"{key}={folder} is not writable ({err.strerror}); choose another folder"
    return None


USER_FILE_COLUMNS = ("text_column", "label_column", "text_pair_column", "split_column")


def inputs_problem(cfg: DictConfig) -> str | None:
    """What a run would find only after its imports (a minute or more on a busy machine): no teacher
    to learn from, or a task file (``task=csv``) that is missing, unreadable or lacks a named column.
    The file's header alone is read, so this takes well under a second whatever its size."""
    from weaks2strong.tasks.base import TaskError
    from weaks2strong.tasks.readers import check_header

    if cfg.get("search") is None and not cfg.get("teachers"):  # the search path learns from no teacher
        return "teachers: no teacher configured; pick an ensemble, e.g. teachers=sentiment"
    task = cfg.get("task") or {}
    if task.get("name") != "csv":
        return None
    path = OmegaConf.select(cfg, "task.path", throw_on_missing=False)
    if not path:
        return "task=csv needs task.path=<file> (CSV, TSV or JSON lines)"
    try:
        check_header(path, {f"task.{option}": task.get(option) for option in USER_FILE_COLUMNS})
    except TaskError as err:
        return str(err)
    return None


VERBALIZER_RECIPES = ("weaks2strong.student.verbalize", "weaks2strong.student.verbalize.verbalize")


def align_problem(cfg: DictConfig) -> str | None:
    """``align=verbalizer_dpo`` DPOs a causal-LM student's class verbalizers: a student of another
    recipe (an encoder and a K-way head: student=minilm, probe_mpnet) has no words to prefer. Said
    before any stage runs (the command line's pre-check, and each run), naming both options."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        method = OmegaConf.select(cfg, "align.method", default="none")
        recipe = OmegaConf.select(cfg, "student.recipe._target_", default=None)
    except OmegaConfBaseException:
        return None
    if method != "verbalizer_dpo" or recipe in VERBALIZER_RECIPES:
        return None
    return (f"align=verbalizer_dpo DPOs a causal-LM student's class verbalizers, but student={chosen(cfg, 'student')} "
            f"({recipe}) has none to prefer: use student=gemma3, or align=none")


def chosen(cfg: DictConfig, group: str) -> str:
    """The option of a config group the command line chose (``student=minilm``), as Hydra recorded it."""
    from hydra.core.hydra_config import HydraConfig

    found = OmegaConf.select(cfg, f"hydra.runtime.choices.{group}", default=None)
    if found is None and HydraConfig.initialized():
        found = HydraConfig.get().runtime.choices.get(group)
    return str(found or "?")


# what trains the ceiling (PGR's denominator): the student's settings (``align``: the preference path's
# DPO'd students) and the trainer's, except what it pins (``<node>.ceiling``) or ignores (its loss is soft_ce)
CEILING_NODES = ("student", "align", "trainer")
CEILING_IGNORES = ("student.model.loss", "student.model.aux_coef", "student.model.aux_warmup_frac",
                   "student.min_prob", "student.save_weights", "student.keep_checkpoint")


def sweep_problem(cfg: DictConfig, swept: list[str]) -> str | None:
    """A sweeper that optimises (Optuna; not Hydra's basic one, which only lists) a number the ceiling
    enters (``optimized_metric`` pgr.* or ceiling.*) must not tune a setting the ceiling trains with:
    it could raise its score by lowering its own yardstick. It tunes ``hydra.sweeper.params`` and the
    command line's sweeps (``swept``)."""
    sweeper = OmegaConf.select(cfg, "hydra.sweeper", default=None)
    metric = str(cfg.get("optimized_metric") or "")
    if not sweeper or "BasicSweeper" in str(sweeper.get("_target_")) or metric.split(".")[0] not in ("pgr", "ceiling"):
        return None

    def leaves(node, prefix=""):  # params: {"a.b": "choice(..)"} from YAML, {"a": {"b": ..}} from the command line
        for k, v in (node or {}).items():
            yield from leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"]

    for key in [*leaves(OmegaConf.to_container(sweeper.get("params") or {})), *swept]:
        node, _, rest = key.partition(".")
        if node in CEILING_NODES and rest.startswith("ceiling."):
            return f"the sweep tunes {key}, the ceiling's own: optimising {metric} would move its own yardstick"
        pinned = node != "trainer" and OmegaConf.select(cfg, f"{node}.ceiling.{rest}", default=None) is not None
        if node in CEILING_NODES and key not in CEILING_IGNORES and not pinned:
            fix = (f"pin the ceiling's ({node}.ceiling.{rest}) or tune what {node}.ceiling pins" if node != "trainer"
                   else "the ceiling shares the trainer: tune what student.ceiling pins")
            return f"the sweep tunes {key}, which trains the ceiling too: optimising {metric} would move its own " \
                   f"yardstick; {fix}"
    return None
