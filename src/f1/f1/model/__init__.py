"""The F1 policy: configuration and presets, vision and language, embodiments, the composed model."""

from f1.model.adapters import EmbodimentAdapter
from f1.model.config import (
    ActionConfig,
    F1Config,
    GenerationConfig,
    LanguageConfig,
    TrunkConfig,
    VisionConfig,
)
from f1.model.embodiment import Embodiment, EmbodimentRegistry, FeatureStats, padded_embodiment
from f1.model.errors import CheckpointError, ConfigError, InputError, UnknownEmbodimentError
from f1.model.presets import PRESETS, preset, preset_names
from f1.model.uga import uga_spec

__all__ = [
    "PRESETS",
    "ActionConfig",
    "CheckpointError",
    "ConfigError",
    "Embodiment",
    "EmbodimentAdapter",
    "EmbodimentRegistry",
    "F1Config",
    "FeatureStats",
    "GenerationConfig",
    "InputError",
    "LanguageConfig",
    "TrunkConfig",
    "UnknownEmbodimentError",
    "VisionConfig",
    "padded_embodiment",
    "preset",
    "preset_names",
    "uga_spec",
]
