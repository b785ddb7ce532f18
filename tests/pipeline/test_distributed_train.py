"""`make train GPUS=2`: torchrun, two CPU processes (gloo), the same code path as NCCL on GPUs, against one process
with the same seed: the images drawn, iteration by iteration, the iterations and checkpoints, the state-dict keys
and shapes, the learning rate at the effective batch, and validation on both ranks giving the mAP one process gives
on the same checkpoint. Bad process counts stop before anything starts."""

import pytest
import torch

from pipeline import distributed
from pipeline.checkpoints import load_checkpoint
from pipeline.train import build_runner, load_config
from pipeline.datasets import OpenImagesClassAwareSampler
from tests.pipeline.train_runs import (CHECKPOINT_EVERY, ITERS, PER_PROCESS_BATCH, make_train, model_dir, records,
                                       sampler_order, train_dataset, trained, write_config)

VAL_IMAGES = 12


@pytest.mark.timeout(240)
def test_two_processes_train_like_one(mini_data, mini_prepared, tmp_path):
    config = write_config(tmp_path / "configs", validate=True)
    two = make_train("train", config, tmp_path / "two", mini_data, mini_prepared, "GPUS=2",
                     f"CFG_OPTIONS=val_dataloader.dataset.indices={VAL_IMAGES}")
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    work_dir = model_dir(tmp_path / "two")

    # the class-aware sampler: one process's draw sequence (same seed), rank r taking positions r, r + 2, ...:
    # disjoint draws, together the one-process draws of each iteration at the effective batch
    order = sampler_order(config, mini_prepared, mini_data)
    batch = 2 * PER_PROCESS_BATCH
    for rank in (0, 1):
        assert trained(work_dir, rank) == {s: order[(s - 1) * batch + rank:s * batch:2] for s in range(1, ITERS + 1)}

    # checkpoints: written once, by rank 0, at the iterations of a one-process run, complete
    steps = range(CHECKPOINT_EVERY, ITERS + 1, CHECKPOINT_EVERY)
    assert sorted(p.name for p in work_dir.glob("*.pth")) == sorted(f"iter_{s}.pth" for s in steps)
    assert (work_dir / "last_checkpoint").read_text().strip() == str(work_dir / f"iter_{ITERS}.pth")
    assert not list(work_dir.glob(".*.partial"))
    checkpoint = load_checkpoint(work_dir / f"iter_{ITERS}.pth")
    assert checkpoint["meta"]["iter"] == ITERS
    # one log, by rank 0
    assert len(list(work_dir.rglob("*.log"))) == 1 and len(list(work_dir.rglob("scalars.json"))) == 1

    # auto_scale_lr: 0.04 for 8 images, scaled to the effective batch of 2 x 2, and said in the log
    assert "batch 4 (2 processes x 2 images); lr [0.02] (scaled by auto_scale_lr from base batch 8)" in two.stdout
    assert {group["initial_lr"] for group in checkpoint["optimizer"]["param_groups"]} == {0.02}

    # one process on the same checkpoint: the model's keys and shapes (no DDP `module.` prefix), and the mAP
    # validation on both ranks reported, each rank scoring half the images
    val = [[r["val"] for r in records(work_dir, rank) if "val" in r] for rank in (0, 1)]
    assert len(val[0]) == len(val[1]) == 1 and val[0] == val[1]
    cfg = load_config(config, work_dir=tmp_path / "one", prepared_dir=str(mini_prepared), img_root=str(mini_data),
                      cfg_options={"val_dataloader.dataset.indices": VAL_IMAGES, "custom_hooks": []})
    cfg.load_from = str(work_dir / f"iter_{ITERS}.pth")
    runner = build_runner(cfg)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        metrics = runner.val()
    finally:
        torch.set_num_threads(threads)
    assert metrics["openimages/mAP"] == pytest.approx(val[0][0]["openimages/mAP"], abs=1e-12)
    one_process = runner.model.state_dict()
    assert list(checkpoint["state_dict"]) == list(one_process)
    assert all(checkpoint["state_dict"][k].shape == v.shape for k, v in one_process.items())


def test_gpus_must_be_a_positive_count(mini_data, mini_prepared, tmp_path):
    config = write_config(tmp_path / "configs")
    for value in ("0", "-2", "two", ""):
        for target in ("train", "train-slurm"):
            run = make_train(target, config, tmp_path / "w", mini_data, mini_prepared, f"GPUS={value}")
            assert run.returncode == 2, run.stdout + run.stderr
            assert run.stderr.splitlines()[0] == (f"error: GPUS={value}: the number of training processes must be "
                                                  "a positive integer (1, 2, 8, ...)")
    assert not (tmp_path / "w").exists()


def test_more_processes_than_devices_stop_before_any_group(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    for name, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "8"}.items():
        monkeypatch.setenv(name, value)
    message = "8 processes on this node need 8 CUDA devices, but 2 are visible"
    with pytest.raises(ValueError, match=f"^{message} "):
        distributed.init_process_group("pytorch")
    assert not torch.distributed.is_initialized()
    assert distributed.main(["8"]) == 2  # the check `make train GPUS=8` runs before torchrun
    assert capsys.readouterr().err.startswith(f"error: {message} ")
    assert distributed.main(["2"]) == 0


def test_ranks_draw_what_one_process_draws_whatever_the_length(mini_data, mini_prepared, tmp_path, monkeypatch):
    """An epoch of 7 draws on one process, or of 4 per rank on two (padded to 8): the same first 7."""
    dataset = train_dataset(write_config(tmp_path / "configs"), mini_prepared, mini_data)

    def draws(rank, world_size, num_samples):
        monkeypatch.setattr("pipeline.datasets.samplers.get_dist_info", lambda: (rank, world_size))
        return list(OpenImagesClassAwareSampler(dataset, seed=3, num_samples=num_samples))

    single, ranks = draws(0, 1, 7), [draws(r, 2, 4) for r in (0, 1)]
    assert [ranks[k % 2][k // 2] for k in range(7)] == single
