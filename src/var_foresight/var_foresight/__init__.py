"""var_foresight: VAR-style next-scale multi-scale residual VQ-VAE and visual foresight generator."""

from var_foresight.checkpoint import CheckpointError, load_vqvae, read_state_dict, save_vqvae
from var_foresight.config import VQVAEConfig, released_vqvae_config, tiny_vqvae_config, vqvae_config
from var_foresight.quantizer import MultiScaleResidualQuantizer, QuantizerEncoding, QuantizerTrainingOutput
from var_foresight.scales import RELEASED_PHI_TABLE, VAR_SCALES_256, VAR_SCALES_512, ScaleSchedule, phi_table
from var_foresight.vqvae import VQVAE, Decoder, Encoder

__version__ = "0.1.0"

__all__ = [
    "RELEASED_PHI_TABLE",
    "VAR_SCALES_256",
    "VAR_SCALES_512",
    "VQVAE",
    "CheckpointError",
    "Decoder",
    "Encoder",
    "MultiScaleResidualQuantizer",
    "QuantizerEncoding",
    "QuantizerTrainingOutput",
    "ScaleSchedule",
    "VQVAEConfig",
    "load_vqvae",
    "phi_table",
    "read_state_dict",
    "released_vqvae_config",
    "save_vqvae",
    "tiny_vqvae_config",
    "vqvae_config",
]
