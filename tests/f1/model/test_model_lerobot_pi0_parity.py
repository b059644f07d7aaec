"""A LeRobot pi0 file imports as it is (``f1 convert``, ``F1Policy.load``) and computes what LeRobot does.

How the fixtures in ``fixtures/lerobot_pi0/`` were made (outside this repository, in a scratch venv; no
LeRobot code is in the repository):

- Python 3.11, ``torch==2.14.1``, ``lerobot==0.4.4`` installed with ``--no-deps`` (its torch pin is older;
  2.14.1 works), ``transformers==4.53.2`` with the five files of openpi's
  ``src/openpi/models_pytorch/transformers_replace/`` (openpi commit 15a9616a) copied over
  ``site-packages/transformers/models/`` (LeRobot's
  ``check_whether_transformers_replace_is_installed_correctly`` passes), and LeRobot's runtime
  dependencies (draccus 0.10.0, datasets 4.8.5, accelerate 1.15.0, huggingface-hub 0.35.3, diffusers
  0.35.2, ...).
- A tiny random ``PI0Policy`` from LeRobot's own ``modeling_pi0``: ``get_gemma_config`` monkeypatched (in the
  generating script, LeRobot's files untouched) to the shapes language model width 64 / MLP 128, action
  expert width 32 / MLP 64, both 2 layers, 8 query heads, 1 KV head, head dim 16; PaliGemma's config wrapped
  to a 512-row vocabulary and a 2-layer SigLIP of width 32 (2 heads, MLP 64, patch 14) at 56 px, projector
  32 -> 64; 2 cameras (``observation.images.top``, ``.wrist``), state and action 32, chunk 10, 10 steps,
  ``tokenizer_max_length`` 16, fp32. ``torch.manual_seed(0)``, then ``PI0Policy(config)``; the tensors that
  LeRobot's init leaves constant (all biases of SigLIP and the projector at 0, every norm weight at 1, the
  embedding's pad row at 0) were replaced by seeded noise (generator 4321) so that a dropped bias or a
  swapped norm cannot pass; then ``PI0Policy.save_pretrained`` wrote ``config.json`` and
  ``model.safetensors`` exactly as committed (the tied language embedding stored only as
  ``paligemma.lm_head.weight``, the layout of the hub's ``lerobot/pi0`` files).
- ``io.safetensors``: inputs drawn from ``torch.Generator().manual_seed(1234)`` (two 56 px images in [0, 1],
  16 token ids with sample 0 right-padded after 9, a 32-dim state, noise ``(2, 10, 32)``) and LeRobot's
  outputs: ``PI0Pytorch.sample_actions(images, img_masks, lang_tokens, lang_masks, state, noise=noise)``
  (``actions``), with the projector output (``image_embeddings.*``), the prefix embeddings, the prefix
  keys/values of each layer from its ``DynamicCache`` (``(B, 1, 48, 16)``, keys after RoPE), and per Euler
  step the time, ``x_t`` and the velocity (recorded by wrapping ``embed_image``, ``embed_prefix``,
  ``PaliGemmaWithExpertModel.forward`` and ``denoise_step`` from outside); and
  ``torch.manual_seed(s); PI0Policy.predict_action_chunk(batch)`` for s = 0 and 7 (``seeded_actions.s``).
  Versions and the calls made are in the file's metadata.

LeRobot's pi0 samples ``x_t`` from ``t = 1`` (noise) to 0 with ``x += dt * u``, ``u = eps - a``: this
library's ``tau = 1 - t`` and ``v = -u`` (converted at the adapter's edge), so our velocity is minus theirs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from f1.cli import main
from f1.model import F1Policy
from f1.model.language import TokenizedText
from f1.model.trunk_runner import CachedRunner

FIXTURES = Path(__file__).parent / "fixtures" / "lerobot_pi0"
CAMERAS = ("top", "wrist")
STEPS = 10


@pytest.fixture(scope="module")
def io() -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURES / "io.safetensors"))


class FixtureTokens:
    """The fixture's token ids for the instructions ``"0"`` and ``"1"`` (LeRobot's tokenizer ran upstream)."""

    def __init__(self, ids: torch.Tensor, mask: torch.Tensor) -> None:
        self.ids, self.lengths = ids, mask.sum(dim=1)
        self.vocab_size = 512

    def __call__(self, texts: Sequence[str]) -> TokenizedText:
        rows = [int(text) for text in texts]
        return TokenizedText(self.ids[rows], self.lengths[rows])


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pi0") / "policy"
    # the SigLIP head count is the one shape the weights cannot say at this width (not a multiple of 72)
    assert (
        main(
            [
                "convert",
                str(FIXTURES / "model.safetensors"),
                str(out),
                "--from",
                "pi0",
                "--set",
                "vision.heads=2",
            ]
        )
        == 0
    )
    return out


@pytest.fixture(scope="module")
def policy(converted: Path, io: dict[str, torch.Tensor]) -> F1Policy:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield F1Policy.load(converted, tokenizer=FixtureTokens(io["lang_tokens"], io["lang_masks"])).eval()
    finally:
        torch.set_num_threads(threads)


def _observation(io: dict[str, torch.Tensor]) -> dict[str, Any]:
    observation: dict[str, Any] = {f"observation.images.{c}": io[f"image.{c}"] for c in CAMERAS}
    observation["observation.state"] = io["state"]
    observation["task"] = ["0", "1"]
    return observation


def _images(io: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.stack([io[f"image.{c}"] for c in CAMERAS], dim=1)


def test_the_converted_policy_has_the_checkpoints_shape_and_lerobots_settings(converted: Path) -> None:
    config = json.loads((converted / "config.json").read_text())
    assert config["mode"] == "no_gen"
    assert config["cameras"] == list(CAMERAS)
    assert (
        config["action"] | {"chunk_size": 10, "flow_steps": 10, "time_convention": "pi0"} == config["action"]
    )
    trunk = config["trunk"]
    assert (trunk["n_layers"], trunk["n_heads"], trunk["n_kv_heads"], trunk["head_dim"]) == (2, 8, 1, 16)
    assert (trunk["understanding_width"], trunk["action_width"]) == (64, 32)
    assert config["language"]["vocab_size"] == 512


def test_image_and_prefix_embeddings_match_lerobots(policy: F1Policy, io: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        images = policy.model.understanding.encode_images(_images(io))
        expected = torch.cat([io[f"image_embeddings.{c}"] for c in CAMERAS], dim=1)
        torch.testing.assert_close(images, expected, rtol=0, atol=1e-5)
        ids, lengths = policy.tokenizer(["0", "1"])
        prefix, valid = policy.model.understanding(_images(io), ids, lengths)
    torch.testing.assert_close(prefix, io["prefix_embeddings"], rtol=0, atol=1e-5)
    assert valid.tolist() == io["prefix_pad_masks"].sum(dim=1).tolist()


def _prefix_runner(policy: F1Policy, io: dict[str, torch.Tensor]) -> CachedRunner:
    ids, lengths = policy.tokenizer(["0", "1"])
    und, valid = policy.model.understanding(_images(io), ids, lengths)
    runner = CachedRunner(policy.model.trunk, policy.model.attention_spec())
    runner.append({"und": und}, {"und": valid})
    return runner


def test_prefix_keys_and_values_match_lerobots_cache_at_every_valid_slot(
    policy: F1Policy, io: dict[str, torch.Tensor]
) -> None:
    with torch.no_grad():
        cache = _prefix_runner(policy, io).cache
    valid = io["prefix_pad_masks"]  # padded slots hold whatever each implementation leaves there
    for layer in range(2):
        for ours, name in ((cache.keys[layer], "prefix_key"), (cache.values[layer], "prefix_value")):
            theirs = io[f"{name}.{layer}"]
            assert ours.shape == theirs.shape
            torch.testing.assert_close(
                ours.transpose(1, 2)[valid], theirs.transpose(1, 2)[valid], rtol=0, atol=1e-5
            )


def test_the_velocity_at_every_euler_step_matches_lerobots(
    policy: F1Policy, io: dict[str, torch.Tensor]
) -> None:
    adapter = policy.model.adapters["pi0"]
    with torch.no_grad():
        runner = _prefix_runner(policy, io)
        for step in range(STEPS):
            t = io[f"time.{step}"]
            tau = 1 - t.double()  # the adapter embeds 1 - tau: exactly LeRobot's float32 time
            tokens = adapter.encode(io["state"], io[f"x_t.{step}"], tau)
            velocity = adapter.decode(runner.downstream({"act": tokens})["act"][:, 1:])
            torch.testing.assert_close(
                velocity, -io[f"velocity.{step}"], rtol=0, atol=1e-5, msg=f"step {step}"
            )


def test_plan_samples_lerobots_time_grid_exactly(
    policy: F1Policy, io: dict[str, torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter = policy.model.adapters["pi0"]
    times: list[torch.Tensor] = []
    encode = adapter.encode

    def recording(state: torch.Tensor, noisy: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        times.append((1 - tau).float())
        return encode(state, noisy, tau)

    monkeypatch.setattr(adapter, "encode", recording)
    policy.plan(_observation(io), noise=io["noise"])
    assert [t.tolist() for t in times] == [io[f"time.{step}"].tolist() for step in range(STEPS)]


def test_plan_with_lerobots_noise_gives_lerobots_chunk(policy: F1Policy, io: dict[str, torch.Tensor]) -> None:
    plan = policy.plan(_observation(io), noise=io["noise"])
    torch.testing.assert_close(plan.actions, io["actions"], rtol=0, atol=1e-4)


@pytest.mark.parametrize("seed", [0, 7])
def test_plan_seed_reproduces_predict_action_chunk_under_manual_seed(
    policy: F1Policy, io: dict[str, torch.Tensor], seed: int
) -> None:
    # LeRobot draws the noise with torch.normal on the global generator after torch.manual_seed(seed)
    actions = policy.plan(_observation(io), seed=seed).actions
    torch.testing.assert_close(actions, io[f"seeded_actions.{seed}"], rtol=0, atol=1e-4)
