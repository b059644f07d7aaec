"""Typed configuration of the F1 policy: one dataclass per part, validated once, YAML/JSON round trip.

``F1Config`` holds everything needed to rebuild a policy (it is saved beside every checkpoint):
vision tower, language tokens, the three-expert trunk, the generation expert (VQ-VAE, history, scales),
the action expert (chunk, flow sampler), the registered embodiments and the mode.

Modes (one model, three behaviours; the demo trains all three with the same code):

- ``"f1"``: understanding -> generation (history + next-scale foresight) -> action;
- ``"no_gen"``: no generation expert; actions from understanding and state only (the paper's No-Gen);
- ``"history_no_foresight"``: history frames reach the action expert through the same history encoder,
  but no foresight is predicted or trained.

``generation.frozen`` gives the paper's Frozen-Gen ablation, ``generation.inference_scales`` (and the
runtime argument ``num_scales``) the 2/4/6-scale ablation.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

from f1.checks import (
    finite_float,
    float_tuple,
    merge_overrides,
    one_of,
    optional_positive_int,
    positive_int,
    reject_unknown_keys,
)
from f1.errors import ConfigError
from f1.model.embodiment import Embodiment
from flowmatch import FIXED_STEP_SOLVERS, RTC_SCHEDULES
from var_foresight import VQVAEConfig

__all__ = [
    "ActionConfig",
    "F1Config",
    "GenerationConfig",
    "LanguageConfig",
    "Mode",
    "RealTimeChunkingConfig",
    "TrunkConfig",
    "VisionConfig",
]

Mode = Literal["f1", "no_gen", "history_no_foresight"]
MODES: tuple[str, ...] = get_args(Mode)
TokenizerKind = Literal["open_clip", "gemma"]


@dataclass(frozen=True)
class VisionConfig:
    """A timm vision tower (built with ``pretrained=False``), applied to every camera with shared weights.

    Attributes:
        timm_model: timm model name, e.g. ``"vit_so400m_patch14_siglip_224"``.
        image_size: square input side in pixels; camera images must have exactly this size.
        patch_size, width, depth, heads, mlp_ratio: overrides of the timm model's own (None: keep).
        act_layer: timm activation override, e.g. ``"gelu_tanh"``: PaliGemma's SigLIP uses the tanh GELU,
            timm's ``vit_so400m_patch14_siglip_224`` the exact one (imported weights need ``"gelu_tanh"``).
        mean, std: per-channel pixel normalization applied to images in [0, 1] (SigLIP: 0.5, 0.5).
        stem: how a ViT turns pixels into patch tokens: ``"patch"`` (timm's one strided convolution, as
            pretrained towers have) or ``"conv"`` (a stack of 3x3 stride-2 convolutions reaching the patch
            size, Xiao et al. 2021, "Early convolutions help transformers see better": localizes faster
            when trained from scratch; needs a ViT with a power-of-two ``patch_size``).
    """

    timm_model: str = "vit_so400m_patch14_siglip_224"
    image_size: int = 224
    patch_size: int | None = None
    width: int | None = None
    depth: int | None = None
    heads: int | None = None
    mlp_ratio: float | None = None
    act_layer: str | None = None
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    stem: Literal["patch", "conv"] = "patch"

    def __post_init__(self) -> None:
        if not isinstance(self.timm_model, str) or not self.timm_model:
            raise ConfigError(f"vision.timm_model: expected a timm model name, received {self.timm_model!r}")
        positive_int("vision.image_size", self.image_size)
        for name in ("patch_size", "width", "depth", "heads"):
            optional_positive_int(f"vision.{name}", getattr(self, name))
        if self.mlp_ratio is not None:
            finite_float("vision.mlp_ratio", self.mlp_ratio, low=1e-3)
        if self.patch_size is not None and self.image_size % self.patch_size:
            raise ConfigError(
                f"vision.image_size: expected a multiple of patch_size={self.patch_size}, "
                f"received {self.image_size}"
            )
        object.__setattr__(self, "mean", float_tuple("vision.mean", self.mean, 3))
        std = float_tuple("vision.std", self.std, 3)
        if min(std) <= 0:
            raise ConfigError(f"vision.std: expected positive values, received {std}")
        object.__setattr__(self, "std", std)
        one_of("vision.stem", self.stem, ("patch", "conv"))
        if self.stem == "conv":
            patch = self.patch_size
            if patch is None or patch < 2 or patch & (patch - 1):
                raise ConfigError(
                    "vision.patch_size: the conv stem needs a power-of-two patch size >= 2, "
                    f"received {patch!r}"
                )


@dataclass(frozen=True)
class LanguageConfig:
    """Language tokens of the understanding expert.

    Attributes:
        tokenizer: ``"open_clip"`` (offline CLIP BPE, the default) or ``"gemma"`` (a Gemma/PaliGemma
            tokenizer object the user passes to the policy, e.g. ``transformers.AutoTokenizer`` loaded from
            local files: nothing is downloaded).
        open_clip_model: the open_clip tokenizer name.
        vocab_size: rows of the token embedding (CLIP: 49408; pi0/F1: 257152; with ``kept_ids``:
            ``len(kept_ids) + 2``).
        max_length: tokens per instruction (right-padded, truncated beyond).
        kept_ids: a trimmed vocabulary: the tokenizer's ids the embedding keeps a row for (data, not code;
            :func:`f1.model.language.trim_vocabulary` collects them from the instructions a task family
            uses). Row 0 stays padding, kept id ``kept_ids[i]`` gets row ``i + 1``, and every other id
            shares the last row (unknown). None: one row per tokenizer id.
    """

    tokenizer: TokenizerKind = "open_clip"
    open_clip_model: str = "ViT-B-32"
    vocab_size: int = 49408
    max_length: int = 48
    kept_ids: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        one_of("language.tokenizer", self.tokenizer, ("open_clip", "gemma"))
        positive_int("language.vocab_size", self.vocab_size)
        positive_int("language.max_length", self.max_length)
        if self.kept_ids is not None:
            kept = self.kept_ids
            if isinstance(kept, str | bytes) or not isinstance(kept, Sequence):
                raise ConfigError(f"language.kept_ids: expected a list of token ids, received {kept!r}")
            if not kept or not all(isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in kept):
                raise ConfigError(
                    f"language.kept_ids: expected a non-empty list of positive int token ids (0 is "
                    f"padding), received {list(kept)!r}"
                )
            if len(set(kept)) != len(kept):
                raise ConfigError(f"language.kept_ids: expected distinct ids, received {list(kept)!r}")
            object.__setattr__(self, "kept_ids", tuple(kept))
            if self.vocab_size != len(kept) + 2:
                raise ConfigError(
                    f"language.vocab_size: a trimmed vocabulary of {len(kept)} kept ids has "
                    f"{len(kept) + 2} rows (padding, the kept ids, unknown), received {self.vocab_size}"
                )
        if self.max_length < 2:
            raise ConfigError(
                f"language.max_length: expected >= 2 (start and end tokens), received {self.max_length}"
            )


@dataclass(frozen=True)
class TrunkConfig:
    """The Mixture-of-Transformers trunk: shared depth and head layout, one width per expert.

    Attributes:
        n_layers, n_heads, n_kv_heads, head_dim: shared by all experts (one joint attention per layer).
        understanding_width, understanding_mlp: Gemma-2B: 2048 / 16384.
        generation_width, generation_mlp: "Gemma-300M": 1024 / 4096.
        action_width, action_mlp: "Gemma-300M": 1024 / 4096.
        rope_base: rotary base.
        attention_backend: ``"sdpa"`` (CPU default) or ``"flex"``.
    """

    n_layers: int = 18
    n_heads: int = 8
    n_kv_heads: int = 1
    head_dim: int = 256
    understanding_width: int = 2048
    understanding_mlp: int = 16384
    generation_width: int = 1024
    generation_mlp: int = 4096
    action_width: int = 1024
    action_mlp: int = 4096
    rope_base: float = 10000.0
    attention_backend: Literal["sdpa", "flex"] = "sdpa"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if f.name not in ("rope_base", "attention_backend"):
                positive_int(f"trunk.{f.name}", getattr(self, f.name))
        if self.n_heads % self.n_kv_heads:
            raise ConfigError(
                f"trunk.n_kv_heads: expected a divisor of n_heads={self.n_heads}, received {self.n_kv_heads}"
            )
        if self.head_dim % 2:
            raise ConfigError(f"trunk.head_dim: expected an even number (rotary), received {self.head_dim}")
        finite_float("trunk.rope_base", self.rope_base, low=1.0)
        one_of("trunk.attention_backend", self.attention_backend, ("sdpa", "flex"))


@dataclass(frozen=True)
class GenerationConfig:
    """The generation expert: frozen VQ-VAE tokenizer, history encoder, next-scale foresight.

    Attributes:
        vqvae: the ``var_foresight`` tokenizer shape (its image size is the foresight image size).
        history_frames: past frames fed to the history encoder (any number >= 1).
        history_stride: control steps between history frames (published: 3).
        history_grid: cells per frame kept by the history encoder (its output has ``h * w`` tokens).
        history_layers, history_heads: the history encoder's frame-mixing transformer.
        inference_scales: scales predicted at inference by default (published: 4); ``num_scales`` at call
            time overrides it (the 2/4/6-scale ablation).
        train_scales: scales teacher-forced in training when the trainer passes ``generation_scales=None``
            (None: all scales).
        top_k, top_p, temperature: token sampling at inference (published: 900, 0.95, 1.0).
        frozen: the Frozen-Gen ablation (generation weights never receive gradients).
        foresight_camera: camera whose next frame is imagined (None: the first camera).
        complete_foresight: the action expert also reads the complete imagined frame: ``f_hat`` of every
            predicted scale (the finest included) at the finest grid, embedded as one more segment,
            ``fut`` (mode ``f1``). Off, as published: the action expert sees the ``gen`` tokens, whose
            inputs stop one scale short of the finest.
        sampled_foresight: share of training samples whose ``fut`` segment holds the model's own
            prediction of the future (the most likely tokens of each scale, one pass, no gradient) instead
            of the real future, so that training sees what inference feeds (needs ``complete_foresight``).
    """

    vqvae: VQVAEConfig = field(default_factory=VQVAEConfig)
    history_frames: int = 4
    history_stride: int = 3
    history_grid: tuple[int, int] = (16, 16)
    history_layers: int = 1
    history_heads: int = 8
    inference_scales: int = 4
    train_scales: int | None = None
    top_k: int | None = 900
    top_p: float | None = 0.95
    temperature: float = 1.0
    frozen: bool = False
    foresight_camera: str | None = None
    complete_foresight: bool = False
    sampled_foresight: float = 0.0

    def __post_init__(self) -> None:
        vqvae = self.vqvae
        if isinstance(vqvae, Mapping):
            try:
                vqvae = VQVAEConfig.from_dict(vqvae)
            except (KeyError, ValueError, TypeError) as err:
                raise ConfigError(f"generation.vqvae: {err}") from None
        if not isinstance(vqvae, VQVAEConfig):
            raise ConfigError(f"generation.vqvae: expected a VQVAEConfig, received {type(vqvae).__name__}")
        object.__setattr__(self, "vqvae", vqvae)
        positive_int("generation.history_frames", self.history_frames)
        positive_int("generation.history_stride", self.history_stride)
        grid = tuple(self.history_grid)
        if len(grid) != 2:
            raise ConfigError(f"generation.history_grid: expected (h, w), received {self.history_grid!r}")
        for i, side in enumerate(grid):
            positive_int(f"generation.history_grid[{i}]", side)
        object.__setattr__(self, "history_grid", grid)
        positive_int("generation.history_layers", self.history_layers)
        positive_int("generation.history_heads", self.history_heads)
        n_scales = len(vqvae.scales)  # vqvae_scales
        for name in ("inference_scales", "train_scales"):
            value = getattr(self, name)
            if value is None and name == "train_scales":
                continue
            positive_int(f"generation.{name}", value)
            if value > n_scales:
                raise ConfigError(
                    f"generation.{name}: expected at most the VQ-VAE's {n_scales} scales, received {value}"
                )
        optional_positive_int("generation.top_k", self.top_k)
        if self.top_p is not None:
            finite_float("generation.top_p", self.top_p, low=1e-6, high=1.0)
        finite_float("generation.temperature", self.temperature, low=1e-6)
        if not isinstance(self.frozen, bool):
            raise ConfigError(f"generation.frozen: expected a bool, received {self.frozen!r}")
        if not isinstance(self.complete_foresight, bool):
            raise ConfigError(
                f"generation.complete_foresight: expected a bool, received {self.complete_foresight!r}"
            )
        finite_float("generation.sampled_foresight", self.sampled_foresight, low=0.0, high=1.0)
        if self.sampled_foresight and not self.complete_foresight:
            raise ConfigError(
                "generation.sampled_foresight: mixes predictions into the complete foresight, expected 0 "
                f"without generation.complete_foresight, received {self.sampled_foresight}"
            )

    @property
    def vqvae_scales(self) -> int:
        """Scales of the VQ-VAE schedule: the most a pass can predict (``inference_scales``, a call's
        ``num_scales`` and ``train_scales`` choose how many of them)."""
        return len(self.vqvae.scales)


@dataclass(frozen=True)
class RealTimeChunkingConfig:
    """Real-time chunking (``action.rtc``): how a new chunk is inpainted toward the previous one's
    remaining actions when :meth:`f1.model.F1Policy.plan` gets a ``previous_chunk`` (or
    :meth:`~f1.model.F1Policy.select_action` runs in mode ``"rtc"``); see :class:`flowmatch.RealTimeChunking`.

    Attributes:
        execution_horizon: ``s``: the guidance weight is 0 from step ``H - s`` of the new chunk. None (the
            default): from where the previous chunk's actions end (``H - H'`` for a previous chunk of
            ``H'`` steps, the paper's choice); a number larger than that ends the soft overlap earlier.
        max_guidance: ``beta``, the cap on the guidance weight (the paper's 5.0; 0 disables guidance).
        schedule: decay of the weights over the overlap after the frozen steps: ``"exp"`` (the paper's),
            ``"linear"``, ``"ones"`` or ``"zeros"`` (only the frozen steps are guided).
    """

    execution_horizon: int | None = None
    max_guidance: float = 5.0
    schedule: str = "exp"

    def __post_init__(self) -> None:
        value = self.execution_horizon
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ConfigError(
                f"action.rtc.execution_horizon: expected an int >= 0 or None, received {value!r}"
            )
        object.__setattr__(
            self, "max_guidance", finite_float("action.rtc.max_guidance", self.max_guidance, low=0.0)
        )
        one_of("action.rtc.schedule", self.schedule, RTC_SCHEDULES)


# Built-in solvers whose last stage evaluates the field at the end of the step (tau = 1 on the last one).
_ENDPOINT_SOLVERS = ("heun", "rk4", "rk4_38")


@dataclass(frozen=True)
class ActionConfig:
    """The action expert and its flow-matching head.

    Attributes:
        chunk_size: ``H``, actions per chunk.
        n_action_steps: actions executed from each chunk before replanning (LeRobot's replanning interval).
        flow_steps: ODE steps at inference (pi0/F1: 10).
        solver: a fixed-step solver name in ``flowmatch``'s registry (``"euler"``, ``"midpoint"``, ``"heun"``,
            ``"rk4"``, ``"rk4_38"``, or one added with ``flowmatch.register_solver``).
        time_sampler: training time distribution: ``"beta"`` (pi0's), ``"uniform"``, ``"logit_normal"``.
        time_convention: what the adapters' weights expect: ``"tau"`` (ours: time ``tau``, 0 noise,
            velocity ``a - eps``) or ``"pi0"`` (imported pi0/F1 weights: time ``t = 1 - tau``, velocity
            ``eps - a``); converted at the adapter's edge, so sampling and the loss are unchanged.
        prediction: what the action expert's output is: ``"velocity"`` (pi0's and F1's: ``a - eps``, trained
            with its squared error) or ``"data"`` (x-prediction: the clean chunk ``a_hat``, trained with the
            squared error of ``a_hat``; sampling turns it into the velocity ``(a_hat - a_tau) / (1 - tau)``
            with :func:`flowmatch.velocity_from_data_prediction`; the solvers that evaluate the field at
            ``tau = 1``, Heun's and the Runge-Kutta ones, are refused with it). Both are flow matching on
            the same path and sample with the same solvers; ``"data"``'s target has no noise in it, so a small
            model trained on few samples learns it like a regression. Imported pi0/F1 heads predict the
            velocity.
        noise_scale: the standard deviation of the noise a plan starts from (inference only; training always
            draws unit noise). 1 samples the learned distribution; 0 integrates from the origin, which
            gives one deterministic chunk per observation, near the most likely one where the actions are
            bimodal (a gripper that closes or not). A given ``noise=`` is used as it is.
        noise_draws: flow-matching (noise, time) draws per training sample. With more than one, the
            prefix (everything the action expert reads) runs once and its keys/values are shared by every
            draw (the action segment is a few tokens, the prefix hundreds), so the flow loss averages
            several draws per observation at little extra cost: a lower-variance objective, still flow
            matching. 1 (pi0's and F1's training) runs the whole sequence in one pass.
        rtc: real-time chunking settings (:class:`RealTimeChunkingConfig`); a config saved before they
            existed loads with the defaults.
    """

    chunk_size: int = 50
    n_action_steps: int = 50
    flow_steps: int = 10
    solver: str = "euler"
    time_sampler: Literal["beta", "uniform", "logit_normal"] = "beta"
    time_convention: Literal["tau", "pi0"] = "tau"
    prediction: Literal["velocity", "data"] = "velocity"
    noise_scale: float = 1.0
    noise_draws: int = 1
    rtc: RealTimeChunkingConfig = field(default_factory=RealTimeChunkingConfig)

    def __post_init__(self) -> None:
        if isinstance(self.rtc, Mapping):
            reject_unknown_keys("action.rtc", self.rtc, RealTimeChunkingConfig)
            object.__setattr__(self, "rtc", RealTimeChunkingConfig(**self.rtc))
        if not isinstance(self.rtc, RealTimeChunkingConfig):
            raise ConfigError(
                f"action.rtc: expected a RealTimeChunkingConfig, received {type(self.rtc).__name__}"
            )
        positive_int("action.chunk_size", self.chunk_size)
        positive_int("action.noise_draws", self.noise_draws)
        one_of("action.time_convention", self.time_convention, ("tau", "pi0"))
        one_of("action.prediction", self.prediction, ("velocity", "data"))
        finite_float("action.noise_scale", self.noise_scale, low=0.0)
        if self.prediction == "data" and self.time_convention == "pi0":
            raise ConfigError(
                "action.prediction: pi0's time convention ('pi0') is for imported heads, which predict the "
                "velocity; expected prediction 'velocity' with it, received 'data'"
            )
        if self.prediction == "data" and self.solver in _ENDPOINT_SOLVERS:
            raise ConfigError(
                f"action.solver: {self.solver!r} evaluates the field at tau = 1, where a data prediction's "
                f"velocity (a_hat - x) / (1 - tau) is undefined; expected 'euler' or 'midpoint' with "
                f"action.prediction 'data', received {self.solver!r}"
            )
        positive_int("action.n_action_steps", self.n_action_steps)
        if self.n_action_steps > self.chunk_size:
            raise ConfigError(
                f"action.n_action_steps: expected at most chunk_size={self.chunk_size}, "
                f"received {self.n_action_steps}"
            )
        positive_int("action.flow_steps", self.flow_steps)
        one_of("action.solver", self.solver, tuple(FIXED_STEP_SOLVERS))
        one_of("action.time_sampler", self.time_sampler, ("beta", "uniform", "logit_normal"))
        horizon = self.rtc.execution_horizon
        if horizon is not None and horizon > self.chunk_size - 1:
            raise ConfigError(
                f"action.rtc.execution_horizon: expected at most chunk_size - 1 = {self.chunk_size - 1} "
                f"(at least one step of the previous chunk overlaps the new one), received {horizon}"
            )


_PARTS: dict[str, type] = {
    "vision": VisionConfig,
    "language": LanguageConfig,
    "trunk": TrunkConfig,
    "generation": GenerationConfig,
    "action": ActionConfig,
}


@dataclass(frozen=True)
class F1Config:
    """Everything needed to rebuild an F1 policy.

    Attributes:
        name: preset or user name (informational).
        mode: ``"f1"``, ``"no_gen"`` or ``"history_no_foresight"`` (see the module docstring).
        cameras: camera names; the policy reads ``observation.images.<name>`` for each, in this order.
        vision, language, trunk, generation, action: the parts.
        embodiments: the registered embodiments (at least one).
        default_embodiment: used when a batch or observation names none (None: the first one).
    """

    name: str = "custom"
    mode: Mode = "f1"
    cameras: tuple[str, ...] = ("front",)
    vision: VisionConfig = field(default_factory=VisionConfig)
    language: LanguageConfig = field(default_factory=LanguageConfig)
    trunk: TrunkConfig = field(default_factory=TrunkConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    action: ActionConfig = field(default_factory=ActionConfig)
    embodiments: tuple[Embodiment, ...] = ()
    default_embodiment: str | None = None

    def __post_init__(self) -> None:
        one_of("mode", self.mode, MODES)
        cameras = (self.cameras,) if isinstance(self.cameras, str) else tuple(self.cameras)
        if not cameras or not all(isinstance(c, str) and c and "." not in c for c in cameras):
            raise ConfigError(
                f"cameras: expected one or more camera names without '.', received {self.cameras!r}"
            )
        if len(set(cameras)) != len(cameras):
            raise ConfigError(f"cameras: expected distinct names, received {cameras}")
        object.__setattr__(self, "cameras", cameras)
        for name, cls in _PARTS.items():
            part = getattr(self, name)
            if isinstance(part, Mapping):
                reject_unknown_keys(name, part, cls)
                part = _part_from_dict(cls, part)
                object.__setattr__(self, name, part)
            if not isinstance(part, cls):
                raise ConfigError(f"{name}: expected a {cls.__name__}, received {type(part).__name__}")
        embodiments = tuple(
            Embodiment.from_dict(e) if isinstance(e, Mapping) else e for e in self.embodiments
        )
        if not embodiments or not all(isinstance(e, Embodiment) for e in embodiments):
            raise ConfigError("embodiments: expected at least one Embodiment")
        names = [e.name for e in embodiments]
        if len(set(names)) != len(names):
            raise ConfigError(f"embodiments: expected distinct names, received {names}")
        object.__setattr__(self, "embodiments", embodiments)
        if self.default_embodiment is not None and self.default_embodiment not in names:
            raise ConfigError(
                f"default_embodiment: expected one of {names}, received {self.default_embodiment!r}"
            )
        if self.trunk.generation_width % self.generation.history_heads:
            raise ConfigError(
                f"generation.history_heads: expected a divisor of trunk.generation_width="
                f"{self.trunk.generation_width}, received {self.generation.history_heads}"
            )
        camera = self.generation.foresight_camera
        if camera is not None and camera not in cameras:
            raise ConfigError(
                f"generation.foresight_camera: expected one of {list(cameras)}, received {camera!r}"
            )

    # --- derived ---------------------------------------------------------------------------------------
    @property
    def has_history(self) -> bool:
        """Whether history frames are encoded (modes ``f1`` and ``history_no_foresight``)."""
        return self.mode != "no_gen"

    @property
    def has_foresight(self) -> bool:
        """Whether the next-scale foresight is predicted (mode ``f1``)."""
        return self.mode == "f1"

    @property
    def history_offsets(self) -> tuple[int, ...]:
        """Control-step offsets of the history frames, oldest first, the current frame last: e.g.
        ``(-9, -6, -3, 0)`` for 4 frames at stride 3; ``()`` in mode ``no_gen``. Every reader of history
        (data windows, the policy's buffer, evaluation) takes them from here."""
        if not self.has_history:
            return ()
        frames, stride = self.generation.history_frames, self.generation.history_stride
        return tuple(-(frames - 1 - i) * stride for i in range(frames))

    @property
    def future_offset(self) -> int | None:
        """Offset of the frame the foresight imagines (``history_stride`` ahead), None without foresight."""
        return self.generation.history_stride if self.has_foresight else None

    @property
    def foresight_camera(self) -> str:
        return self.generation.foresight_camera or self.cameras[0]

    @property
    def default_embodiment_name(self) -> str:
        return self.default_embodiment or self.embodiments[0].name

    def replace(self, **changes: Any) -> F1Config:
        """A validated copy with top-level fields changed (e.g. ``mode="no_gen"``)."""
        return dataclasses.replace(self, **changes)

    def with_overrides(self, overrides: Mapping[str, Any], *, where: str = "") -> F1Config:
        """A validated copy with values replaced by dotted keys or nested mappings, field by field.

        ``config.with_overrides({"trunk.n_kv_heads": 2, "action": {"chunk_size": 10}})`` changes those two
        fields and keeps every other field of ``trunk`` and ``action``; a value that is not a mapping
        (a tuple, a dataclass such as ``VisionConfig(...)``, the embodiment list) replaces the field whole.
        An unknown key raises :class:`ConfigError` naming it (prefixed by ``where``, e.g.
        ``"model.overrides"``), the closest known key and the keys that exist there.
        """
        return F1Config.from_dict(merge_overrides(self.to_dict(), overrides, where=where or "overrides"))

    def with_embodiment(self, embodiment: Embodiment) -> F1Config:
        """A copy with ``embodiment`` appended to the registry."""
        return self.replace(embodiments=(*self.embodiments, embodiment))

    # --- serialisation ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict of JSON types (inverse of :meth:`from_dict`)."""
        out: dict[str, Any] = {"name": self.name, "mode": self.mode, "cameras": list(self.cameras)}
        for name in _PARTS:
            out[name] = _part_to_dict(getattr(self, name))
        out["embodiments"] = [e.to_dict() for e in self.embodiments]
        out["default_embodiment"] = self.default_embodiment
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> F1Config:
        """Build from :meth:`to_dict` output; unknown keys raise :class:`ConfigError` naming them."""
        reject_unknown_keys("F1Config", data, cls)
        values = dict(data)
        if "embodiments" in values:
            values["embodiments"] = tuple(values["embodiments"])
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_json(cls, text: str) -> F1Config:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"config: not valid JSON ({err})") from None
        return cls.from_dict(data)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> F1Config:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"config: not valid YAML ({err})") from None
        if not isinstance(data, Mapping):
            raise ConfigError(f"config: expected a YAML mapping, received {type(data).__name__}")
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        """Write as YAML (``.yaml``/``.yml``) or JSON (anything else)."""
        path = Path(path)
        path.write_text(self.to_yaml() if path.suffix in (".yaml", ".yml") else self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> F1Config:
        """Read a file written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"path: expected a config file, {str(path)!r} does not exist")
        try:
            text = path.read_text()
            return cls.from_yaml(text) if path.suffix in (".yaml", ".yml") else cls.from_json(text)
        except UnicodeDecodeError as err:
            raise ConfigError(f"{path}: not a text config file ({err})") from None
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None


def _part_to_dict(part: Any) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(part):
        value = getattr(part, f.name)
        if isinstance(value, VQVAEConfig):
            value = value.to_dict()
        elif isinstance(value, RealTimeChunkingConfig):
            value = dataclasses.asdict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def _part_from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    values = dict(data)
    for key in ("mean", "std", "history_grid"):
        if key in values and isinstance(values[key], list):
            values[key] = tuple(values[key])
    return cls(**values)
