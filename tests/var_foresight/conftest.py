"""Shared fixtures: the golden tokenizer (tiny preset, released key layout) and its reference outputs."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from var_foresight.checkpoint import load_vqvae
from var_foresight.config import tiny_vqvae_config
from var_foresight.vqvae import VQVAE

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def golden_state_dict() -> dict[str, torch.Tensor]:
    return {k: v.float() for k, v in load_file(str(FIXTURES / "vqvae_ch32_fp16.safetensors")).items()}


@pytest.fixture(scope="session")
def golden() -> dict[str, torch.Tensor]:
    # images are stored as float16 (their values are float16-representable); everything else as produced
    data = load_file(str(FIXTURES / "reference_outputs.safetensors"))
    return {k: v.float() if v.dtype == torch.float16 else v for k, v in data.items()}


@pytest.fixture
def golden_vqvae(golden_state_dict) -> VQVAE:
    return load_vqvae(golden_state_dict, tiny_vqvae_config())


@pytest.fixture(scope="session")
def shared_golden_vqvae(golden_state_dict) -> VQVAE:
    """One read-only instance for property tests (never trained or modified by a test)."""
    model = load_vqvae(golden_state_dict, tiny_vqvae_config())
    model.requires_grad_(False)
    return model


@pytest.fixture(autouse=True)
def one_intra_op_thread():
    """These tests use tiny tensors: on the shared 2-core machine (and under pytest -n 2) several intra-op
    threads per process oversubscribe the cores and make small ops 10-30x slower. Restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
