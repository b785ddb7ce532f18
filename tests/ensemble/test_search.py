"""python -m ensemble.search on candidates made from the mini dataset's validation ground truth, where the right
answer is known: two good candidates with complementary misses, and pure noise that must be left out."""
import re
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from contracts.classes import read_classes
from contracts.hierarchy import Hierarchy
from contracts.metric import expand_ground_truth, read_gt_boxes, read_gt_labels
from ensemble.__main__ import main as ensemble_main
from ensemble.recipe import load_recipe, parse_recipe
from ensemble.search import Candidate, Evaluator, main
from ensemble.wbf import weighted_boxes_fusion
from submit.score import main as score_main

VAL_BOXES = "challenge-2019-validation-detection-bbox.csv"
VAL_LABELS = "challenge-2019-validation-detection-human-imagelabels.csv"
GRID = ["--weights", "1,2", "--methods", "wbf,nms", "--iou-thrs", "0.5,0.6", "--max-per-image", "40"]


def write_predictions(path, frame):
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("ImageID", pa.string()), ("LabelName", pa.string())]
                       + [(c, pa.float32()) for c in ("Score", "XMin", "YMin", "XMax", "YMax")])
    pq.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False), path)


def detector(gt, rng, found, false_per_image=3):
    """The found ground-truth boxes, jittered, scored 0.4-1, and a few false positives per image on the image's
    classes, scored 0.1-0.6."""
    hit = gt[found]
    size = np.stack([hit.XMax - hit.XMin, hit.YMax - hit.YMin] * 2, axis=1)
    boxes = np.clip(hit[["XMin", "YMin", "XMax", "YMax"]].to_numpy() + rng.normal(0, 0.04, size.shape) * size, 0, 1)
    images = gt.groupby("ImageID")["LabelName"].agg(list)
    false_ids = np.repeat(images.index.to_numpy(), false_per_image)
    false_mids = [rng.choice(images[i]) for i in false_ids]
    corner = rng.uniform(0, 0.7, (len(false_ids), 2))
    false_boxes = np.concatenate([corner, corner + rng.uniform(0.05, 0.3, (len(false_ids), 2))], axis=1)
    return pd.DataFrame({
        "ImageID": np.r_[hit.ImageID.to_numpy(), false_ids], "LabelName": np.r_[hit.LabelName.to_numpy(), false_mids],
        "Score": np.r_[rng.uniform(0.4, 1, len(hit)), rng.uniform(0.1, 0.6, len(false_ids))],
        "XMin": np.r_[boxes[:, 0], false_boxes[:, 0]], "YMin": np.r_[boxes[:, 1], false_boxes[:, 1]],
        "XMax": np.r_[boxes[:, 2], false_boxes[:, 2]], "YMax": np.r_[boxes[:, 3], false_boxes[:, 3]]})


def noise(gt, rng, per_image=15):
    ids = np.repeat(gt.ImageID.unique(), per_image)
    corner = rng.uniform(0, 0.7, (len(ids), 2))
    boxes = np.concatenate([corner, corner + rng.uniform(0.05, 0.3, (len(ids), 2))], axis=1)
    return pd.DataFrame({"ImageID": ids, "LabelName": rng.choice(gt.LabelName.unique(), len(ids)),
                         "Score": rng.uniform(0, 1, len(ids)), "XMin": boxes[:, 0], "YMin": boxes[:, 1],
                         "XMax": boxes[:, 2], "YMax": boxes[:, 3]})


@pytest.fixture(scope="module")
def case(mini_data, mini_prepared, tmp_path_factory):
    """Candidates in WORK/predictions/{a,b,noise,expert}/validation; the expert covers four classes."""
    work = tmp_path_factory.mktemp("search") / "work"
    gt = read_gt_boxes(mini_data / VAL_BOXES)
    rng = np.random.default_rng(0)
    u = rng.random(len(gt))
    expert_mids = sorted(gt.LabelName.unique())[:4]
    frames = {"a": detector(gt, rng, u < 0.7), "b": detector(gt, rng, u > 0.3), "noise": noise(gt, rng),
              "expert": detector(gt, rng, gt.LabelName.isin(expert_mids).to_numpy(), false_per_image=0)}
    for name, frame in frames.items():
        write_predictions(work / "predictions" / name / "validation" / "merged" / "shard-000-of-001.parquet", frame)
    (work / "experts").mkdir()
    (work / "experts" / "four.csv").write_text("".join(f"{m},class {m}\n" for m in expert_mids))
    common = ["--boxes", str(mini_data / VAL_BOXES), "--labels", str(mini_data / VAL_LABELS),
              "--hierarchy", str(mini_prepared / "hierarchy.json"), "--classes", str(mini_prepared / "classes.csv"),
              "--work", str(work), "--prepared", str(mini_prepared), "--quiet", *GRID]
    return {"work": work, "common": common, "data": mini_data, "prepared": mini_prepared}


