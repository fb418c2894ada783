"""Kill ``carve run --tiny`` inside the train, finetune and compress steps, run it again.

Train and finetune resume each model from its ``last.pt``: a finished model is not trained again, an
interrupted one goes on from its last finished epoch. Compress does not resume inside itself: it
starts again from its beginning. Finished steps are skipped. (docs/run.md says the same.)
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from carve.train.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[2]
STEPS = "zoo,search,train,finetune,compress"


def carve_run(out: Path, config: Path, kill: tuple[str, str, int] | None = None) -> subprocess.CompletedProcess:
    args = ["run", "--tiny", "--config", str(config), "--out", str(out), "--steps", STEPS]
    if kill is None:
        cmd = [sys.executable, "-m", "carve.cli", *args]
    else:
        target, match, n = kill
        cmd = [sys.executable, "-m", "tests.run.kill_after", target, match, str(n), "--", *args]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def killed(proc: subprocess.CompletedProcess) -> bool:
    return proc.returncode == -signal.SIGKILL


@pytest.mark.slow  # four partial runs of the tiny pipeline: about 86 s of CPU time
def test_killed_train_finetune_and_compress_steps_resume(tmp_path):
    config = tmp_path / "two-epochs.yaml"
    config.write_text("train: {epochs: 2}\n")  # so that a model can be killed between its epochs
    out = tmp_path / "run"
    done = lambda step: (out / step / "done.json").is_file()  # noqa: E731

    # 1. killed inside train, once the found model's first epoch is checkpointed
    first = carve_run(out, config, kill=("carve.train.loop:save", "train/found", 1))
    assert killed(first), first.stderr[-3000:]
    assert done("zoo") and done("search") and not done("train")
    found_ckpt = load_checkpoint(out / "train" / "found" / "last.pt")
    assert found_ckpt["epoch"] == 1 and len(found_ckpt["history"]) == 1
    assert not (out / "train" / "hand_designed").exists()

    # 2. again: train resumes the found model at epoch 2; killed inside finetune once the found
    # model's detector has finished (its last checkpoint written), before the hand-designed one
    second = carve_run(out, config, kill=("carve.finetune.detection:save", "finetune/found", 1))
    assert killed(second), second.stderr[-3000:]
    for step in ("zoo", "search"):
        assert f"{step}: already done, skipped" in second.stderr
    assert done("train") and not done("finetune")
    histories = json.loads((out / "train" / "histories.json").read_text())
    found_history = next(h for name, h in histories.items() if name.startswith("found"))
    assert len(found_history) == 2 and found_history[0] == found_ckpt["history"][0]  # epoch 1 kept, not redone
    assert all(len(h) == 2 for h in histories.values())
    detector = out / "finetune" / "found" / "last.pt"
    detector_bytes, detector_mtime = detector.read_bytes(), detector.stat().st_mtime_ns
    assert not (out / "finetune" / "hand_designed" / "last.pt").exists()
    train_marker = (out / "train" / "done.json").read_bytes()

    # 3. again: finetune keeps the finished detector and trains the other; killed inside compress
    # once the pruned model is written
    third = carve_run(out, config, kill=("carve.compress.step_prune:save_weights", "pruned", 1))
    assert killed(third), third.stderr[-3000:]
    assert "train: already done, skipped" in third.stderr
    assert done("finetune") and not done("compress")
    assert detector.read_bytes() == detector_bytes and detector.stat().st_mtime_ns == detector_mtime
    pruned = out / "compress" / "pruned.safetensors"
    pruned_mtime = pruned.stat().st_mtime_ns
    finetune_marker = (out / "finetune" / "done.json").read_bytes()

    # 4. again: compress starts from its beginning and finishes; nothing finished before is touched
    last = carve_run(out, config)
    assert last.returncode == 0, last.stderr[-3000:]
    for step in ("zoo", "search", "train", "finetune"):
        assert f"{step}: already done, skipped" in last.stderr
    assert done("compress") and pruned.stat().st_mtime_ns > pruned_mtime  # redone, not reused
    assert (out / "train" / "done.json").read_bytes() == train_marker
    assert (out / "finetune" / "done.json").read_bytes() == finetune_marker
    assert detector.read_bytes() == detector_bytes


def _workers(pid: int) -> list[int]:
    """The multiprocessing worker processes (spawned) among ``pid``'s children."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline")
            if cmdline.exists() and b"spawn_main" in cmdline.read_bytes():
                found.append(int(child))
    return found


def _alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" not in status.read_text()


@pytest.mark.slow  # a tiny run killed in its finetune step, then run again: about 60 s
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads worker processes from /proc (Linux)")
def test_a_run_killed_while_finetunes_run_side_by_side_leaves_no_worker_and_resumes(tmp_path):
    config = tmp_path / "side-by-side.yaml"
    config.write_text("jobs: 2\nfinetune: {max_steps: 40}\n")  # long enough to be killed while the workers train
    out = tmp_path / "run"
    args = [sys.executable, "-m", "carve.cli", "run", "--tiny", "--config", str(config), "--out", str(out),
            "--steps", STEPS]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    workers: list[int] = []
    deadline = time.monotonic() + 600
    while len(workers) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
        workers = _workers(proc.pid)
    assert len(workers) == 2, proc.stderr.read()[-3000:] if proc.poll() is not None else "no workers seen"
    time.sleep(3)  # the workers are finetuning
    proc.kill()
    proc.wait()
    time.sleep(3)
    assert not [w for w in workers if _alive(w)]  # they died with the run: nothing left writing
    assert not (out / "finetune" / "done.json").exists()

    again = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "train: already done, skipped" in again.stderr and "side by side" in again.stderr
    summary = json.loads((out / "finetune" / "done.json").read_text())["summary"]
    assert summary["seeds"] == [0, 1] and set(summary["models"]) == {"found", "hand_designed"}
