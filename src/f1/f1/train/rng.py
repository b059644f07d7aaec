"""Capture and restore every random number generator a training step may draw from, as tensors only.

The states are stored as tensors and ints (no numpy objects, no pickled classes), so a checkpoint loads with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

RngState = dict[str, Any]


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, numpy's legacy global RNG and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the legacy global RNG is what user code draws from
    torch.manual_seed(seed)


def capture_rng_state() -> RngState:
    """The current states of torch (CPU, CUDA), numpy and Python ``random``."""
    version, mt_words, gauss_next = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)  # noqa: NPY002
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "kind": str(np_kind),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "python": {
            "version": int(version),
            "words": torch.tensor(mt_words, dtype=torch.int64),
            "gauss_next": gauss_next,
        },
    }


def restore_rng_state(state: RngState) -> None:
    """Set every generator from ``state`` (as returned by ``capture_rng_state``)."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np_state = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (
            np_state["kind"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["gauss"],
        )
    )
    py_state = state["python"]
    random.setstate(
        (py_state["version"], tuple(int(w) for w in py_state["words"].tolist()), py_state["gauss_next"])
    )
