"""Presets by name: ``tiny`` (CPU demo and tests), ``small``, ``f1-4.2b`` (the published F1 shape) and
``pi0`` (the published pi0 shape, the target of ``f1 convert --from pi0 --preset pi0``).

``f1-4.2b``: PaliGemma understanding (SigLIP So400m/14 at 224 px + Gemma-2B, 2048/16384), generation and
action experts of width 1024/4096, 18 layers, 8 query heads, 1 KV head, head dim 256, the released VAR
VQ-VAE (256 px, 10 scales, 4096 codes); state and action padded to 32 dims as in pi0. Build it on the meta
device to inspect shapes and count parameters without memory (see :func:`f1.model.count_parameters`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from f1.errors import ConfigError
from f1.model.config import (
    ActionConfig,
    F1Config,
    GenerationConfig,
    LanguageConfig,
    TrunkConfig,
    VisionConfig,
)
from f1.model.embodiment import Embodiment, padded_embodiment
from var_foresight import VQVAEConfig

__all__ = ["PRESETS", "preset", "preset_names"]


def _tiny() -> F1Config:
    """64 px, 2-layer trunk of width 64: a training step at batch 8 well under a second on 2 CPU cores."""
    return F1Config(
        name="tiny",
        cameras=("front",),
        vision=VisionConfig(
            timm_model="vit_tiny_patch16_224",
            image_size=64,
            patch_size=8,
            width=64,
            depth=2,
            heads=2,
            mlp_ratio=2.0,
        ),
        language=LanguageConfig(tokenizer="open_clip", vocab_size=49408, max_length=16),
        trunk=TrunkConfig(
            n_layers=2,
            n_heads=4,
            n_kv_heads=1,
            head_dim=16,
            understanding_width=64,
            understanding_mlp=128,
            generation_width=64,
            generation_mlp=128,
            action_width=64,
            action_mlp=128,
        ),
        generation=GenerationConfig(
            vqvae=VQVAEConfig(
                ch=8,
                ch_mult=(1, 1, 2, 2),
                num_res_blocks=1,
                z_channels=16,
                vocab_size=256,
                norm_groups=4,
                scales=(1, 2, 4, 8),
            ),
            history_frames=2,
            history_stride=2,
            history_grid=(4, 4),
            history_heads=4,
            inference_scales=4,
            top_k=None,
            top_p=None,
        ),
        action=ActionConfig(chunk_size=8, n_action_steps=4, flow_steps=10),
        embodiments=(Embodiment(name="sim_arm", state_dim=8, action_dim=7, control_hz=10.0),),
    )


def _small() -> F1Config:
    """128 px, 4-layer trunk of widths 256/192/192: a CPU-trainable model with more capacity."""
    return F1Config(
        name="small",
        cameras=("front", "wrist"),
        vision=VisionConfig(
            timm_model="vit_small_patch16_224", image_size=128, patch_size=16, width=192, depth=4, heads=3
        ),
        language=LanguageConfig(tokenizer="open_clip", vocab_size=49408, max_length=24),
        trunk=TrunkConfig(
            n_layers=4,
            n_heads=8,
            n_kv_heads=2,
            head_dim=32,
            understanding_width=256,
            understanding_mlp=1024,
            generation_width=192,
            generation_mlp=768,
            action_width=192,
            action_mlp=768,
        ),
        generation=GenerationConfig(
            vqvae=VQVAEConfig(
                ch=16,
                ch_mult=(1, 1, 2, 2),
                num_res_blocks=1,
                z_channels=32,
                vocab_size=1024,
                norm_groups=8,
                scales=(1, 2, 3, 4, 6, 8, 12, 16),
            ),
            history_frames=4,
            history_stride=3,
            history_grid=(8, 8),
            history_heads=4,
            inference_scales=4,
            top_k=100,
            top_p=0.95,
        ),
        action=ActionConfig(chunk_size=16, n_action_steps=8, flow_steps=10),
        embodiments=(Embodiment(name="sim_arm", state_dim=8, action_dim=7, control_hz=10.0),),
    )


def _f1_4_2b() -> F1Config:
    """The published F1 shape (4.19B with two unused LM heads, 3.66B without them)."""
    return F1Config(
        name="f1-4.2b",
        cameras=("base", "left_wrist", "right_wrist"),
        vision=VisionConfig(
            timm_model="vit_so400m_patch14_siglip_224", image_size=224, depth=27, act_layer="gelu_tanh"
        ),
        language=LanguageConfig(tokenizer="gemma", vocab_size=257152, max_length=48),
        trunk=TrunkConfig(),
        generation=GenerationConfig(
            vqvae=VQVAEConfig(), history_frames=4, history_stride=3, inference_scales=4
        ),
        action=ActionConfig(chunk_size=50, n_action_steps=50, flow_steps=10),
        embodiments=(padded_embodiment("pad32", 32, 32, pad_to=32, control_hz=10.0),),
    )


def _pi0() -> F1Config:
    """The published pi0 shape (openpi / LeRobot ``lerobot/pi0``): PaliGemma (SigLIP So400m/14 + Gemma-2B)
    and a Gemma-300M action expert, no generation expert (mode ``no_gen``), pi0's time convention,
    3 cameras, chunk 50, state and action padded to 32 dims (3.24B parameters)."""
    pi0_cameras = ("base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb")
    return _f1_4_2b().with_overrides(
        {
            "name": "pi0",
            "mode": "no_gen",
            "cameras": pi0_cameras,
            "action.time_convention": "pi0",
            "embodiments": (padded_embodiment("pi0", 32, 32, pad_to=32, control_hz=10.0),),
        }
    )


PRESETS: dict[str, Callable[[], F1Config]] = {
    "tiny": _tiny,
    "small": _small,
    "f1-4.2b": _f1_4_2b,
    "pi0": _pi0,
}


def preset_names() -> tuple[str, ...]:
    return tuple(PRESETS)


def preset(name: str, **overrides: Any) -> F1Config:
    """The preset ``name`` (see :data:`PRESETS`), with fields overridden as :meth:`F1Config.with_overrides`
    does: a mapping merges into its part field by field, anything else replaces the field.

    Example: ``preset("tiny", mode="no_gen", generation={"history_stride": 4})`` (every other generation
    field keeps the preset's value).
    """
    if name not in PRESETS:
        raise ConfigError(f"preset: unknown preset {name!r}, expected one of {list(PRESETS)}")
    config = PRESETS[name]()
    return config.with_overrides(overrides) if overrides else config
