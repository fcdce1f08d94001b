"""The config's schema: Hydra structured configs (dataclasses in Hydra's ConfigStore, group ``schema``)
with a type and a range for each key that is ours, so a bad value is refused in one line naming the
key, before any stage runs, instead of as a traceback from deep inside Lightning or the aggregator.

The YAML files do not list the schema in their defaults: ``validate`` checks a composed config against
it. Only the declared keys are checked, and only those present in the config (a teacher's options,
``_target_`` entries and other extra keys pass untouched). Types are checked by merging the declared,
present values into ``OmegaConf.structured(ConfigSchema)``; ranges and choices are declared next to
each field (``Rule`` in the field's metadata) and checked after.

``w2s`` calls ``validate`` twice: in the command-line pre-check (``checks.check_command_line``) and in
``main`` (a multirun job, whose values the pre-check never saw, fails with the same line).
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Optional  # noqa: UP035 - OmegaConf 2.3 reads Optional[...], not `str | None`

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException, ValidationError

from weaks2strong.runtime.errors import UserInputError

LOSSES = ("soft_ce", "logconf")
WEIGHTINGS = ("none", "confidence", "confidence_squared", "confidence_balanced")
MAX_SEED = 2**32 - 1  # numpy's limit; Lightning replaces a seed beyond it by a random one (with a warning)
_ABSENT = object()


@dataclass(frozen=True)
class Rule:
    """What a field's value must be, beyond its type. Bounds apply to numbers; ``check`` returns the
    end of the sentence "config key 'k' must be ..." for a bad value, or None."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[str, ...] | None = None
    check: Callable[[Any], str | None] | None = None
    why: str = ""  # appended to the message: what the bad value would have done

    def problem(self, value: Any) -> str | None:
        if self.choices is not None and value not in self.choices:
            return f"must be one of {', '.join(self.choices)}, got {show(value)}"
        if self.check is not None:
            return self.check(value)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return None
        low = (self.ge, "[") if self.ge is not None else (self.gt, "(") if self.gt is not None else None
        high = (self.le, "]") if self.le is not None else (self.lt, ")") if self.lt is not None else None
        bad = ((self.ge is not None and value < self.ge) or (self.gt is not None and value <= self.gt)
               or (self.le is not None and value > self.le) or (self.lt is not None and value >= self.lt))
        if not bad:
            return None
        if low and high:
            wanted = f"in {low[1]}{low[0]}, {high[0]}{high[1]}"
        elif low:
            wanted = f"{'>=' if low[1] == '[' else '>'} {low[0]}"
        else:
            wanted = f"{'<=' if high[1] == ']' else '<'} {high[0]}"
        return f"must be {wanted}, got {show(value)}" + (f" ({self.why})" if self.why else "")


def rule(**kwargs) -> Any:
    """A schema field: no default (``MISSING``: an absent key is not checked) and its ``Rule``."""
    return field(default=MISSING, metadata={"w2s": Rule(**kwargs)})


def seed() -> Any:
    return rule(ge=0, le=MAX_SEED)


def show(value: Any) -> str:
    """A value as the message quotes it: strings in quotes, the rest as Python writes it."""
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value)
    return f"'{value}'" if isinstance(value, str) else repr(value)


def _devices(value: Any) -> str | None:
    """Lightning's ``devices``: a count >= 1 (-1: all of them), a string ('auto', '2', '0,1') or a list
    of device indices."""
    wanted = "'auto', an integer >= 1 (-1: all) or a list of device indices"
    if isinstance(value, str):
        return None if value.strip() else f"must be {wanted}, got {show(value)}"
    if isinstance(value, int) and not isinstance(value, bool):
        return None if value >= 1 or value == -1 else f"must be {wanted}, got {show(value)}"
    if isinstance(value, (list, tuple, ListConfig)) and len(value) and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        return None
    return f"must be {wanted}, got {show(value)}"


def _precision(value: Any) -> str | None:
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return None
    return f"must be a string or an integer (e.g. 32-true, bf16-mixed, 16), got {show(value)}"


UNTRAINED = "it would report an untrained model as a result"


def _max_steps(value: Any) -> str | None:
    """Lightning's ``max_steps``: -1 (no limit, its default) or a count >= 1."""
    if value == -1 or value >= 1:
        return None
    return f"must be -1 (no limit) or >= 1, got {show(value)} ({UNTRAINED})"


