"""Where things live inside a LeRobot dataset root, for the two layouts we read (v3.0, v2.1).

All templates are the ones LeRobot writes into ``meta/info.json``; readers use the templates found in the
file, these constants are what our writer puts there.
"""

from __future__ import annotations

CODEBASE_VERSION_V30 = "v3.0"
CODEBASE_VERSION_V21 = "v2.1"
SUPPORTED_VERSIONS = (CODEBASE_VERSION_V30, CODEBASE_VERSION_V21)

# LeRobot 0.4.x defaults: at most 1000 files per chunk directory, files rotate at ~100 MB (data, episodes
# metadata) and ~200 MB (video).
DEFAULT_CHUNKS_SIZE = 1000
DEFAULT_DATA_FILE_SIZE_MB = 100
DEFAULT_VIDEO_FILE_SIZE_MB = 200

INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"

# v3.0
TASKS_PARQUET_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
CHUNK_FILE_PATTERN = "chunk-{chunk_index:03d}/file-{file_index:03d}"
EPISODES_PATH_V30 = EPISODES_DIR + "/" + CHUNK_FILE_PATTERN + ".parquet"
DATA_PATH_V30 = "data/" + CHUNK_FILE_PATTERN + ".parquet"
VIDEO_PATH_V30 = "videos/{video_key}/" + CHUNK_FILE_PATTERN + ".mp4"

# v2.1
EPISODES_JSONL_PATH = "meta/episodes.jsonl"
EPISODES_STATS_JSONL_PATH = "meta/episodes_stats.jsonl"
TASKS_JSONL_PATH = "meta/tasks.jsonl"
DATA_PATH_V21 = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
VIDEO_PATH_V21 = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"


def next_chunk_file(chunk_index: int, file_index: int, chunks_size: int) -> tuple[int, int]:
    """The (chunk, file) pair after ``(chunk_index, file_index)``: a chunk holds ``chunks_size`` files."""
    if file_index + 1 >= chunks_size:
        return chunk_index + 1, 0
    return chunk_index, file_index + 1
