"""pipeline.average: the mean of checkpoints against a hand mean, refusals naming the key, the last K of a work dir,
and an averaged mini_tsd checkpoint predicting through pipeline.infer."""
from __future__ import annotations

import pytest
import torch

from contracts.files import DataError
from contracts.predictions import read_predictions
from pipeline import average

MIDS = ("/m/09qck", "/m/09k_b")


def write_checkpoint(path, state, iteration=1, mids=MIDS):
    """An mmengine-like checkpoint with the parts averaging drops (optimizer, schedulers)."""
    torch.save({"meta": {"iter": iteration, "dataset_meta": {"classes": ("Banana", "Lemon"), "mids": mids}},
                "state_dict": state, "optimizer": {"state": {}, "param_groups": []}, "param_schedulers": []}, path)
    return path


def states():
    """Three states of one model: a float32 weight, a float16 buffer, an integer buffer."""
    g = torch.Generator().manual_seed(0)
    return [{"w": torch.randn(3, 4, generator=g) * 1e4 + 1e7, "h": torch.randn(5, generator=g).half(),
             "bn.num_batches_tracked": torch.tensor(10 * (k + 1))} for k in range(3)]


def test_average_is_the_float64_mean_cast_back(tmp_path):
    paths = [write_checkpoint(tmp_path / f"c{k}.pth", s, iteration=k + 1) for k, s in enumerate(states())]
    assert average.main([*map(str, paths), "--out", str(tmp_path / "avg.pth"), "--quiet"]) == 0
    out = torch.load(tmp_path / "avg.pth", weights_only=True)  # tensors and plain values only
    assert set(out) == {"meta", "state_dict"}
    s = states()
    for key in ("w", "h"):
        hand = ((s[0][key].double() + s[1][key].double() + s[2][key].double()) / 3).to(s[0][key].dtype)
        assert out["state_dict"][key].dtype == s[0][key].dtype
        assert torch.equal(out["state_dict"][key], hand), key
    # float32 accumulation would not give the same: 1e7-sized values keep only ~1 decimal in float32
    assert not torch.equal(out["state_dict"]["w"], (s[0]["w"] + s[1]["w"] + s[2]["w"]) / 3)
    assert out["state_dict"]["bn.num_batches_tracked"] == 30  # integer buffers: the last checkpoint's
    assert out["meta"]["iter"] == 3 and out["meta"]["dataset_meta"]["mids"] == MIDS
    assert out["meta"]["averaged_from"] == [str(p) for p in paths]


def test_checkpoints_of_other_models_are_refused(tmp_path, capsys):
    a = write_checkpoint(tmp_path / "a.pth", states()[0])
    other_keys = write_checkpoint(tmp_path / "b.pth", {**states()[1], "extra.weight": torch.zeros(2)})
    other_shape = write_checkpoint(tmp_path / "c.pth", {**states()[1], "w": torch.zeros(4, 3)})
    other_classes = write_checkpoint(tmp_path / "d.pth", states()[1], mids=("/m/09qck", "/m/014j1m"))
    missing = write_checkpoint(tmp_path / "e.pth", {k: v for k, v in states()[1].items() if k != "h"})
    with pytest.raises(DataError, match=r"b.pth: not a checkpoint of the same model as .*a.pth: it holds "
                                        r"extra.weight, which .*a.pth lacks"):
        average.average_checkpoints([a, other_keys], progress=False)
    with pytest.raises(DataError, match=r"e.pth: not a checkpoint of the same model as .*a.pth: it lacks h"):
        average.average_checkpoints([a, missing], progress=False)
    with pytest.raises(DataError, match=r"c.pth: w is \(4, 3\) torch.float32, but \(3, 4\) torch.float32 in"):
        average.average_checkpoints([a, other_shape], progress=False)
    with pytest.raises(DataError, match="d.pth: trained on other classes than"):
        average.average_checkpoints([a, other_classes], progress=False)

    out = tmp_path / "avg.pth"
    assert average.main([str(a), str(other_shape), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {other_shape}: w is (4, 3)") and not out.exists()
    assert average.main([str(a), "--out", str(out)]) == 2
    assert capsys.readouterr().err == "error: averaging needs at least 2 checkpoints, got 1\n"


def test_last_checkpoints_of_a_work_dir_by_iteration(tmp_path, capsys):
    for n in (8, 9, 10):
        write_checkpoint(tmp_path / f"iter_{n}.pth", states()[0], iteration=n)
    (tmp_path / "average_last2.pth").touch()  # an earlier average is not a training checkpoint
    assert average.last_checkpoints(tmp_path, 2) == [tmp_path / "iter_9.pth", tmp_path / "iter_10.pth"]
    with pytest.raises(DataError, match="3 checkpoint.* fewer than the 4 to average"):
        average.last_checkpoints(tmp_path, 4)
    assert average.main(["--work-dir", str(tmp_path), "--last", "3", "--quiet"]) == 0
    assert torch.load(tmp_path / "average_last3.pth", weights_only=True)["meta"]["iter"] == 10
    (tmp_path / "epoch_1.pth").touch()
    assert average.main(["--work-dir", str(tmp_path), "--last", "2"]) == 2
    assert "holds both iter_*.pth and epoch_*.pth" in capsys.readouterr().err


def test_averaged_mini_checkpoint_predicts(mini_prepared, mini_data, tmp_path):
    """Two checkpoints of a mini_tsd run, averaged into the work dir, load strictly in pipeline.infer (as
    ``make average`` then ``make infer CKPT=...``) and predict the MIDs saved in the meta."""
    from pipeline.infer.__main__ import main as infer
    from pipeline.train import train

    work_dir = tmp_path / "mini_tsd"
    train("mini_tsd", work_dir=work_dir, prepared_dir=str(mini_prepared), img_root=str(mini_data), seed=0,
          cfg_options={"train_cfg.max_iters": 2, "train_dataloader.batch_size": 2,
                       "default_hooks.checkpoint.interval": 1, "val_cfg": None, "val_dataloader": None,
                       "val_evaluator": None})
    assert average.main(["--work-dir", str(work_dir), "--last", "2", "--quiet"]) == 0
    ckpt = work_dir / "average_last2.pth"
    saved = [torch.load(work_dir / f"iter_{n}.pth", weights_only=False) for n in (1, 2)]
    averaged = torch.load(ckpt, weights_only=True)
    key = "roi_head.bbox_head.fc_cls.weight"
    assert torch.equal(averaged["state_dict"][key],
                       ((saved[0]["state_dict"][key].double() + saved[1]["state_dict"][key].double()) / 2).float())
    assert averaged["meta"]["dataset_meta"] == saved[1]["meta"]["dataset_meta"]

    ids = sorted(p.stem for p in (mini_data / "validation").glob("*.jpg"))[:2]
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    out = tmp_path / "predictions"
    assert infer([str(work_dir / "mini_tsd.py"), str(ckpt), "--split", "validation", "--images",
                  str(mini_data / "validation"), "--image-list", str(tmp_path / "ids.txt"), "--scales", "160",
                  "--no-flip", "--out", str(out)]) == 0
    frame = read_predictions(out / "merged")
    assert len(frame) and set(frame["LabelName"].astype(str)) <= set(saved[1]["meta"]["dataset_meta"]["mids"])
