"""Stage configurations: what is frozen, which losses with which weights, and the optimisation recipe.

A stage is data, not code: the one trainer reads a ``StageConfig``. The stages ship as YAML files with the
package (``f1/train/configs/*.yaml``; each file's header says what it is): ``tokenizer`` (stage 0, the VQ-VAE
on the dataset's frames), ``stage1``, ``stage2``, ``stage3`` (the paper's recipes, for a pretrained start)
and ``stage2_scratch``, ``stage3_scratch`` (sized for small runs from scratch). ``load_stage_config(stage)``
takes a number (0-3), a shipped name or the path of a YAML file.
Every config is validated once, at construction; an unknown key raises ``ConfigError`` with a suggestion.
A stage's optional ``lora`` section (:class:`LoraSettings`) trains LoRA adapters instead of the whole
policy (:mod:`f1.train.lora`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from f1.checks import did_you_mean, merge_overrides, reject_unknown_keys
from f1.errors import ConfigError
from f1.model import EXPERT_GROUPS

from .protocol import PARAMETER_GROUP_NAMES

Precision = Literal["auto", "bf16", "fp32"]
PRECISIONS: tuple[str, ...] = ("auto", "bf16", "fp32")
Objective = Literal["policy", "tokenizer"]
#: What a stage trains: ``policy`` (the model's own losses) or ``tokenizer`` (its VQ-VAE on single frames,
#: :class:`f1.train.tokenizer.TokenizerObjective`).
OBJECTIVES: tuple[str, ...] = ("policy", "tokenizer")
#: The shipped stage file of each stage number.
STAGE_NUMBERS: dict[int, str] = {0: "tokenizer", 1: "stage1", 2: "stage2", 3: "stage3"}
SHIPPED_STAGES: tuple[int, ...] = tuple(STAGE_NUMBERS)


def _float(where: str, value: object, *, low: float | None = None, high: float | None = None) -> float:
    # YAML 1.1 reads `5e-5` (no dot) as a string: accept numeric strings rather than surprise the user.
    if isinstance(value, bool):
        raise ConfigError(f"{where} must be a number, received {value!r}")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"{where} must be a number, received {value!r}") from None
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{where} must be a finite number, received {value!r}")
    if low is not None and value < low:
        raise ConfigError(f"{where} must be >= {low}, received {value}")
    if high is not None and value > high:
        raise ConfigError(f"{where} must be <= {high}, received {value}")
    return float(value)


def _int(where: str, value: object, *, low: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where} must be an integer, received {value!r}")
    if value < low:
        raise ConfigError(f"{where} must be >= {low}, received {value}")
    return value


def _group_name(where: str, value: object) -> str:
    if value not in PARAMETER_GROUP_NAMES:
        hint = did_you_mean(str(value), PARAMETER_GROUP_NAMES)
        raise ConfigError(
            f"{where}: unknown parameter group {value!r}{hint}; "
            f"expected one of {', '.join(PARAMETER_GROUP_NAMES)}"
        )
    return str(value)


@dataclass(frozen=True)
class OptimizerConfig:
    """AdamW with one learning rate per parameter group.

    ``lr`` applies to every group not named in ``group_lr``. Weight decay applies to matrices and embeddings
    (``ndim >= 2``) only; norms and biases are never decayed.
    """

    lr: float = 5e-5
    group_lr: dict[str, float] = field(default_factory=lambda: {"vision": 2.5e-5})
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.01

    def __post_init__(self) -> None:
        w = "optimizer"
        object.__setattr__(self, "lr", _float(f"{w}.lr", self.lr, low=0.0))
        if not isinstance(self.group_lr, Mapping):
            raise ConfigError(f"{w}.group_lr must be a mapping group -> lr, received {self.group_lr!r}")
        group_lr = {
            _group_name(f"{w}.group_lr", k): _float(f"{w}.group_lr.{k}", v, low=0.0)
            for k, v in self.group_lr.items()
        }
        object.__setattr__(self, "group_lr", group_lr)
        if not isinstance(self.betas, list | tuple) or len(self.betas) != 2:
            raise ConfigError(f"{w}.betas must be two numbers in [0, 1), received {self.betas!r}")
        betas = tuple(_float(f"{w}.betas[{i}]", b, low=0.0, high=0.999999) for i, b in enumerate(self.betas))
        object.__setattr__(self, "betas", betas)
        object.__setattr__(self, "eps", _float(f"{w}.eps", self.eps, low=0.0))
        object.__setattr__(self, "weight_decay", _float(f"{w}.weight_decay", self.weight_decay, low=0.0))

    def lr_for(self, group: str) -> float:
        """The peak learning rate of parameter group ``group``."""
        return self.group_lr.get(group, self.lr)


@dataclass(frozen=True)
class ScheduleConfig:
    """Linear warmup to the peak rate over ``warmup_steps``, then a cosine down to ``min_lr_ratio`` x peak."""

    warmup_steps: int = 2000
    min_lr_ratio: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "warmup_steps", _int("schedule.warmup_steps", self.warmup_steps, low=0))
        object.__setattr__(
            self, "min_lr_ratio", _float("schedule.min_lr_ratio", self.min_lr_ratio, low=0.0, high=1.0)
        )


#: The projections of a trunk expert's layer that LoRA may adapt (``mot.expert``'s Gemma names): attention
#: ``q/k/v/o_proj`` and the GeGLU MLP's ``gate/up/down_proj``.
#: The parameter groups a LoRA stage trains in full unless its ``lora.full_groups`` says otherwise.
DEFAULT_FULL_GROUPS: tuple[str, ...] = ("embodiment",)
LORA_PROJECTIONS: tuple[str, ...] = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)


def _names(where: str, value: object, allowed: tuple[str, ...], *, kind: str) -> tuple[str, ...]:
    """``value`` as a tuple of distinct names from ``allowed`` (``kind``: what a name is, for errors)."""
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ConfigError(f"{where} must be a list of {kind} names, received {value!r}")
    for name in value:
        if name not in allowed:
            raise ConfigError(
                f"{where}: unknown {kind} {name!r}{did_you_mean(str(name), allowed)}; "
                f"expected among {', '.join(allowed)}"
            )
    if len(set(value)) != len(value):
        raise ConfigError(f"{where} lists a name twice: {list(value)}")
    return tuple(value)


@dataclass(frozen=True)
class LoraSettings:
    """LoRA adapters (through ``peft``) instead of a full fine-tune: every base weight is frozen, each adapted
    projection ``W`` (``out x in``) learns ``W + (alpha / rank) * B A`` with ``A`` (``rank x in``) and ``B``
    (``out x rank``, zero at the start, so training starts from the base policy exactly).

    Attributes:
        rank: ``r``, the rank of ``B A``.
        alpha: the scale numerator: the update is multiplied by ``alpha / rank``.
        dropout: dropout on the adapters' input while training (0: none).
        targets: which projections of each adapted expert layer (names from :data:`LORA_PROJECTIONS`).
        experts: which trunk experts (``und``, ``gen``, ``act``; :data:`f1.model.EXPERT_GROUPS`); None: every
            expert the policy has whose parameter group trains in the stage (not in ``frozen`` or
            ``full_groups``, and not frozen by the policy itself, e.g. the Frozen-Gen ablation).
        vision: also adapt the vision tower's attention and MLP projections (timm ViT blocks: ``attn.qkv``,
            ``attn.proj``, ``mlp.fc1``, ``mlp.fc2``).
        full_groups: parameter groups that train in full beside the adapters and are saved with them; None:
            the embodiment adapters (a new robot's state/action projections start from random), unless the
            stage freezes them.
    """

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: tuple[str, ...] = LORA_PROJECTIONS
    experts: tuple[str, ...] | None = None
    vision: bool = False
    full_groups: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        w = "lora"
        object.__setattr__(self, "rank", _int(f"{w}.rank", self.rank, low=1))
        alpha = _float(f"{w}.alpha", self.alpha, low=0.0)
        if alpha == 0.0:
            raise ConfigError(f"{w}.alpha must be > 0, received {self.alpha!r}")
        object.__setattr__(self, "alpha", alpha)
        dropout = _float(f"{w}.dropout", self.dropout, low=0.0, high=1.0)
        if dropout == 1.0:
            raise ConfigError(f"{w}.dropout must be < 1, received {self.dropout!r}")
        object.__setattr__(self, "dropout", dropout)
        targets = _names(f"{w}.targets", self.targets, LORA_PROJECTIONS, kind="projection")
        if not targets:
            raise ConfigError(f"{w}.targets must name at least one of {', '.join(LORA_PROJECTIONS)}")
        object.__setattr__(self, "targets", targets)
        if self.experts is not None:
            experts = _names(f"{w}.experts", self.experts, tuple(EXPERT_GROUPS), kind="expert")
            if not experts:
                raise ConfigError(
                    f"{w}.experts must name at least one expert, or be null (every trained one)"
                )
            object.__setattr__(self, "experts", experts)
        if not isinstance(self.vision, bool):
            raise ConfigError(f"{w}.vision must be true or false, received {self.vision!r}")
        if self.full_groups is not None:
            full = _names(f"{w}.full_groups", self.full_groups, PARAMETER_GROUP_NAMES, kind="parameter group")
            object.__setattr__(self, "full_groups", full)
        full = self.full_groups_of(())
        for expert in self.experts or ():
            if EXPERT_GROUPS[expert] in full:
                raise ConfigError(
                    f"{w}: expert {expert!r} is in group {EXPERT_GROUPS[expert]!r}, which full_groups trains "
                    "in full; adapt it or train it in full, not both"
                )
        if self.vision and "vision" in full:
            raise ConfigError(f"{w}: vision adapts the vision tower, which full_groups trains in full")

    @property
    def scaling(self) -> float:
        """``alpha / rank``, the factor of the low-rank update."""
        return self.alpha / self.rank

    def full_groups_of(self, frozen: tuple[str, ...] | frozenset[str]) -> tuple[str, ...]:
        """The groups trained in full under a stage freezing ``frozen``: ``full_groups``, or by default the
        embodiment adapters unless frozen."""
        if self.full_groups is not None:
            return self.full_groups
        return tuple(group for group in DEFAULT_FULL_GROUPS if group not in frozen)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoraSettings:
        """Build from a plain mapping; unknown keys raise ``ConfigError``."""
        return _build(cls, data, "lora")

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML/JSON-serialisable mapping; ``LoraSettings.from_dict(s.to_dict()) == s``."""
        return {
            "rank": self.rank,
            "alpha": self.alpha,
            "dropout": self.dropout,
            "targets": list(self.targets),
            "experts": None if self.experts is None else list(self.experts),
            "vision": self.vision,
            "full_groups": None if self.full_groups is None else list(self.full_groups),
        }


@dataclass(frozen=True)
class StageConfig:
    """One training stage: frozen groups, weighted losses and the optimisation recipe.

    ``batch_size`` is the global batch of one optimizer step (all processes together). Each of ``world_size``
    processes accumulates gradients over ``accumulation_steps`` micro-batches of
    ``batch_size / (world_size * accumulation_steps)`` samples, so one recipe gives the same run on 1 or N
    processes, with or without accumulation (up to float rounding).
    ``precision="auto"`` uses bf16 autocast on CUDA devices that support it and fp32 elsewhere.
    ``lora`` (None: a full fine-tune of the groups not ``frozen``) trains LoRA adapters instead
    (:class:`LoraSettings`, :mod:`f1.train.lora`).
    """

    name: str = "custom"
    objective: Objective = "policy"
    frozen: tuple[str, ...] = ("tokenizer",)
    loss_weights: dict[str, float] = field(default_factory=lambda: {"flow": 1.0, "generation": 0.1})
    generation_scales: int | None = 4
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    grad_clip: float | None = 1.0
    precision: Precision = "auto"
    steps: int = 100_000
    batch_size: int = 32
    accumulation_steps: int = 1
    log_interval: int = 10
    checkpoint_interval: int = 1000
    keep_checkpoints: int = 3
    seed: int = 0
    lora: LoraSettings | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"name must be a non-empty string, received {self.name!r}")
        if self.objective not in OBJECTIVES:
            raise ConfigError(
                f"objective must be one of {', '.join(OBJECTIVES)}, received {self.objective!r}"
                f"{did_you_mean(str(self.objective), OBJECTIVES)}"
            )
        if isinstance(self.frozen, str) or not isinstance(self.frozen, list | tuple):
            raise ConfigError(f"frozen must be a list of parameter groups, received {self.frozen!r}")
        frozen = tuple(_group_name("frozen", g) for g in self.frozen)
        if len(set(frozen)) != len(frozen):
            raise ConfigError(f"frozen lists a group twice: {list(frozen)}")
        object.__setattr__(self, "frozen", frozen)
        if not isinstance(self.loss_weights, Mapping) or not self.loss_weights:
            raise ConfigError(
                f"loss_weights must be a non-empty mapping loss -> weight, received {self.loss_weights!r}"
            )
        weights = {str(k): _float(f"loss_weights.{k}", v, low=0.0) for k, v in self.loss_weights.items()}
        object.__setattr__(self, "loss_weights", weights)
        if self.generation_scales is not None:
            object.__setattr__(
                self, "generation_scales", _int("generation_scales", self.generation_scales, low=1)
            )
        if isinstance(self.optimizer, Mapping):
            object.__setattr__(self, "optimizer", _build(OptimizerConfig, self.optimizer, "optimizer"))
        if isinstance(self.schedule, Mapping):
            object.__setattr__(self, "schedule", _build(ScheduleConfig, self.schedule, "schedule"))
        if not isinstance(self.optimizer, OptimizerConfig) or not isinstance(self.schedule, ScheduleConfig):
            raise ConfigError("optimizer and schedule must be mappings")
        if self.grad_clip is not None:
            object.__setattr__(self, "grad_clip", _float("grad_clip", self.grad_clip, low=0.0))
            if self.grad_clip == 0.0:
                raise ConfigError("grad_clip must be > 0 or null (no clipping), received 0")
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"precision must be one of {', '.join(PRECISIONS)}, received {self.precision!r}"
                f"{did_you_mean(str(self.precision), PRECISIONS)}"
            )
        for name in (
            "steps",
            "batch_size",
            "accumulation_steps",
            "log_interval",
            "checkpoint_interval",
            "keep_checkpoints",
        ):
            object.__setattr__(self, name, _int(name, getattr(self, name), low=1))
        object.__setattr__(self, "seed", _int("seed", self.seed, low=0))
        if self.batch_size % self.accumulation_steps:
            raise ConfigError(
                f"batch_size must be divisible by accumulation_steps: "
                f"{self.batch_size} % {self.accumulation_steps} != 0"
            )
        if isinstance(self.lora, Mapping):
            object.__setattr__(self, "lora", LoraSettings.from_dict(self.lora))
        if self.lora is not None:
            self._check_lora(self.lora)

    def _check_lora(self, lora: object) -> None:
        if not isinstance(lora, LoraSettings):
            raise ConfigError(
                f"lora must be a mapping (rank, alpha, targets, ...) or null, received {lora!r}"
            )
        if self.objective != "policy":
            raise ConfigError(
                f"lora adapts the policy's trunk; objective {self.objective!r} trains no trunk (use policy)"
            )
        frozen = set(self.frozen)
        both = [group for group in lora.full_groups or () if group in frozen]
        if both:
            raise ConfigError(f"lora.full_groups: {both} would train in full, but frozen freezes them")
        for expert in lora.experts or ():
            if EXPERT_GROUPS[expert] in frozen:
                raise ConfigError(
                    f"lora.experts: {expert!r} is in group {EXPERT_GROUPS[expert]!r}, which frozen freezes"
                )
        if lora.vision and "vision" in frozen:
            raise ConfigError("lora.vision: true adapts the vision tower, but frozen freezes group 'vision'")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StageConfig:
        """Build from a plain mapping (e.g. parsed YAML); unknown keys raise ``ConfigError``."""
        return _build(cls, data, "stage config")

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML/JSON-serialisable mapping; ``StageConfig.from_dict(c.to_dict()) == c``."""
        data = dataclasses.asdict(self)
        data["frozen"] = list(self.frozen)
        data["optimizer"]["betas"] = list(self.optimizer.betas)
        data["lora"] = None if self.lora is None else self.lora.to_dict()
        return data

    def to_yaml(self) -> str:
        """The config as YAML text."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self, **changes: Any) -> StageConfig:
        """A copy with ``changes`` applied and validated again."""
        merged = merge_overrides(
            self.to_dict(), changes, where="stage config", replaced_whole=_REPLACED_WHOLE
        )
        return StageConfig.from_dict(merged)


