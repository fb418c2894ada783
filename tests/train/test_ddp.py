"""DDP with two gloo processes matches one process on the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from carve.train import TrainConfig, fit

from .conftest import TINY_SPEC

ROOT = Path(__file__).resolve().parents[2]


def test_two_gloo_processes_match_one_process(tiny_data, tmp_path):
    common = dict(model=TINY_SPEC, data=str(tiny_data), epochs=2, lr=0.01, base_batch_size=16, workers=0,
                  progress=False, tensorboard=False, aug="none", cutmix_alpha=0.0, label_smoothing=0.1,
                  train_per_class=24, sync_bn=True, deterministic=True, warmup_epochs=0.5)
    single = fit(TrainConfig(out_dir=str(tmp_path / "one"), batch_size=16, **common))

    cfg_path = tmp_path / "ddp.json"
    cfg_path.write_text(json.dumps(dict(out_dir=str(tmp_path / "two"), batch_size=8, **common)))
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(ROOT / "tests" / "train" / "ddp_worker.py"), str(cfg_path), str(tmp_path / "out.pt")],
                          env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = torch.load(tmp_path / "out.pt", weights_only=True)

    assert two["effective_batch_size"] == single.effective_batch_size == 16
    ref = single.model.state_dict()
    worst = max(((two["state"][k] - v).norm() / v.norm().clamp_min(1e-2)).item()
                for k, v in ref.items() if v.is_floating_point())
    # Identical to 1e-7 after one step; float reduction order differs (per-rank sums) and training
    # amplifies it: one process with its initial weights perturbed by 1e-7 drifts just as far
    # (0.04 relative on the stem BN bias after these 12 steps).
    assert worst < 0.1, worst
    for a, b in zip(single.history, two["history"]):
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-3
        assert abs(a["top1"] - b["top1"]) <= 2 * 100 / 64 + 1e-9  # at most two of 64 images flip
