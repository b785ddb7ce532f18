"""Training throughput of two processes (torchrun, gloo on CPU) against one, on the mini dataset, in one run.

Both runs train mini_tsd for ``--iters`` iterations at ``--batch`` images per process, one thread per process
(``OMP_NUM_THREADS=1``), without validation; throughput is processes x batch / the median iteration time of the
iterations after ``--warmup`` (mmengine's logged ``time``: data loading, forward, backward, gradient all-reduce,
step). On a machine with fewer free cores than processes the two-process row measures contention, not scaling.

Usage: python bench/train_scaling.py [--iters 20] [--warmup 5] [--batch 4]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from data_prep.mini import write_mini_dataset  # noqa: E402
from data_prep.prepare import run_prepare  # noqa: E402


def train_run(processes: int, work: Path, data: Path, prepared: Path, iters: int, batch: int) -> list[float]:
    """Per-iteration times (seconds) of one training run in ``processes`` processes."""
    python = [sys.executable, "-m"]
    launch = python + ["pipeline.train"] if processes == 1 else python + [
        "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}", "-m", "pipeline.train",
        "--launcher", "pytorch"]
    out = work / f"{processes}-processes"
    command = [*launch, "mini_tsd", "--work-dir", str(out), "--prepared-dir", str(prepared), "--img-root", str(data),
               "--seed", "0", "--cfg-options", f"train_cfg.max_iters={iters}", f"train_dataloader.batch_size={batch}",
               "default_hooks.logger.interval=1", "default_hooks.checkpoint.interval=100000",
               "val_dataloader=None", "val_cfg=None", "val_evaluator=None"]
    subprocess.run(command, cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS="1"), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (scalars,) = out.glob("*/vis_data/scalars.json")
    return [json.loads(line)["time"] for line in scalars.read_text().splitlines() if '"time"' in line]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5, help="first iterations left out of the median")
    parser.add_argument("--batch", type=int, default=4, help="images per process and iteration")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = write_mini_dataset(tmp / "data", seed=0)
        prepared = tmp / "prepared"
        run_prepare(data, prepared)
        rows = []
        for processes in (1, 2):
            times = train_run(processes, tmp, data, prepared, args.iters, args.batch)[args.warmup:]
            step = statistics.median(times)
            rows.append((processes, step, processes * args.batch / step))
    print(f"mini_tsd training, {args.batch} images per process, median of iterations {args.warmup + 1}-{args.iters}, "
          f"{os.cpu_count()} CPUs")
    print("| processes | s / iteration | images / s | vs 1 process |\n|---|---|---|---|")
    for processes, step, speed in rows:
        print(f"| {processes} | {step:.3f} | {speed:.2f} | {speed / rows[0][2]:.2f}x |")


if __name__ == "__main__":
    main()
