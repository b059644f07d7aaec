"""mot: Mixture-of-Transformers with declarative progressive attention and KV caching.

Describe the token layout as an :class:`AttentionSpec` (segments, their experts, intra-segment rules and who
may see whom), build a :class:`MixtureOfTransformers` from a :class:`MoTConfig`, and run it with or without a
:class:`KVCache`.
"""

from mot.attention import additive_mask, joint_attention
from mot.cache import KVCache
from mot.config import AttentionBackend, ExpertConfig, MoTConfig
from mot.errors import ArgumentTypeError, ConfigError, MoTError, SpecError, WeightImportError
from mot.expert import KV_ONLY_UNBUILT_LAYER_TENSORS, Expert, ExpertAttention, ExpertLayer
from mot.layers import GeGLU, RMSNorm, apply_rotary, rotary_cos_sin, rotary_table
from mot.layout import ValidLengths, positions_from_valid, token_valid
from mot.mask import check_rows_see_a_key, compile_block_mask, compile_mask, reference_mask, render_mask
from mot.model import COMPILE_MODES, DownstreamCall, LayerEnd, MixtureOfTransformers, compute_dtype
from mot.spec import AttentionSpec, Blockwise, IntraRule, Segment
from mot.weights import (
    GEMMA_LAYER_TENSORS,
    find_gemma_prefix,
    gemma_config_to_mot,
    load_gemma_expert,
    load_pi0,
)

__version__ = "0.1.0"

__all__ = [
    "COMPILE_MODES",
    "GEMMA_LAYER_TENSORS",
    "KV_ONLY_UNBUILT_LAYER_TENSORS",
    "ArgumentTypeError",
    "AttentionBackend",
    "AttentionSpec",
    "Blockwise",
    "ConfigError",
    "DownstreamCall",
    "Expert",
    "ExpertAttention",
    "ExpertConfig",
    "ExpertLayer",
    "GeGLU",
    "IntraRule",
    "KVCache",
    "LayerEnd",
    "MixtureOfTransformers",
    "MoTConfig",
    "MoTError",
    "RMSNorm",
    "Segment",
    "SpecError",
    "ValidLengths",
    "WeightImportError",
    "additive_mask",
    "apply_rotary",
    "check_rows_see_a_key",
    "compile_block_mask",
    "compile_mask",
    "compute_dtype",
    "find_gemma_prefix",
    "gemma_config_to_mot",
    "joint_attention",
    "load_gemma_expert",
    "load_pi0",
    "positions_from_valid",
    "reference_mask",
    "render_mask",
    "rotary_cos_sin",
    "rotary_table",
    "token_valid",
]
