"""Shared settings for the flowmatch tests."""

from __future__ import annotations

import torch

# Tiny tensors on 2 shared cores: a single intra-op thread avoids OpenMP barrier waits when the other core
# is busy, which made small models many times slower.
torch.set_num_threads(1)
