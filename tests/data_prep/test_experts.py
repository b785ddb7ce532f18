"""Expert models: class groups (``data_prep.experts``), fine-tuning from a global model (``pipeline.train
--init-from``) and an expert's prepare -> train -> infer -> fuse path on the mini dataset."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from contracts.classes import read_classes
from contracts.files import DataError
from contracts.predictions import COLUMNS, SCHEMA, read_predictions
from data_prep import experts
from data_prep.formats import read_expert_groups
from pipeline.init_from import class_dependent_keys, layer_names, transferable
from pipeline.train import load_config, run
from submit.score import write_per_class
from tests.helpers import METADATA, REPO

CLASSES_500 = METADATA / "challenge-2019-classes-description-500.csv"
MINI = {"Pumpkin": "/m/05zsy", "Tomato": "/m/07j87", "Banana": "/m/09qck", "Carrot": "/m/0fj52s",
        "Tennis ball": "/m/05ctyq", "Football": "/m/01226z", "Lemon": "/m/09k_b", "Apple": "/m/014j1m",
        "Zucchini": "/m/027pcv"}
GROUP = ["/m/09qck", "/m/09k_b", "/m/014j1m"]  # Banana, Lemon, Apple, in mini class-file order
NO_VAL = {"val_cfg": None, "val_dataloader": None, "val_evaluator": None}


def mids(classes, members):
    return [classes.mids[c] for c in members]


# ---------------------------------------------------------------- groups


def fake_prepared(tmp_path, counts, expanded=()):
    """A prepared folder with the real 500-class file and ``counts[i]`` training boxes of class i (plus ancestor
    copies of the classes in ``expanded``, which must not count): the two columns data_prep.experts reads."""
    out = tmp_path / "prepared"
    (out / "train").mkdir(parents=True)
    (out / "classes.csv").write_bytes(CLASSES_500.read_bytes())
    labels = np.concatenate([np.repeat(np.arange(len(counts)), counts), np.asarray(expanded, np.int64)])
    flags = np.concatenate([np.zeros(int(np.sum(counts)), np.int8), np.ones(len(expanded), np.int8)])
    pq.write_table(pa.table({"label": pa.array(labels.astype(np.int16)), "IsExpanded": pa.array(flags)}),
                   out / "train" / "boxes.parquet")
    return out


def frequency_order(counts):
    """(count, class) of the classes with boxes, fewest first, ties in class order."""
    return [i for _, i in sorted((n, i) for i, n in enumerate(counts.tolist()) if n)]


def test_groups_from_mini_training_frequencies(mini_prepared):
    """The counts are prepare's own (summary.json); the groups follow the frequency order. The mini counts are
    data_prep.mini's, so the expectations are derived from them here; test_buckets_on_the_500_challenge_classes
    has fixed numbers."""
    classes, counts = experts.train_box_counts(mini_prepared)
    summary = json.loads((mini_prepared / "summary.json").read_text())["splits"]["train"]["boxes_per_class"]
    assert dict(zip(classes.mids, counts.tolist())) == summary
    order = frequency_order(counts)
    assert experts.rarest(counts, 3) == sorted(order[:3])
    for balance in experts.BALANCES:
        got = experts.buckets(counts, 3, balance, classes)
        # contiguous runs of the frequency order, rarest first; the classes without boxes (parents) in none
        assert [i for b in got for i in sorted(b, key=order.index)] == order
        if balance == "classes":
            assert [len(b) for b in got] == [len(range(k, len(order), 3)) for k in range(3)]
        else:  # each bucket's boxes within one class of a third of them
            assert all(abs(counts[b].sum() - counts.sum() / 3) <= counts.max() for b in got)
    with pytest.raises(ValueError, match=f"need 1 <= K <= {len(order)}"):
        experts.rarest(counts, len(order) + 1)


def test_buckets_on_the_500_challenge_classes(tmp_path):
    # class i has i + 1 boxes (125,250 in all; an ancestor copy of class 0 does not count). With 2 buckets of equal
    # boxes, class i goes to the second when 2 (i + 1)^2 >= 250,500, that is i >= 353.
    classes, counts = experts.train_box_counts(fake_prepared(tmp_path, np.arange(1, 501), expanded=[0] * 1000))
    assert len(classes) == 500 and counts[0] == 1 and counts.sum() == 125_250
    low, high = experts.buckets(counts, 2, "boxes", classes)
    assert low == list(range(353)) and high == list(range(353, 500))
    assert counts[low].sum() == 62_481 and counts[high].sum() == 62_769
    assert [len(b) for b in experts.buckets(counts, 3, "classes", classes)] == [167, 167, 166]
    assert experts.rarest(counts, 4) == [0, 1, 2, 3]

    skewed = np.ones(500, np.int64)
    skewed[7] = 1000  # 2/3 of the 1,499 boxes: the 499 others share the first bucket, Glove the second
    classes, counts = experts.train_box_counts(fake_prepared(tmp_path / "skewed", skewed))
    with pytest.raises(ValueError, match=r"bucket 3 would be empty: class /m/0174n1 \(Glove\) holds 1,000 of the "
                                         r"1,499 training boxes"):
        experts.buckets(counts, 3, "boxes", classes)
    assert [len(b) for b in experts.buckets(counts, 2, "boxes", classes)] == [499, 1]


def test_worst_classes_from_a_per_class_csv(tmp_path):
    classes = read_classes(CLASSES_500)
    index = np.arange(500)
    # AP of class i: (37 i mod 500) / 500, no ground truth for every tenth class (AP empty, as submit.score writes)
    num_gt = np.where(index % 10 == 0, 0, 5)
    table = classes.frame().assign(AP=np.where(num_gt > 0, (37 * index % 500) / 500, np.nan), num_gt=num_gt,
                                   num_dets=3)
    write_per_class(table[["MID", "DisplayName", "AP", "num_gt", "num_dets"]], tmp_path / "per_class.csv")
    ap = experts.read_per_class_ap(tmp_path / "per_class.csv", classes)
    assert len(ap) == 450 and 0 not in ap  # class 0 (AP 0) has no ground truth: ignored
    # 37 * i = 1, 2, 3, 4, 5 (mod 500) for i = 473, 446, 419, 392, 365
    assert experts.worst(ap, 5) == [365, 392, 419, 446, 473]

    bad = tmp_path / "bad.csv"
    bad.write_text("MID,DisplayName,AP,num_gt,num_dets\n/m/0xyz,Nothing,0.5,3,4\n")
    with pytest.raises(DataError, match=r"bad.csv: line 2: MID '/m/0xyz' is not in .*500.csv"):
        experts.read_per_class_ap(bad, classes)


def test_cli_writes_groups_that_prepare_reads(mini_prepared, tmp_path, capsys):
    out = tmp_path / "groups.csv"
    classes, counts = experts.train_box_counts(mini_prepared)
    order = frequency_order(counts)
    per_class = tmp_path / "per_class.csv"
    ap = {MINI["Zucchini"]: 0.2, MINI["Lemon"]: 0.1, MINI["Apple"]: 0.3, MINI["Banana"]: 0.9}
    table = classes.frame().assign(AP=[ap.get(m, np.nan) for m in classes.mids],
                                   num_gt=[5 if m in ap else 0 for m in classes.mids], num_dets=1)
    write_per_class(table[["MID", "DisplayName", "AP", "num_gt", "num_dets"]], per_class)
    argv = ["--prepared", str(mini_prepared), "--out", str(out), "--rarest", "2", "--buckets", "2",
            "--balance", "classes", "--per-class", str(per_class), "--worst", "2"]
    assert experts.main(argv) == 0
    first = out.read_bytes()
    assert experts.main(argv) == 0 and out.read_bytes() == first
    groups = read_expert_groups(out, classes.mids)
    assert list(groups) == ["rarest2", "bucket1of2", "bucket2of2", "worst2"]
    assert groups["rarest2"] == mids(classes, sorted(order[:2]))
    half = (len(order) + 1) // 2  # floor(2 r / n) is 0 for the first ceil(n / 2) ranks
    assert groups["bucket1of2"] == mids(classes, sorted(order[:half]))
    assert groups["bucket2of2"] == mids(classes, sorted(order[half:]))
    assert groups["worst2"] == [MINI["Zucchini"], MINI["Lemon"]]  # class-file order
    boxes = counts[classes.index[MINI["Zucchini"]]] + counts[classes.index[MINI["Lemon"]]]
    assert f"worst2: 2 classes, {boxes:,} training boxes, mean AP 0.1500 over 2 classes" in capsys.readouterr().out

    assert experts.main(argv[:4] + ["--buckets", str(len(order) + 1)]) == 2
    assert capsys.readouterr().err == (f"error: --buckets {len(order) + 1}: need 1 <= N <= {len(order)} (the classes "
                                       "with training boxes)\n")
    assert out.read_bytes() == first  # nothing written on error


# ---------------------------------------------------------------- fine-tuning and the expert path


@pytest.fixture(scope="module")
def expert_data(mini_data, tmp_path_factory):
    """The mini dataset prepared with one 3-class expert group, ``fruit`` (Banana, Lemon, Apple)."""
    from data_prep.prepare import run_prepare

    root = tmp_path_factory.mktemp("experts")
    (root / "groups.csv").write_text("group,MID\n" + "".join(f"fruit,{m}\n" for m in reversed(GROUP)))
    run_prepare(mini_data, root / "prepared", expert_groups=root / "groups.csv", progress=False)
    return root


def train_mini(expert_data, mini_data, work_dir, prepared, config="mini_tsd", **kwargs):
    cfg = load_config(config, work_dir, {"train_cfg.max_iters": 2, "train_dataloader.batch_size": 2, **NO_VAL,
                                         **kwargs.pop("cfg_options", {})},
                      seed=0, prepared_dir=str(prepared), img_root=str(mini_data), **kwargs)
    return run(cfg)


@pytest.fixture(scope="module")
def global_model(expert_data, mini_data):
    """A global mini_tsd (13 classes) after 2 iterations: its work dir."""
    work_dir = expert_data / "models" / "mini_tsd"
    train_mini(expert_data, mini_data, work_dir, expert_data / "prepared")
    return work_dir


@HOOKS.register_module()
class RecordInitialWeights(Hook):
    """The model's weights when the training loop starts (after ``--init-from`` loaded its checkpoint)."""

    def before_train(self, runner):
        runner.initial_state = {k: v.detach().clone() for k, v in runner.model.state_dict().items()}


