"""var_foresight: VAR-style next-scale multi-scale residual VQ-VAE and visual foresight generator.

Tokenizer: `VQVAE` (`VQVAEConfig`, presets ``"released"`` and ``"tiny"``), `load_vqvae` (strict, tensors
only), `MultiScaleResidualQuantizer` (encode, indices -> f_hat, teacher-forcing and incremental inputs).
Training: `TokenizerTrainer` with codebook health and dead-code restarts. Generator: `NextScaleEmbedding`,
`NextScaleHead`, `sample_next_scales` (any logits callable), `NextScalePredictor` on a `mot` trunk.
History: `TemporalHistoryEncoder`. Metrics: `per_scale_token_accuracy`, `psnr`, `ssim`.
"""

from var_foresight.checkpoint import (
    CheckpointError,
    load_predictor,
    load_vqvae,
    read_state_dict,
    save_predictor,
    save_vqvae,
)
from var_foresight.codebook import VectorQuantizeLookup, direct_lookup
from var_foresight.codebook_health import (
    CodebookHealth,
    codebook_health,
    dead_thresholds,
    perplexity_per_scale,
    restart_dead_codes,
)
from var_foresight.config import VQVAEConfig, released_vqvae_config, tiny_vqvae_config, vqvae_config
from var_foresight.history import HistoryEncoderConfig, TemporalHistoryEncoder
from var_foresight.metrics import per_scale_token_accuracy, psnr, ssim
from var_foresight.next_scale_embedding import NextScaleEmbedding, NextScaleHead, next_scale_cross_entropy
from var_foresight.predictor import (
    CachedNextScaleLogits,
    Foresight,
    NextScalePredictor,
    NextScalePredictorConfig,
    RecomputedNextScaleLogits,
)
from var_foresight.quantizer import MultiScaleResidualQuantizer, QuantizerEncoding, QuantizerTrainingOutput
from var_foresight.sampling import (
    NextScaleLogitsFn,
    SampledScales,
    SamplingConfig,
    filter_logits,
    guidance_weight,
    sample_next_scales,
    sample_tokens,
)
from var_foresight.scales import RELEASED_PHI_TABLE, VAR_SCALES_256, VAR_SCALES_512, ScaleSchedule, phi_table
from var_foresight.tokenizer_training import TokenizerStepReport, TokenizerTrainer, TokenizerTrainingConfig
from var_foresight.vqvae import VQVAE, Decoder, Encoder

__version__ = "0.1.0"

__all__ = [
    "RELEASED_PHI_TABLE",
    "VAR_SCALES_256",
    "VAR_SCALES_512",
    "VQVAE",
    "CachedNextScaleLogits",
    "CheckpointError",
    "CodebookHealth",
    "Decoder",
    "Encoder",
    "Foresight",
    "HistoryEncoderConfig",
    "MultiScaleResidualQuantizer",
    "NextScaleEmbedding",
    "NextScaleHead",
    "NextScaleLogitsFn",
    "NextScalePredictor",
    "NextScalePredictorConfig",
    "QuantizerEncoding",
    "QuantizerTrainingOutput",
    "RecomputedNextScaleLogits",
    "SampledScales",
    "SamplingConfig",
    "ScaleSchedule",
    "TemporalHistoryEncoder",
    "TokenizerStepReport",
    "TokenizerTrainer",
    "TokenizerTrainingConfig",
    "VQVAEConfig",
    "VectorQuantizeLookup",
    "codebook_health",
    "dead_thresholds",
    "direct_lookup",
    "filter_logits",
    "guidance_weight",
    "load_predictor",
    "load_vqvae",
    "next_scale_cross_entropy",
    "per_scale_token_accuracy",
    "perplexity_per_scale",
    "phi_table",
    "psnr",
    "read_state_dict",
    "released_vqvae_config",
    "restart_dead_codes",
    "sample_next_scales",
    "sample_tokens",
    "save_predictor",
    "save_vqvae",
    "ssim",
    "tiny_vqvae_config",
    "vqvae_config",
]
