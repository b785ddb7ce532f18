"""`make train RESUME=1` after a SIGKILL: the run continues from its last complete checkpoint with the iteration
numbers and the sampler's images an uninterrupted run has (compared by images and iterations, not by weights:
CPU training is not bit-reproducible); how that checkpoint is found; RESUME=1 with no checkpoint."""
import os
import signal
import time

import pytest

from pipeline.checkpoints import latest_checkpoint
from pipeline.train import load_config
from tests.pipeline.train_runs import (CHECKPOINT_EVERY, ITERS, PER_PROCESS_BATCH, make_train, model_dir, records,
                                       sampler_order, trained, write_config)


@pytest.mark.timeout(180)
def test_resume_after_sigkill_continues_the_same_run(mini_data, mini_prepared, tmp_path):
    config = write_config(tmp_path / "configs")
    work_dir = model_dir(tmp_path / "w")
    run = make_train("train", config, tmp_path / "w", mini_data, mini_prepared, popen=True)
    deadline = time.monotonic() + 120
    # killed once it trained past its first checkpoint
    while not (latest_checkpoint(work_dir) and max(trained(work_dir), default=0) > CHECKPOINT_EVERY):
        assert run.poll() is None, run.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    before = records(work_dir)
    resumed_from = latest_checkpoint(work_dir)
    start = int(resumed_from.stem.split("_")[1])
    assert start in range(CHECKPOINT_EVERY, ITERS, CHECKPOINT_EVERY) and before[-1]["iter"] < ITERS

    resume = make_train("train", config, tmp_path / "w", mini_data, mini_prepared, "RESUME=1")
    assert resume.returncode == 0, resume.stdout[-3000:] + resume.stderr[-3000:]
    assert f"resumed epoch: 0, iter: {start}" in resume.stdout
    after = records(work_dir)[len(before):]
    # the resumed run starts after its checkpoint and trains to the end, every iteration once
    assert [r["iter"] for r in after] == list(range(start + 1, ITERS + 1))
    # the images an uninterrupted run draws: the ones trained before the kill and after it
    order = sampler_order(config, mini_prepared, mini_data)
    expected = {s: order[(s - 1) * PER_PROCESS_BATCH:s * PER_PROCESS_BATCH] for s in range(1, ITERS + 1)}
    assert {r["iter"]: r["images"] for r in before} == {s: expected[s] for s in range(1, before[-1]["iter"] + 1)}
    assert {r["iter"]: r["images"] for r in after} == {s: expected[s] for s in range(start + 1, ITERS + 1)}
    assert (work_dir / "last_checkpoint").read_text().strip() == str(work_dir / f"iter_{ITERS}.pth")


def test_latest_checkpoint_is_a_complete_file(tmp_path):
    assert latest_checkpoint(tmp_path) is None  # not a work dir
    for name in ("iter_2.pth", "iter_10.pth", ".iter_12.pth.partial"):
        (tmp_path / name).write_bytes(b"x")
    marker = tmp_path / "last_checkpoint"
    marker.write_text(str(tmp_path / "iter_2.pth"))
    assert latest_checkpoint(tmp_path) == tmp_path / "iter_2.pth"  # the one last_checkpoint names
    for text in ("", str(tmp_path / "iter_12.pth")):  # cut short by a kill, or naming a removed file
        marker.write_text(text)
        assert latest_checkpoint(tmp_path) == tmp_path / "iter_10.pth"


def test_resume_without_checkpoint_starts_from_the_beginning(tmp_path, capsys):
    config = write_config(tmp_path / "configs")
    cfg = load_config(config, work_dir=tmp_path / "empty", resume=True)
    assert capsys.readouterr().err == (f"no checkpoint in {tmp_path / 'empty'} to resume from: training from the "
                                       "beginning\n")
    assert cfg.resume is False and cfg.load_from is None