@pytest.fixture(scope="module")
def expert_model(expert_data, mini_data, global_model):
    """The ``fruit`` expert fine-tuned 2 iterations from the global model: (runner, work dir)."""
    work_dir = expert_data / "models" / "mini_tsd-fruit"
    runner = train_mini(expert_data, mini_data, work_dir, expert_data / "prepared" / "experts" / "fruit",
                        adapt_classes=True, init_from=str(global_model / "iter_2.pth"),
                        cfg_options={"custom_hooks": [dict(type="RecordInitialWeights")]})
    return runner, work_dir


def test_expert_starts_from_the_global_weights(global_model, expert_model):
    runner, work_dir = expert_model
    global_state = torch.load(global_model / "iter_2.pth", weights_only=False)["state_dict"]
    start = runner.initial_state
    # rows of the expert (3 classes) and of the global model (13): classes + background, 4 box deltas per class
    class_layers = {"roi_head.bbox_head.fc_cls": (4, 14), "roi_head.bbox_head.tsd_fc_cls": (4, 14),
                    "roi_head.bbox_head.fc_reg": (12, 52), "roi_head.bbox_head.tsd_fc_reg": (12, 52)}
    for layer, (rows, global_rows) in class_layers.items():
        assert start[f"{layer}.weight"].shape == (rows, 256) and start[f"{layer}.bias"].shape == (rows,)
        assert global_state[f"{layer}.weight"].shape == (global_rows, 256)
    others = [k for k in start if k.rsplit(".", 1)[0] not in class_layers]
    assert len(others) == len(start) - 8 and any(k.startswith("rpn_head.") for k in others)
    for key in others:  # backbone, FPN, RPN, the shared and TSD branches' fcs, the TSD offsets, BN statistics
        assert torch.equal(start[key], global_state[key]), key
    log = sorted(work_dir.glob("*/*.log"))[0].read_text()  # the first run's (a later test resumes it)
    assert ("re-initialised for the new class count: roi_head.bbox_head.fc_cls, roi_head.bbox_head.fc_reg, "
            "roi_head.bbox_head.tsd_fc_cls, roi_head.bbox_head.tsd_fc_reg") in log
    saved = torch.load(work_dir / "iter_2.pth", weights_only=False)
    assert list(saved["meta"]["dataset_meta"]["mids"]) == GROUP
    dumped = Config.fromfile(str(work_dir / "mini_tsd.py"))  # the run's config, as make infer reads it
    assert "pipeline.init_from" in dumped.custom_imports.imports and dumped.model.roi_head.bbox_head.num_classes == 3


