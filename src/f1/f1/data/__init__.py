"""f1.data: LeRobot-format datasets (read v3.0 and v2.1, write v3.0), training windows, normalization,
weighted mixtures. Only pyarrow and PyAV are needed; LeRobot itself is not."""

from f1.data.features import FeatureSpec, standard_features
from f1.data.frame_codes import FrameCodes
from f1.data.metadata import DatasetMetadata, EpisodeInfo, VideoSegment, load_metadata
from f1.data.mixture import DatasetMixture, WeightedMixtureSampler, WeightedMixtureView
from f1.data.reader import LeRobotDataset
from f1.data.stats import aggregate_stats, compute_image_stats, compute_numeric_stats, write_stats_json
from f1.data.training_factory import build_training_dataset
from f1.data.video import VideoEncoding
from f1.data.windows import WindowConfig, WindowedDataset, clamp_offsets, pad_collate
from f1.data.writer import FileRotation, LeRobotDatasetWriter
from f1.errors import DatasetFormatError, UnsupportedVersionError

__all__ = [
    "DatasetFormatError",
    "DatasetMetadata",
    "DatasetMixture",
    "EpisodeInfo",
    "FeatureSpec",
    "FileRotation",
    "FrameCodes",
    "LeRobotDataset",
    "LeRobotDatasetWriter",
    "UnsupportedVersionError",
    "VideoEncoding",
    "VideoSegment",
    "WeightedMixtureSampler",
    "WeightedMixtureView",
    "WindowConfig",
    "WindowedDataset",
    "aggregate_stats",
    "build_training_dataset",
    "clamp_offsets",
    "compute_image_stats",
    "compute_numeric_stats",
    "load_metadata",
    "pad_collate",
    "standard_features",
    "write_stats_json",
]
