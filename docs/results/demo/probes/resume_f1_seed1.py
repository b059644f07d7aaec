"""Finish seed 1's interrupted `f1 demo-pretrain` (timeout SIGTERM at F1 stage-II step 10578, with a
checkpoint): resume F1's stage II exactly from that checkpoint through step 12000 with the same stage
plan, then export the three policies with `export_pretrained` as pretrain_demo would.

Run once, on 2026-12-02, from a checkout of 2bd4513 with the first command's work directory in place:
`python docs/results/demo/probes/resume_f1_seed1.py` (paths below are that session's)."""

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from f1 import F1Policy
from f1.data import FrameCodes, LeRobotDataset
from f1.demo import DEMO_BUDGETS, export_pretrained
from f1.demo.budget import pretrain_schedule
from f1.demo.training import _windows
from f1.eval.report import machine_description
from f1.train import SeededBatchStream, Trainer, load_stage_config

torch.set_num_threads(1)
work = Path("/work/pt-work-seed1")
budget = DEMO_BUDGETS["full"]
gripper, codes_path = work / "data" / "gripper", work / "codes" / "gripper.safetensors"
stage = pretrain_schedule("f1", budget.pretrain_steps, budget, gripper, codes_path)[1]
assert stage.name == "II"
policy = F1Policy.load(work / "runs/f1/stage_I/policy")
dataset = LeRobotDataset(stage.dataset)
codes = FrameCodes.load(stage.codes)
out_dir = work / "runs/f1/stage_II"
config = load_stage_config(2, {**stage.plan.overrides(), "seed": 1, "name": "f1 stage 2"})
batches = SeededBatchStream(_windows(policy.model, dataset, codes), stage.plan.batch_size, seed=1)
trainer = Trainer(policy.model, batches, config, output_dir=out_dir, progress=False, tensorboard=False)
ckpt = sorted((out_dir / "checkpoints").iterdir())[-1]
print("resume from", trainer.resume(ckpt))
started = time.perf_counter()
trainer.fit()
policy.save(out_dir / "policy")
resumed_s = time.perf_counter() - started
info = json.loads((gripper / "meta/info.json").read_text())
seed0 = json.loads(Path("/work/main/pretrained/demo/manifest.json").read_text())["data"]["gripper"]
# The recording does not depend on the run seed (every episode is drawn from its own "train" seed,
# DART noise included: f1.demo.data), so seed 1 recorded the same demonstrations as seed 0 and its
# data details, expert success rate included, are seed 0's; the counts are checked against the files.
assert (seed0["episodes"], seed0["frames"]) == (info["total_episodes"], info["total_frames"])
modes = ("f1", "no_gen", "history_no_foresight")
stages = {"f1": ("I", "II"), "no_gen": ("II",), "history_no_foresight": ("II",)}
details = {
    "seed": 1,
    "data": {"gripper": {**seed0}},
    "wall_time_s": 4500 + resumed_s,
    "workers": 2,
    "commit": "2bd4513",
    "created": datetime.now(UTC).isoformat(timespec="seconds"),
    "machine": machine_description(),
    "resumed": (
        "f1 stage II resumed exactly from its step-10578 checkpoint"
        " after the 4,500 s timeout of the first command"
    ),
}
print(
    export_pretrained(
        "/work/pt-seed1/demo",
        budget,
        policies={m: work / "runs" / m / "stage_II" / "policy" for m in modes},
        stage_dirs={m: {s: work / "runs" / m / f"stage_{s}" for s in stages[m]} for m in modes},
        tokenizer_dir=work / "tokenizer",
        details=details,
    )
)