def test_resumed_expert_keeps_its_own_weights(expert_data, mini_data, global_model, expert_model):
    work_dir = expert_model[1]
    runner = train_mini(expert_data, mini_data, work_dir, expert_data / "prepared" / "experts" / "fruit",
                        adapt_classes=True, init_from=str(global_model / "iter_2.pth"), resume=True,
                        cfg_options={"train_cfg.max_iters": 3, "custom_hooks": [dict(type="RecordInitialWeights")]})
    resumed_from = torch.load(work_dir / "iter_2.pth", weights_only=False)["state_dict"]
    assert runner.iter == 3
    for key, value in resumed_from.items():
        assert torch.equal(runner.initial_state[key], value), key
    assert "resumed at iteration 2: --init-from" in sorted(work_dir.glob("*/*.log"))[-1].read_text()


@pytest.mark.parametrize("config, layers", [
    ("cascade_r50_tsd", [f"roi_head.bbox_head.{k}.{fc}" for k in range(3) for fc in ("fc_cls", "tsd_fc_cls")]),
    ("mini_mask_tsd", ["roi_head.bbox_head.fc_cls", "roi_head.bbox_head.fc_reg", "roi_head.bbox_head.tsd_fc_cls",
                       "roi_head.bbox_head.tsd_fc_reg", "roi_head.mask_head.conv_logits"]),
])
def test_class_layers_of_each_architecture(config, layers):
    """Every cascade stage's classifiers (its regression is class-agnostic); the mask head's logits."""
    cfg = Config.fromfile(str(REPO / "configs" / f"{config}.py"))
    assert layer_names(class_dependent_keys(cfg)) == layers