def search(case, capsys, out, *args):
    assert main([*args, "--out", str(out), *case["common"]]) == 0
    printed = capsys.readouterr().out
    return printed, float(re.search(r"^mAP: (\S+)$", printed, re.M).group(1))


def ensemble_map(case, capsys, recipe):
    """`python -m ensemble` on the recipe, then `python -m submit.score` on what it wrote."""
    assert ensemble_main(["--recipe", str(recipe), "--split", "validation", "--work", str(case["work"]),
                          "--prepared", str(case["prepared"]), "--jobs", "1"]) == 0
    fused = case["work"] / "ensemble" / recipe.stem / "validation" / "predictions.parquet"
    capsys.readouterr()
    assert score_main(["--submission", str(fused), "--boxes", str(case["data"] / VAL_BOXES),
                       "--labels", str(case["data"] / VAL_LABELS),
                       "--hierarchy", str(case["prepared"] / "hierarchy.json"),
                       "--classes", str(case["prepared"] / "classes.csv"), "--quiet"]) == 0
    return float(capsys.readouterr().out.strip().splitlines()[-1].split()[1])


def test_search_picks_the_complementary_pair_and_leaves_noise_out(case, capsys, tmp_path):
    predictions = case["work"] / "predictions"
    inputs = [str(predictions / name / "validation" / "merged") for name in ("noise", "a", "b")]
    out = tmp_path / "found.yaml"
    printed, found = search(case, capsys, out, "--inputs", *inputs, "--jobs", "1")

    recipe = load_recipe(out)
    assert sorted(i.path for i in recipe.inputs) == ["{work}/predictions/a/{split}/merged",
                                                     "{work}/predictions/b/{split}/merged"]
    assert recipe.hierarchy == "{prepared}/hierarchy.json" and recipe.max_per_image == 40
    table = [line for line in printed.splitlines() if re.match(r"\| \d", line)]
    assert len(table) == 2 and "stopped:" in printed and "noise" in printed.split("stopped:")[1]
    single = float(table[0].split("|")[6])
    assert found > single + 0.05  # the second detector's recall pays
    assert ensemble_map(case, capsys, out) == found

    again = tmp_path / "again" / "found.yaml"
    printed_again, _ = search(case, capsys, again, "--inputs", *inputs, "--jobs", "2")
    assert again.read_bytes() == out.read_bytes()
    assert printed_again.replace(str(again), str(out)) == printed


def test_search_with_an_expert_writes_its_class_file(case, capsys, tmp_path):
    predictions = case["work"] / "predictions"
    candidates = tmp_path / "candidates.yaml"
    candidates.write_text(yaml.safe_dump([
        str(predictions / "noise" / "validation" / "merged"), str(predictions / "a" / "validation" / "merged"),
        {"path": "{work}/predictions/expert/{split}/merged", "classes": "{work}/experts/four.csv"}]))
    out = tmp_path / "expert.yaml"
    _, found = search(case, capsys, out, "--candidates", str(candidates), "--jobs", "1")
    recipe = load_recipe(out)
    assert [(i.path, i.classes) for i in sorted(recipe.inputs, key=lambda i: i.path)] == [
        ("{work}/predictions/a/{split}/merged", None),
        ("{work}/predictions/expert/{split}/merged", "{work}/experts/four.csv")]
    assert ensemble_map(case, capsys, out) == found


def test_search_errors_name_the_input(case, capsys, tmp_path):
    args = ["--out", str(tmp_path / "x.yaml"), *case["common"]]
    assert main(["--inputs", str(tmp_path / "missing"), *args]) == 2
    assert "no Parquet files at" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump([{"path": "x", "weight": 2}]))
    assert main(["--candidates", str(bad), *args]) == 2
    assert "bad.yaml: entry 0 must be" in capsys.readouterr().err
    assert main(["--inputs", "x", "--conf-type", "median", *args]) == 2
    assert "--methods wbf" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["--inputs", "x", "--weights", "1,a", *args])
    assert exit_info.value.code == 2
    assert not (tmp_path / "x.yaml").exists()


