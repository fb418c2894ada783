"""Training step time on CPU, default layout against channels-last, for the main job's trainings.

    PYTHONPATH=. python benchmarks/channels_last_training.py [--rounds 8] [--steps 3] [--seed 0]

Classification: a training step (forward, backward, SGD) of each model at 64 px, batch 64, on 2
threads (the train step's and the compress step's KD finetune's setting). Detection: an SSDLite
training step at 320 px, batch 8, on 1 thread (the finetune step runs its finetunes one thread
each). Random images: the layout changes speed, not what is computed (tests/finetune/test_detect.py
checks the same losses). The two layouts alternate in rounds of ``--steps`` steps (A B, then B A);
per round the median step, and the ratio of medians per round; the table gives the median over
rounds. Prints a table, writes JSON and a PNG to ``--results``.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from carve.files import save_figure, write_json
from carve.finetune import build_detector
from carve.train.engine import memory_format
from carve.zoo import create_model

REPO = Path(__file__).resolve().parents[1]
CLASSIFY = ("carve_100", "mobilenet_v3_large_100")
DETECT = ("carve_100", "mobilenet_v3_large_100")


def sgd_step(model: torch.nn.Module, loss: Callable[[], torch.Tensor]) -> Callable[[], None]:
    """One training step of ``model`` (forward and loss, backward, SGD) as a call."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        opt.zero_grad()
        loss().backward()
        opt.step()
    return step


def classification_step(name: str, channels_last: bool) -> Callable[[], None]:
    layout = memory_format(channels_last)
    model = create_model(name, num_classes=202).train().to(memory_format=layout)
    images = torch.randn(64, 3, 64, 64).contiguous(memory_format=layout)
    labels = torch.randint(0, 202, (64,))
    return sgd_step(model, lambda: torch.nn.functional.cross_entropy(model(images), labels))


def detection_step(name: str, channels_last: bool) -> Callable[[], None]:
    model = build_detector("ssdlite", name, 2, 320).train().to(memory_format=memory_format(channels_last))
    images = [torch.rand(3, 320, 320) for _ in range(8)]
    targets = [dict(boxes=torch.tensor([[40.0, 60.0, 200.0, 260.0]]), labels=torch.tensor([1])) for _ in images]
    return sgd_step(model, lambda: sum(model(images, targets).values()))


def interleaved(steps: dict[bool, Callable[[], None]], rounds: int, per_round: int) -> dict:
    """Median step time of each layout per round, alternating which goes first."""
    for step in steps.values():  # warm-up: first calls allocate and pick kernels
        step(), step()
    medians: dict[bool, list[float]] = {False: [], True: []}
    for r in range(rounds):
        for layout in ((False, True) if r % 2 == 0 else (True, False)):
            times = []
            for _ in range(per_round):
                t = time.perf_counter()
                steps[layout]()
                times.append(time.perf_counter() - t)
            medians[layout].append(statistics.median(times))
    ratios = [a / b for a, b in zip(medians[False], medians[True])]
    return dict(default_ms=round(1e3 * statistics.median(medians[False]), 1),
                channels_last_ms=round(1e3 * statistics.median(medians[True]), 1),
                speedup=round(statistics.median(ratios), 3),
                speedup_range=[round(min(ratios), 3), round(max(ratios), 3)])


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    labels = [f"{r['task'].split(',')[0]}\n{r['model']}" for r in rows]
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], [r["default_ms"] for r in rows], width=0.4, label="default layout")
    ax.bar([i + 0.2 for i in x], [r["channels_last_ms"] for r in rows], width=0.4, label="channels-last")
    for i, r in enumerate(rows):
        ax.text(i + 0.2, r["channels_last_ms"], f"{r['speedup']:.2f}x", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(x), labels, fontsize=8)
    ax.set(ylabel="training step (ms, median)", title="CPU training step: default vs channels-last")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--steps", type=int, default=3, help="training steps per layout and round")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--results", default=str(REPO / "benchmarks" / "results"))
    args = p.parse_args(argv)
    command = "PYTHONPATH=. python benchmarks/channels_last_training.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    rows = []
    cases = [("classify 64 px, batch 64, 2 threads", m, classification_step, 2) for m in CLASSIFY]
    cases += [("ssdlite 320 px, batch 8, 1 thread", m, detection_step, 1) for m in DETECT]
    print(f"{'task':38s} {'model':24s} {'default ms':>10s} {'ch-last ms':>10s} {'speed-up':>9s}")
    for task, model, make, threads in cases:
        torch.set_num_threads(threads)
        torch.manual_seed(args.seed)
        row = dict(task=task, model=model, threads=threads,
                   **interleaved({cl: make(model, cl) for cl in (False, True)}, args.rounds, args.steps))
        rows.append(row)
        print(f"{task:38s} {model:24s} {row['default_ms']:10.1f} {row['channels_last_ms']:10.1f} "
              f"{row['speedup']:8.2f}x", flush=True)
    out = Path(args.results)
    write_json(out / "channels_last_training.json", dict(command=command, seed=args.seed, rounds=args.rounds,
                                                         steps=args.steps, torch=torch.__version__, rows=rows))
    plot(rows, out / "channels_last_training.png")
    print(f"wrote {out / 'channels_last_training.json'} and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