def _train_batches(value: Any) -> str | None:
    """Lightning's ``limit_train_batches``: a count of batches (an integer >= 1) or a fraction in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"must be a count of batches or a fraction in (0, 1], got {show(value)}"
    if (isinstance(value, int) and value >= 1) or (isinstance(value, float) and 0 < value <= 1):
        return None
    return f"must be a count of batches >= 1 or a fraction in (0, 1], got {show(value)}" + (
        f" ({UNTRAINED})" if value <= 0 else "")


def _val_metric(value: Any) -> str | None:
    """``optimized_metric``: a dotted path into metrics.json that a sweeper optimises; never a test number."""
    if value is None or value == "":
        return None  # nothing to optimise: `w2s` returns None
    parts = str(value).split(".")
    if not all(parts):
        return f"must be a dotted path into metrics.json (e.g. pgr.val.vs_best_teacher), got {show(value)}"
    if any("test" in re.split(r"[_\-/]", part.lower()) for part in parts):
        return (f"must not read the test split, got {show(value)}: the test split decides nothing; "
                "choose a val metric, e.g. pgr.val.vs_best_teacher")
    return None


@dataclass
class SeedsSchema:
    splits: int = seed()
    teachers: int = seed()
    aggregator: int = seed()
    student: int = seed()


@dataclass
class SizesSchema:
    weak_train: int = rule(ge=1)
    val: int = rule(ge=1)
    w2s_train: int = rule(ge=1)
    test: int = rule(ge=1)


@dataclass
class TaskSchema:
    name: str = rule()
    split_seed: int = seed()
    sizes: SizesSchema = field(default_factory=SizesSchema)
    pool_size: Optional[int] = rule(ge=1)  # noqa: UP045


@dataclass
class StudentDataSchema:
    batch_size: int = rule(ge=1)
    max_length: int = rule(ge=8)


@dataclass
class OptimizerSchema:
    lr: float = rule(gt=0)
    weight_decay: float = rule(ge=0)


@dataclass
class StudentModelSchema:
    optimizer: OptimizerSchema = field(default_factory=OptimizerSchema)
    loss: str = rule(choices=LOSSES)


@dataclass
class StudentNetSchema:
    dropout: float = rule(ge=0, lt=1)


@dataclass
class StudentGenerateSchema:
    max_new_tokens: int = rule(ge=1)
    batch_size: int = rule(ge=1)


@dataclass
class StudentSchema:
    encoder: str = rule()
    lm: str = rule()  # the generation student (student=gemma3_gen)
    min_prob: float = rule(ge=0, lt=1, why="no candidate would be trained on")
    generate: StudentGenerateSchema = field(default_factory=StudentGenerateSchema)
    data: StudentDataSchema = field(default_factory=StudentDataSchema)
    model: StudentModelSchema = field(default_factory=StudentModelSchema)
    net: StudentNetSchema = field(default_factory=StudentNetSchema)


@dataclass
class TrainerSchema:
    max_epochs: int = rule(ge=1, why="0 epochs would report untrained models as results")
    max_steps: int = rule(check=_max_steps)
    limit_train_batches: Any = rule(check=_train_batches)
    devices: Any = rule(check=_devices)
    num_nodes: int = rule(ge=1)
    precision: Any = rule(check=_precision)


@dataclass
class AggregatorSchema:
    weighting: str = rule(choices=WEIGHTINGS)
    anchor: str = rule(choices=("none", "val"))
    uncovered_weight: float = rule(ge=0, le=1)  # weight of a row no teacher answered (classification)
    method: str = rule(choices=("bayes", "majority", "joint", "single"))  # generation tasks


@dataclass
class RefineModelSchema:
    shots: int = rule(ge=1)
    calibrate: str = rule(choices=("weak_prior", "content_free", "none"))
    demo_max_tokens: int = rule(ge=1)
    max_prompt_tokens: int = rule(ge=1)


@dataclass
class RefineSchema:
    method: str = rule(choices=("none", "in_context"))
    model: RefineModelSchema = field(default_factory=RefineModelSchema)


@dataclass
class GenerationSchema:
    max_candidates: int = rule(ge=1)
    student_shots: int = rule(ge=0)


@dataclass
class AlignModelSchema:
    beta: float = rule(gt=0, why="β <= 0 would not pull the policy towards the chosen answers")
    kind: str = rule(choices=("sigmoid", "ipo"))


@dataclass
class AlignSchema:  # align=dpo: the DPO'd students (generation and preference paths); verbalizer_dpo (classification)
    method: str = rule(choices=("none", "dpo", "verbalizer_dpo"))
    init: str = rule(choices=("distilled", "pretrained"))
    epochs: int = rule(ge=1, why=UNTRAINED)
    batch_size: int = rule(ge=1)
    model: AlignModelSchema = field(default_factory=AlignModelSchema)


@dataclass
class SearchGuideSchema:
    epochs: int = rule(ge=1, why="an untuned guide scores every answer 0: the search would be unguided")


@dataclass
class SearchSchema:
    guide: SearchGuideSchema = field(default_factory=SearchGuideSchema)


@dataclass
class ConfigSchema:
    """The whole config (``conf/config.yaml``): the keys of every group that are ours."""

    seed: int = seed()
    seeds: SeedsSchema = field(default_factory=SeedsSchema)
    task: TaskSchema = field(default_factory=TaskSchema)
    student: StudentSchema = field(default_factory=StudentSchema)
    trainer: TrainerSchema = field(default_factory=TrainerSchema)
    aggregator: AggregatorSchema = field(default_factory=AggregatorSchema)
    generation: GenerationSchema = field(default_factory=GenerationSchema)
    refine: RefineSchema = field(default_factory=RefineSchema)
    align: AlignSchema = field(default_factory=AlignSchema)
    search: SearchSchema = field(default_factory=SearchSchema)
    optimized_metric: Optional[str] = rule(check=_val_metric)  # noqa: UP045


GROUPS = {"config": ConfigSchema, "seeds": SeedsSchema, "task": TaskSchema, "student": StudentSchema,
          "trainer": TrainerSchema, "aggregator": AggregatorSchema, "generation": GenerationSchema,
          "refine": RefineSchema, "align": AlignSchema}


def register() -> None:
    """Put the schemas in Hydra's ConfigStore: group ``schema``, one name per config group (and
    ``config`` for the whole). Idempotent."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for name, node in GROUPS.items():
        store.store(group="schema", name=name, node=node)


