"""A small policy that honestly implements ``TrainableModel``, its dataset, and run-file factories for tests.

It has every parameter group of F1 in miniature: a vision encoder, an understanding layer, a generation head
that predicts multi-scale tokens by teacher forcing (cross-entropy), a flow-matching action head, embodiment
state projection and a frozen token codebook ("tokenizer").
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

SCALE_TOKENS = (1, 2, 4)  # tokens per generation scale, coarse to fine
VOCAB = 8
OBS_DIM, STATE_DIM, ACTION_DIM, HIDDEN = 6, 3, 2, 16


#: Overrides that make any shipped stage a few fast steps on a small batch, in fp32.
FAST = {
    "steps": 6,
    "batch_size": 8,
    "log_interval": 1,
    "checkpoint_interval": 3,
    "schedule": {"warmup_steps": 2},
    "optimizer": {"lr": 1e-2, "group_lr": {"vision": 5e-3}},
    "precision": "fp32",
}


class TinyPolicy(nn.Module):
    """``forward`` returns {"flow", "generation"}: flow MSE and teacher-forced token cross-entropy."""

    def __init__(self, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.vision = nn.Linear(OBS_DIM, hidden)
        self.state_proj = nn.Linear(STATE_DIM, hidden)  # embodiment
        self.understanding = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.GELU())
        self.codebook = nn.Embedding(VOCAB, hidden)  # tokenizer: frozen in every stage
        self.scale_embedding = nn.Parameter(torch.zeros(len(SCALE_TOKENS), hidden))  # generation
        self.generation_head = nn.Linear(hidden, VOCAB * max(SCALE_TOKENS))
        self.action_in = nn.Linear(ACTION_DIM + 1, hidden)
        self.action_out = nn.Sequential(nn.GELU(), nn.Linear(hidden, ACTION_DIM))

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {
            "vision": list(self.vision.parameters()),
            "embodiment": list(self.state_proj.parameters()),
            "understanding": list(self.understanding.parameters()),
            "tokenizer": list(self.codebook.parameters()),
            "generation": [self.scale_embedding, *self.generation_head.parameters()],
            "action": [*self.action_in.parameters(), *self.action_out.parameters()],
        }

    def forward(self, batch: dict[str, Any], *, generation_scales: int | None) -> dict[str, torch.Tensor]:
        context = self.understanding(
            self.vision(batch["observation"]) + self.state_proj(batch["state"])
        )  # (B, H)
        # Generation: scale k is predicted from the context plus the mean embedding of the true tokens of
        # scales < k (teacher forcing); cross-entropy over the first `generation_scales` scales.
        scales = len(SCALE_TOKENS) if generation_scales is None else min(generation_scales, len(SCALE_TOKENS))
        tokens = batch["future_tokens"]  # (B, sum(SCALE_TOKENS)) int64
        ce_terms, start, prefix = [], 0, torch.zeros_like(context)
        for k in range(scales):
            n = SCALE_TOKENS[k]
            target = tokens[:, start : start + n]  # (B, n)
            logits = self.generation_head(context + prefix + self.scale_embedding[k])
            logits = logits.view(-1, max(SCALE_TOKENS), VOCAB)[:, :n]  # (B, n, V)
            ce_terms.append(F.cross_entropy(logits.reshape(-1, VOCAB), target.reshape(-1), reduction="none"))
            prefix = prefix + self.codebook(target).mean(dim=1)
            start += n
        generation = torch.cat(ce_terms).mean()
        # Flow matching: a_tau = (1 - tau) * eps + tau * a, velocity target a - eps. Noise and time come from
        # the batch when given (deterministic tests), else from the global torch RNG.
        actions = batch["actions"]  # (B, A)
        noise = batch["flow_noise"] if "flow_noise" in batch else torch.randn_like(actions)
        tau = (
            batch["flow_time"]
            if "flow_time" in batch
            else torch.rand(actions.shape[0], 1, device=actions.device)
        )
        noisy = (1 - tau) * noise + tau * actions
        velocity = self.action_out(context + self.action_in(torch.cat([noisy, tau], dim=-1)))
        flow = F.mse_loss(velocity, actions - noise)
        return {"flow": flow, "generation": generation}


class TinyEpisodes(Dataset):
    """``size`` samples, each a deterministic function of (seed, index): dicts of tensors."""

    def __init__(self, size: int = 64, seed: int = 0, with_flow_noise: bool = False) -> None:
        self.size = size
        self.seed = seed
        self.with_flow_noise = with_flow_noise

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.size:
            raise IndexError(index)
        g = torch.Generator().manual_seed(self.seed * 10_007 + index)
        observation = torch.randn(OBS_DIM, generator=g)
        sample = {
            "observation": observation,
            "state": torch.randn(STATE_DIM, generator=g),
            "actions": torch.tanh(observation[:ACTION_DIM]) + 0.1 * torch.randn(ACTION_DIM, generator=g),
            "future_tokens": torch.randint(0, VOCAB, (sum(SCALE_TOKENS),), generator=g),
        }
        if self.with_flow_noise:
            sample["flow_noise"] = torch.randn(ACTION_DIM, generator=g)
            sample["flow_time"] = torch.rand(1, generator=g)
        return sample


def build_tiny_policy(config: dict[str, Any]) -> TinyPolicy:
    """Run-file factory: ``model: {factory: "tiny", hidden: 16}``."""
    return TinyPolicy(hidden=int(config.get("hidden", HIDDEN)))


def build_tiny_dataset(config: dict[str, Any]) -> TinyEpisodes:
    """Run-file factory: ``data: {factory: "tiny", size: 64}``."""
    return TinyEpisodes(
        size=int(config.get("size", 64)),
        seed=int(config.get("seed", 0)),
        with_flow_noise=bool(config.get("with_flow_noise", False)),
    )


class WithFlowRandomness(Dataset):
    """An F1 training dataset whose samples carry their own flow noise and time (``flow.noise``,
    ``flow.time``), drawn from a generator seeded by the sample's index: the randomness of a sample is the
    same whichever process, batch or position it lands in.

    Only windows without padding are kept (every chunk step and the future frame real): the losses are
    means over valid entries, so equal counts per sample are what makes the mean of 2 processes' losses
    the loss of 1 process on the combined batch."""

    def __init__(
        self, dataset: Dataset, *, horizon: int, action_dim: int, draws: int = 1, seed: int = 0
    ) -> None:
        self.dataset, self.horizon, self.action_dim, self.seed = dataset, horizon, action_dim, seed
        self.draws = draws
        self.indices = [i for i in range(len(dataset)) if _unpadded(dataset[i])]  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Any]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        sample = dict(self.dataset[self.indices[index]])
        lead = () if self.draws == 1 else (self.draws,)
        sample["flow.noise"] = torch.randn(*lead, self.horizon, self.action_dim, generator=generator)
        sample["flow.time"] = torch.rand(lead, generator=generator) * 0.998 + 0.001
        return sample


def _unpadded(sample: dict[str, Any]) -> bool:
    pads = [sample[k] for k in ("action_is_pad", "future_image_is_pad", "history_is_pad") if k in sample]
    return not any(bool(torch.as_tensor(pad).any()) for pad in pads)


def build_seeded_flow_dataset(config: dict[str, Any], *, policy: Any) -> WithFlowRandomness:
    """Run-file factory: ``data: {factory: "lerobot_seeded_flow", root: ...}``: the built-in LeRobot
    dataset of an F1 policy, its samples carrying their flow noise and time."""
    from f1.train.factories import build_training_data

    horizon = policy.config.action.chunk_size
    action_dim = max(e.action_dim for e in policy.config.embodiments)
    draws = policy.config.action.noise_draws
    data = build_training_data(config, policy=policy)
    return WithFlowRandomness(data, horizon=horizon, action_dim=action_dim, draws=draws)


def build_f1_for_seeded_flow(config: dict[str, Any], *, data: dict[str, Any]) -> Any:
    """Run-file factory: ``model: {factory: "f1_seeded_flow", preset: tiny}``: the built-in F1 factory,
    which reads the embodiment from a ``lerobot_seeded_flow`` data section as from the plain LeRobot one."""
    from f1.train.factories import build_f1_model

    return build_f1_model(config, data={**data, "factory": "lerobot"})