def _build(cls: type, data: Mapping[str, Any], where: str) -> Any:
    names = [f.name for f in dataclasses.fields(cls)]
    reject_unknown_keys(where, data, names)
    return cls(**data)


# Mappings whose keys are open-ended (loss names, group names): an override replaces them whole, so that a
# stage can drop a loss; merging would make removal impossible.
_REPLACED_WHOLE = frozenset({"loss_weights", "group_lr"})
# Sections that default to None (absent): a stage file need not name them for an override to set them.
_OPTIONAL_SECTIONS = ("lora",)


def _configs_dir() -> Path:
    return Path(str(resources.files("f1.train").joinpath("configs")))


def shipped_stage_names() -> list[str]:
    """The names of the shipped stage files (``tokenizer``, ``stage1``, ..., ``stage3_scratch``)."""
    return sorted(path.stem for path in _configs_dir().glob("*.yaml"))


def stage_config_path(stage: int | str) -> Path:
    """The shipped YAML file of ``stage``: a number (0 = ``tokenizer``, 1, 2, 3) or a shipped name."""
    if isinstance(stage, int) and not isinstance(stage, bool) and stage in STAGE_NUMBERS:
        return _configs_dir() / f"{STAGE_NUMBERS[stage]}.yaml"
    names = shipped_stage_names()
    if isinstance(stage, str) and stage in names:
        return _configs_dir() / f"{stage}.yaml"
    hint = did_you_mean(str(stage), names) if isinstance(stage, str) else ""
    raise ConfigError(
        f"stage must be one of {', '.join(map(str, SHIPPED_STAGES))}, a shipped name ({', '.join(names)}) "
        f"or a stage YAML file, received {stage!r}{hint}"
    )