def test_init_from_refuses_another_architecture(expert_data, mini_data, global_model, capsys):
    from pipeline.train import main

    args = ["mini_baseline", "--work-dir", str(expert_data / "models" / "refused"), "--adapt-classes",
            "--prepared-dir", str(expert_data / "prepared" / "experts" / "fruit"), "--img-root", str(mini_data),
            "--init-from", str(global_model / "iter_2.pth")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --init-from {global_model / 'iter_2.pth'}: the checkpoint holds 22 weight(s) the model "
                   "does not have, e.g. roi_head.bbox_head.offset_fc.weight (a checkpoint of another architecture?)"]
    assert not (expert_data / "models" / "refused").exists()

    state = {"a": torch.zeros(2), "b": torch.zeros(3), "cls": torch.zeros(5)}
    assert list(transferable(state, {"a": (2,), "b": (3,), "cls": (4,)}, ["cls"], "x")) == ["a", "b"]
    with pytest.raises(DataError, match=r"x: the checkpoint lacks 1 weight\(s\) of the model, e.g. c"):
        transferable(state, {"a": (2,), "b": (3,), "c": (1,), "cls": (4,)}, ["cls"], "x")
    with pytest.raises(DataError, match=r"x: b has shape \(3,\) in the checkpoint but \(4,\) in the model"):
        transferable(state, {"a": (2,), "b": (4,), "cls": (4,)}, ["cls"], "x")


