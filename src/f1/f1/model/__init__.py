"""The F1 model and policy: configuration and presets, vision and language, embodiments, the network.

Main entry points: :class:`F1Model` (the network: ``model(batch) -> losses`` for the trainer,
``sample(inputs) -> Plan``), :class:`F1Policy` (around it: ``select_action``/``reset``, ``plan``,
save/load, ``set_execution`` for asynchronous and real-time-chunked execution), :func:`preset` and
:class:`F1Config`, :class:`Embodiment`, :func:`count_parameters`/:func:`inference_flops`, and the weight
importer :func:`convert_checkpoint`/:func:`import_weights` (published F1, LeRobot pi0, PaliGemma, VAR).
"""

from f1.errors import CheckpointError, ConfigError, InputError, UnknownEmbodimentError
from f1.model.adapters import EmbodimentAdapter
from f1.model.checkpoint import load_model, read_policy_checkpoint, save_model
from f1.model.checkpoint_shape import ShapeReading, pi0_config_from_checkpoint
from f1.model.config import (
    ActionConfig,
    F1Config,
    GenerationConfig,
    LanguageConfig,
    RealTimeChunkingConfig,
    TrunkConfig,
    VisionConfig,
)
from f1.model.embodiment import Embodiment, EmbodimentRegistry, FeatureStats, padded_embodiment
from f1.model.f1_model import EXPERT_GROUPS, PARAMETER_GROUPS, F1Model, Foresight, Plan, mot_config
from f1.model.latency import LATENCY_MODULES, LatencyRecorder
from f1.model.params import count_parameters, inference_flops
from f1.model.policy import EXECUTION_MODES, ExecutionSettings, F1Policy, load_policy, save_policy
from f1.model.presets import PRESETS, preset, preset_names
from f1.model.realtime_chunking import PreviousChunk
from f1.model.uga import uga_spec
from f1.model.weight_import import SOURCE_FORMATS, ImportReport, convert_checkpoint, import_weights

__all__ = [
    "EXECUTION_MODES",
    "EXPERT_GROUPS",
    "LATENCY_MODULES",
    "PARAMETER_GROUPS",
    "PRESETS",
    "SOURCE_FORMATS",
    "ActionConfig",
    "CheckpointError",
    "ConfigError",
    "Embodiment",
    "EmbodimentAdapter",
    "EmbodimentRegistry",
    "ExecutionSettings",
    "F1Config",
    "F1Model",
    "F1Policy",
    "FeatureStats",
    "Foresight",
    "GenerationConfig",
    "ImportReport",
    "InputError",
    "LanguageConfig",
    "LatencyRecorder",
    "Plan",
    "PreviousChunk",
    "RealTimeChunkingConfig",
    "ShapeReading",
    "TrunkConfig",
    "UnknownEmbodimentError",
    "VisionConfig",
    "convert_checkpoint",
    "count_parameters",
    "import_weights",
    "inference_flops",
    "load_model",
    "load_policy",
    "mot_config",
    "padded_embodiment",
    "pi0_config_from_checkpoint",
    "preset",
    "preset_names",
    "read_policy_checkpoint",
    "save_model",
    "save_policy",
    "uga_spec",
]