def load_stage_config(stage: int | str | Path, overrides: Mapping[str, Any] | None = None) -> StageConfig:
    """The shipped config of ``stage`` (0-3 or a shipped name, see :func:`shipped_stage_names`) or the YAML
    file ``stage``, with ``overrides`` applied."""
    if (isinstance(stage, int) and not isinstance(stage, bool)) or (
        isinstance(stage, str) and stage in shipped_stage_names()
    ):
        path = stage_config_path(stage)
    elif isinstance(stage, str) and not Path(stage).suffix and not Path(stage).exists():
        path = stage_config_path(stage)  # a misspelt shipped name: refused with a suggestion
    elif isinstance(stage, str | Path):
        path = Path(stage)
    else:
        raise ConfigError(f"stage must be a number, a shipped name or a path, received {stage!r}")
    data = read_yaml_mapping(path, what="stage config")
    # optional sections a stage file may omit (lora: null) can still be set by overrides
    data = {**{name: None for name in _OPTIONAL_SECTIONS}, **data}
    merged = merge_overrides(data, overrides or {}, where="stage config", replaced_whole=_REPLACED_WHOLE)
    return StageConfig.from_dict(merged)


def read_yaml_mapping(path: Path, *, what: str) -> dict[str, Any]:
    """Parse ``path`` as a YAML mapping; a missing file or bad YAML raises ``ConfigError`` naming the path."""
    if not path.is_file():
        raise ConfigError(f"{what} file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{what} file {path} is not valid YAML: {error}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} file {path} must hold a mapping, received {type(data).__name__}")
    return data
