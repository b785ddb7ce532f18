"""All N shards at once on one machine (``--gpus N``): process k predicts shard k/N on device k (its
``CUDA_VISIBLE_DEVICES``), or on the CPU with its share of the cores when there is no CUDA. Each process logs to
``OUT/logs/shard-K-of-N.log``; one progress bar counts the images of all of them; a failed process is named with
its log at the end, and the shards the others finished stay (a rerun predicts only the missing ones)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pipeline.distributed import check_devices
from pipeline.infer.shards import shard_bounds, shard_name

PROGRESS = re.compile(rb"(\d+)/\d+ \[")  # a tqdm line: "... 12/40 [00:03<00:07, ...]"


def without_option(argv: Sequence[str], option: str) -> list[str]:
    """``argv`` without ``option VALUE`` / ``option=VALUE``."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            kept.append(arg)
    return kept


def device_environments(num_processes: int, cuda: bool) -> list[dict[str, str]]:
    """The environment of each process: one visible CUDA device each, or an equal share of the CPU threads."""
    if cuda:
        import torch

        check_devices(num_processes)
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        devices = visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]
        return [dict(os.environ, CUDA_VISIBLE_DEVICES=devices[k]) for k in range(num_processes)]
    threads = str(max(1, (os.cpu_count() or 1) // num_processes))
    return [dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", threads))
            for _ in range(num_processes)]


def _images_done(log: Path) -> int:
    """The image count of the last progress line a shard process wrote."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, log.stat().st_size - 4096))
            found = PROGRESS.findall(f.read())
    except OSError:
        return 0
    return int(found[-1]) if found else 0


def run_processes(shard_argv: Sequence[str], num_processes: int, out: Path, num_images: int, cuda: bool,
                  poll_s: float = 1.0) -> int:
    """Run ``python -m pipeline.infer SHARD_ARGV --shard k/N`` for every k at once; 0 when all shards finished."""
    from tqdm import tqdm

    environments = device_environments(num_processes, cuda)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    shards = [shard_name(k, num_processes) for k in range(num_processes)]
    running = {}
    for k, env in enumerate(environments):
        with open(logs / f"{shards[k]}.log", "wb") as log:
            running[k] = subprocess.Popen(
                [sys.executable, "-u", "-m", "pipeline.infer", *shard_argv, "--shard", f"{k}/{num_processes}"],
                env=env, stdout=log, stderr=subprocess.STDOUT)
    bar = tqdm(total=num_images, unit="img", desc=f"{num_processes} shard processes ({'cuda' if cuda else 'cpu'})")
    done, failed = {}, {}  # images done by the processes that ended, exit status of those that failed
    try:
        while running:
            time.sleep(poll_s)
            for k, process in list(running.items()):
                if process.poll() is None:
                    continue
                del running[k]
                if process.returncode == 0:
                    start, stop = shard_bounds(num_images, k, num_processes)
                    done[k] = stop - start
                else:
                    done[k] = _images_done(logs / f"{shards[k]}.log")
                    failed[k] = process.returncode
                    bar.write(f"{shards[k]} failed (exit status {process.returncode}): see {logs / shards[k]}.log")
            bar.update(sum(done.values()) + sum(_images_done(logs / f"{shards[k]}.log") for k in running) - bar.n)
    finally:
        for process in running.values():  # interrupted: stop the others too (their finished chunks are kept)
            process.terminate()
        bar.close()
    if failed:
        names = ", ".join(f"{shards[k]} (exit status {status}, log {logs / shards[k]}.log)"
                          for k, status in sorted(failed.items()))
        print(f"error: {len(failed)} of {num_processes} shards failed: {names}; rerunning predicts only the missing "
              "shards", file=sys.stderr)
        return 1
    print(f"complete: {num_processes} shards in {out}")
    return 0