def infer(work_dir, mini_data, out, classes=None):
    from pipeline.infer.__main__ import main

    ids = sorted(p.stem for p in (mini_data / "validation").glob("*.jpg"))[:6]
    image_list = work_dir / "ids.txt"
    image_list.write_text("\n".join(ids) + "\n")
    args = [str(work_dir / "mini_tsd.py"), str(work_dir / "iter_2.pth"), "--split", "validation", "--images",
            str(mini_data / "validation"), "--image-list", str(image_list), "--scales", "160",
            "--no-flip", "--out", str(out)] + (["--classes", str(classes)] if classes else [])
    assert main(args) == 0
    return ids


@pytest.fixture(scope="module")
def expert_predictions(expert_data, mini_data, global_model, expert_model):
    """Validation predictions (6 images, one scale) of the expert (with the group's classes.csv) and the global
    model, in the WORK/predictions layout."""
    work = expert_data
    group_classes = work / "prepared" / "experts" / "fruit" / "classes.csv"
    ids = infer(expert_model[1], mini_data, work / "predictions" / "mini_tsd-fruit" / "validation", group_classes)
    infer(global_model, mini_data, work / "predictions" / "mini_tsd" / "validation")
    return ids


def test_expert_predicts_only_its_group(expert_data, expert_predictions):
    path = expert_data / "predictions" / "mini_tsd-fruit" / "validation" / "merged" / "shard-000-of-001.parquet"
    assert pq.read_schema(path).equals(SCHEMA)
    frame = read_predictions(path)
    assert list(frame.columns) == COLUMNS and len(frame) > 0
    assert set(frame["LabelName"].astype(str)) <= set(GROUP)
    assert set(frame["ImageID"].astype(str)) <= set(expert_predictions)


def fuse(work, name, inputs):
    from ensemble.__main__ import main

    recipe = work / f"{name}.yaml"
    recipe.write_text(yaml.safe_dump({"inputs": inputs, "method": "wbf", "params": {"iou_thr": 0.55}}))
    assert main(["--recipe", str(recipe), "--split", "validation", "--work", str(work), "--jobs", "1"]) == 0
    frame = read_predictions(work / "ensemble" / name / "validation" / "predictions.parquet")
    return frame.assign(LabelName=frame["LabelName"].astype(str), ImageID=frame["ImageID"].astype(str))


def test_expert_fuses_with_the_global_model(expert_data, expert_predictions):
    """With ``classes:``, the expert's boxes join the fusion of its group's classes only: the other classes come
    out as the global model alone gives them."""
    both = fuse(expert_data, "with_expert", [
        {"path": "{work}/predictions/mini_tsd/{split}/merged"},
        {"path": "{work}/predictions/mini_tsd-fruit/{split}/merged",
         "classes": "{prepared}/experts/fruit/classes.csv"}])
    alone = fuse(expert_data, "global_alone", ["{work}/predictions/mini_tsd/{split}/merged"])
    in_group = both["LabelName"].isin(GROUP)
    assert in_group.any() and (~in_group).any()
    key = ["ImageID", "LabelName", "Score", "XMin", "YMin", "XMax", "YMax"]
    rest = alone[~alone["LabelName"].isin(GROUP)]
    assert both[~in_group].sort_values(key).reset_index(drop=True).equals(rest.sort_values(key).reset_index(drop=True))
    group_alone = alone[alone["LabelName"].isin(GROUP)].sort_values(key).reset_index(drop=True)
    assert not both[in_group].sort_values(key).reset_index(drop=True).equals(group_alone)
