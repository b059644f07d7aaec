"""Episode seeds per data split, disjoint by construction.

Training demonstrations, validation and held-out evaluation draw their ``reset(seed=...)`` seeds from
separate integer ranges, so an evaluation scene is never a training scene.
"""

from __future__ import annotations

SEED_SPLITS: dict[str, range] = {
    "train": range(0, 1_000_000),
    "val": range(1_000_000, 1_100_000),
    "test": range(2_000_000, 2_100_000),
}


def seed_range(split: str) -> range:
    """The seeds of ``split`` (``"train"``, ``"val"`` or ``"test"``)."""
    if split not in SEED_SPLITS:
        raise ValueError(f"split: expected one of {list(SEED_SPLITS)}, received {split!r}")
    return SEED_SPLITS[split]


def split_of_seed(seed: int) -> str:
    """The split a seed belongs to; ``ValueError`` for a seed outside every split."""
    for split, seeds in SEED_SPLITS.items():
        if seed in seeds:
            return split
    raise ValueError(f"seed: expected a seed inside one of {dict(SEED_SPLITS)}, received {seed!r}")
