"""The demo's policy configuration: the ``tiny`` preset adapted to the table tasks.

One configuration, three modes (``f1``, ``no_gen``, ``history_no_foresight``), so the controls differ from
F1 only by the switch the ablation names. Changes to the ``tiny`` preset, and why:

- one camera named ``top`` (the table view) at the environment's resolution;
- a smaller VQ-VAE (32 px, 8 x 8 latent, scales 1-2-4-8): the foresight and the history are encoded at
  every training step, and at 64 px the tokenizer's convolutions took a large share of the step time on
  a CPU (see ``docs/results/demo/NOTES.md``);
- history of 2 frames 2 steps apart (t-2, t) and the foresight 2 steps ahead: enough to see the conveyor's
  speed and direction, which a single frame does not show;
- the history kept at the tokenizer's finest grid (8 x 8, the tiny preset pools it to 4 x 4): the generator
  then sees the current frame at token resolution, where the object is (it exists only in the finest scale);
- the complete foresight: the action expert reads the imagined frame of every scale, the finest included
  (``generation.complete_foresight``), trained with a quarter of the samples holding the model's own
  prediction (``sampled_foresight``), as inference feeds it;
- greedy foresight (the most likely token of each scale, ``top_k=1``): a deterministic imagined frame, which
  training's own predictions match;
- 4 flow-matching draws per sample sharing one prefix pass (``action.noise_draws``): a lower-variance flow
  objective at 13% more cost per step;
- two embodiments, ``gripper`` and ``arm``, normalized (min-max to [-1, 1]) with their datasets' statistics;
- the action expert predicts the clean chunk (``action.prediction = "data"``, x-prediction): still flow
  matching, sampled by the same ODE, with a target free of noise (measured in ``docs/results/demo/NOTES.md``);
- the text vocabulary trimmed to the ids of the task family's instructions (``language.kept_ids``, about
  20 rows instead of CLIP's 49,408): the embedding was 12.6 of the policy's 13 MB and a share of every step;
- chunks of 8 actions of which 2 are executed before replanning (the tiny preset executes 4): objects on
  the conveyor move every step, and executing 4 of 8 halved the success of a chunked behaviour clone on
  the dynamic variant (measured in ``docs/results/demo/NOTES.md``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from f1.data import WindowConfig
from f1.demo.data import CAMERA
from f1.envs import all_instructions
from f1.keys import camera_key
from f1.model import Embodiment, F1Config, FeatureStats, GenerationConfig, preset
from f1.model.config import MODES
from f1.model.language import trim_vocabulary
from var_foresight import VQVAEConfig

__all__ = ["demo_policy_config", "demo_window_config", "embodiment_from_stats"]


def embodiment_from_stats(name: str, stats: Mapping[str, Mapping[str, Any]], control_hz: float) -> Embodiment:
    """An embodiment normalized min-max with a dataset's ``observation.state`` and ``action`` statistics."""
    for key in ("observation.state", "action"):
        if key not in stats:
            raise ValueError(f"stats: expected the feature {key!r}, received {sorted(stats)}")

    def feature(key: str) -> FeatureStats:
        entry = stats[key]
        return FeatureStats(
            min=tuple(float(v) for v in entry["min"]), max=tuple(float(v) for v in entry["max"])
        )

    state, action = feature("observation.state"), feature("action")
    assert state.min is not None
    assert action.min is not None
    return Embodiment(
        name=name,
        state_dim=len(state.min),
        action_dim=len(action.min),
        control_hz=control_hz,
        normalization="min_max",
        state_stats=state,
        action_stats=action,
    )


def demo_policy_config(mode: str, resolution: int, embodiments: tuple[Embodiment, ...]) -> F1Config:
    """The demo policy in ``mode`` for ``resolution``-pixel table images and the given embodiments."""
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {list(MODES)}, received {mode!r}")
    base = preset("tiny")
    generation = GenerationConfig(
        vqvae=VQVAEConfig(
            ch=16,
            ch_mult=(1, 2, 2),
            num_res_blocks=1,
            z_channels=16,
            vocab_size=256,
            norm_groups=8,
            scales=(1, 2, 4, 8),
        ),
        history_frames=2,
        history_stride=2,
        history_grid=(8, 8),
        history_heads=4,
        inference_scales=4,
        top_k=1,
        top_p=None,
        complete_foresight=True,
        sampled_foresight=0.25,
    )
    vision = replace(base.vision, image_size=resolution)
    action = replace(base.action, n_action_steps=2, noise_draws=4, prediction="data")
    return base.replace(
        name=f"demo-{mode}",
        mode=mode,
        cameras=(CAMERA,),
        vision=vision,
        language=trim_vocabulary(base.language, all_instructions()),
        action=action,
        generation=generation,
        embodiments=embodiments,
    )


def demo_window_config(config: F1Config) -> WindowConfig:
    """Training windows that match ``config``: its history offsets, the future frame (mode ``f1`` only) and
    the action chunk."""
    return WindowConfig(
        history_offsets=config.history_offsets,
        future_offset=config.future_offset,
        action_horizon=config.action.chunk_size,
        foresight_camera=camera_key(CAMERA),
    )