def test_a_trial_scores_the_same_after_other_trials(case, tmp_path):
    """The Evaluator keeps what does not change between trials (the predictions, each block's ground truth): a
    trial scored after others, through ``scores`` or ``score``, equals the same trial in a fresh Evaluator."""
    predictions, prepared = case["work"] / "predictions", case["prepared"]
    candidates = [Candidate(str(predictions / "a" / "validation" / "merged")),
                  Candidate(str(predictions / "expert" / "validation" / "merged"),
                            str(case["work"] / "experts" / "four.csv")),
                  Candidate(str(predictions / "b" / "validation" / "merged"))]
    hierarchy = Hierarchy.from_json(prepared / "hierarchy.json")
    gt = expand_ground_truth(read_gt_boxes(case["data"] / VAL_BOXES), read_gt_labels(case["data"] / VAL_LABELS),
                             hierarchy, list(read_classes(prepared / "classes.csv").mids))

    def trial(members, weights, method, params):
        inputs = [{"path": candidates[m].path, "weight": w, **({"classes": candidates[m].classes}
                                                              if candidates[m].classes else {})}
                  for m, w in zip(members, weights)]
        raw = {"inputs": inputs, "method": method, "params": params, "hierarchy": str(prepared / "hierarchy.json"),
               "max_per_image": 40}
        return parse_recipe(raw, "t", "t"), members

    last = trial([0, 1], [1, 2], "wbf", {"iou_thr": 0.55})
    trials = [trial([0, 1], [1, 1], "wbf", {"iou_thr": 0.55}), trial([0, 2], [1, 1], "nms", {"iou_thr": 0.5}),
              trial([1], [1], "wbf", {"iou_thr": 0.6}), last]
    with Evaluator(candidates, gt, hierarchy, str(prepared / "hierarchy.json"), tmp_path, jobs=1,
                   block_images=3) as evaluator:
        in_a_search = list(evaluator.scores(trials))
        after = evaluator.score(*last)
    with Evaluator(candidates, gt, hierarchy, str(prepared / "hierarchy.json"), tmp_path, jobs=1,
                   block_images=3) as fresh:
        alone = fresh.score(*last)
    assert in_a_search[-1] == after == alone and len(set(in_a_search)) > 1


def test_scoring_threads_set_box_warnings_aside_and_restore_the_filters(case, tmp_path):
    """Boxes past the image edge make WBF warn, as ensemble-boxes does; the Evaluator's threads score without a
    warning and leave the warnings filters as they found them."""
    predictions, prepared = case["work"] / "predictions", case["prepared"]
    dirty = pq.read_table(predictions / "a" / "validation" / "merged").to_pandas()
    dirty["XMax"] = (dirty["XMax"] + 0.3).astype(np.float32)  # many boxes now end past x = 1
    write_predictions(tmp_path / "dirty" / "shard-000-of-001.parquet", dirty)
    hierarchy = Hierarchy.from_json(prepared / "hierarchy.json")
    gt = expand_ground_truth(read_gt_boxes(case["data"] / VAL_BOXES), read_gt_labels(case["data"] / VAL_LABELS),
                             hierarchy, list(read_classes(prepared / "classes.csv").mids))
    candidates = [Candidate(str(tmp_path / "dirty")), Candidate(str(predictions / "b" / "validation" / "merged"))]
    raw = {"inputs": [c.path for c in candidates], "method": "wbf", "params": {"iou_thr": 0.55},
           "hierarchy": str(prepared / "hierarchy.json")}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        filters = list(warnings.filters)
        with Evaluator(candidates, gt, hierarchy, str(prepared / "hierarchy.json"), tmp_path, jobs=2,
                       block_images=2) as evaluator:
            value = evaluator.score(parse_recipe(raw, "t", "t"), [0, 1])
        assert warnings.filters == filters
    assert not [w for w in caught if issubclass(w.category, UserWarning)] and value > 0
    with pytest.warns(UserWarning, match="X2 > 1"):  # the same boxes, fused directly
        weighted_boxes_fusion([dirty[["XMin", "YMin", "XMax", "YMax"]].to_numpy()[:50]],
                              [dirty["Score"].to_numpy()[:50]], [np.zeros(50)])
