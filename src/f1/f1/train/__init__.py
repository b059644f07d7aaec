"""Training F1: the three stages as configurations of one trainer, atomic checkpoints with exact resume,
data parallelism through ``torchrun``, LoRA fine-tuning through peft (:mod:`f1.train.lora`).

Typical use::

    from f1.train import Trainer, SeededBatchStream, load_stage_config

    config = load_stage_config(3, {"steps": 1000, "batch_size": 64})
    batches = SeededBatchStream(dataset, config.batch_size, seed=config.seed)
    trainer = Trainer(model, batches, config, output_dir="runs/stage3")  # e.g. an f1.model.F1Model
    trainer.fit()
"""

from .batches import ReplayedBatches, ResumableBatches, SeededBatchStream
from .checkpoint import (
    CheckpointError,
    TrainingCheckpoint,
    latest_checkpoint,
    load_policy_weights,
    read_checkpoint,
    read_checkpoint_metadata,
    read_weights,
    save_checkpoint,
)
from .config import (
    ConfigError,
    LoraSettings,
    OptimizerConfig,
    ScheduleConfig,
    StageConfig,
    load_stage_config,
)
from .distributed import STRATEGIES, DistributedConfig, DistributedContext, init_distributed
from .export import export_policy, policy_from_checkpoint
from .factories import embodiment_from_dataset
from .frame_codes import FrameEncoder, encode_dataset_frames
from .metrics import MetricsLogger, read_metrics
from .protocol import PARAMETER_GROUP_NAMES, Batch, TrainableModel
from .registry import available_factories
from .run import RunConfig, run_training
from .tokenizer import TokenizerObjective
from .trainer import Trainer, TrainResult

__all__ = [
    "PARAMETER_GROUP_NAMES",
    "STRATEGIES",
    "Batch",
    "CheckpointError",
    "ConfigError",
    "DistributedConfig",
    "DistributedContext",
    "FrameEncoder",
    "LoraSettings",
    "MetricsLogger",
    "OptimizerConfig",
    "ReplayedBatches",
    "ResumableBatches",
    "RunConfig",
    "ScheduleConfig",
    "SeededBatchStream",
    "StageConfig",
    "TokenizerObjective",
    "TrainResult",
    "TrainableModel",
    "Trainer",
    "TrainingCheckpoint",
    "available_factories",
    "embodiment_from_dataset",
    "encode_dataset_frames",
    "export_policy",
    "init_distributed",
    "latest_checkpoint",
    "load_policy_weights",
    "load_stage_config",
    "policy_from_checkpoint",
    "read_checkpoint",
    "read_checkpoint_metadata",
    "read_metrics",
    "read_weights",
    "run_training",
    "save_checkpoint",
]