def declared(schema: type = ConfigSchema, prefix: str = "") -> Iterator[tuple[str, Any, Rule]]:
    """(dotted key, field type, rule) of every leaf the schema declares, in declaration order."""
    for f in dataclasses.fields(schema):
        key = f"{prefix}{f.name}"
        if "w2s" in f.metadata:
            yield key, f.type, f.metadata["w2s"]
        elif dataclasses.is_dataclass(f.default_factory):
            yield from declared(f.default_factory, f"{key}.")


_TYPE_WORDS = {"int": "an integer", "float": "a number", "str": "a string", "Optional[str]": "a string or null",
               "Optional[int]": "an integer or null"}


def problem(cfg: DictConfig | dict) -> str | None:
    """One line on the first declared key of ``cfg`` whose value has the wrong type or range, or None.
    Keys absent from ``cfg``, left ``???``, or whose interpolation cannot be resolved here are skipped
    (whoever needs them reports them)."""
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(cfg)
    present: list[tuple[str, Any, Any, Rule]] = []
    for key, kind, why in declared():
        try:
            value = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False)
        except OmegaConfBaseException:  # an interpolation that needs a running job (or is broken)
            continue
        if value is not _ABSENT:
            present.append((key, kind, value, why))
    for key, kind, value, why in present:  # the type, as the structured config sees it ...
        try:
            OmegaConf.merge(OmegaConf.structured(ConfigSchema), _nested(key, value))
        except ValidationError:
            wanted = f"one of {', '.join(why.choices)}" if why.choices else _TYPE_WORDS.get(str(kind), str(kind))
            return f"config key '{key}' must be {wanted}, got {show(value)}"
        if isinstance(value, (DictConfig, ListConfig)):
            value = OmegaConf.to_container(value)
        bad = why.problem(value)  # ... then the range or the choices
        if bad:
            return f"config key '{key}' {bad}"
    return deepspeed_problem(cfg)


def deepspeed_problem(cfg: DictConfig) -> str | None:
    """``trainer.strategy`` DeepSpeed where it cannot run: without the ``deepspeed`` package, or on CPU
    (Lightning's DeepSpeedStrategy is CUDA only). Lightning would say so only at the first ``fit``,
    after every teacher has run."""
    import importlib.util

    try:
        strategy = OmegaConf.select(cfg, "trainer.strategy", default=None)
        accelerator = OmegaConf.select(cfg, "trainer.accelerator", default=None)
    except OmegaConfBaseException:
        return None
    name = strategy.get("_target_", "") if isinstance(strategy, DictConfig) else str(strategy or "")
    if "deepspeed" not in name.lower():
        return None
    if "stage_3" in name or OmegaConf.select(cfg, "trainer.strategy.stage", default=None) == 3:
        return (f"config key 'trainer.strategy' is {show(name)}: ZeRO stage 3 partitions the parameters, and rank 0 "
                "predicts alone after training; use trainer=fsdp (or deepspeed_stage_2)")
    if accelerator == "cpu":
        return (f"config key 'trainer.accelerator' is 'cpu', but trainer.strategy={name} runs on CUDA GPUs only; "
                "on CPU processes use trainer=ddp or trainer=fsdp")
    if importlib.util.find_spec("deepspeed") is None:
        return (f"config key 'trainer.strategy' is {show(name)}, which needs the deepspeed package (not installed "
                "here): on a CUDA machine, .venv/bin/pip install -e .[deepspeed]")
    return None


def _nested(key: str, value: Any) -> dict:
    *parents, leaf = key.split(".")
    node: dict = {leaf: value}
    for part in reversed(parents):
        node = {part: node}
    return node


def validate(cfg: DictConfig | dict) -> None:
    """Raise ``UserInputError`` (one line naming the key) if a declared key of ``cfg`` is bad."""
    found = problem(cfg)
    if found:
        raise UserInputError(found)


register()
