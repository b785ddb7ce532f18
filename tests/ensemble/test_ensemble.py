"""python -m ensemble on small Parquet inputs, checked against ensemble_boxes and the hierarchy file itself."""
import contextlib
import io
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from ensemble_boxes import nms as reference_nms
from ensemble_boxes import soft_nms as reference_soft_nms
from ensemble_boxes import weighted_boxes_fusion as reference_wbf

from ensemble.__main__ import main
from ensemble.suppression import adj_nms, soft_nms
from ensemble.recipe import expand_placeholders, insert_placeholders, load_recipe
from ensemble.runner import run_ensemble
from tests.helpers import REPO

HIERARCHY = REPO / "data_prep" / "metadata" / "challenge-2019-label500-hierarchy.json"
OYSTER, INVERTEBRATE, SHELLFISH, ANIMAL, SEAFOOD = "/m/0_cp5", "/m/03xxp", "/m/0fbdv", "/m/0jbk", "/m/06nwz"
TOMATO, TEDDY_BEAR, CAR, PERSON, CAT = "/m/07j87", "/m/0kmg4", "/m/0k4j", "/m/01g317", "/m/01yrx"
MIDS = sorted([OYSTER, TOMATO, TEDDY_BEAR, CAR, PERSON, CAT, ANIMAL])
WEIGHTS = (2.0, 1.0)
SCHEMA = pa.schema([("ImageID", pa.string()), ("LabelName", pa.string()), ("Score", pa.float32()),
                    ("XMin", pa.float32()), ("YMin", pa.float32()), ("XMax", pa.float32()), ("YMax", pa.float32())])


def ancestors_from_file(path):
    """Every class's strict ancestors, walking the JSON's Subcategory links (root excluded), as the spec says."""
    tree = json.loads(Path(path).read_text())
    parents = {}

    def walk(node, parent):
        for child in node.get("Subcategory", []):
            parents.setdefault(child["LabelName"], set()).update({parent} if parent else set())
            walk(child, child["LabelName"])

    walk(tree, None)

    def up(mid):
        return set().union(*({p} | up(p) for p in parents[mid])) if parents[mid] else set()

    return {mid: up(mid) for mid in parents}


def write_predictions(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(zip(*rows)) if rows else [[]] * 7
    pq.write_table(pa.Table.from_arrays([pa.array(c, t) for c, t in zip(columns, SCHEMA.types)], schema=SCHEMA),
                   path)


def random_predictions(rng, images, n_boxes):
    """Boxes around a few objects per image, as a detector gives them: (ImageID, MID, score, x1, y1, x2, y2)."""
    rows = []
    for image in images:
        objects = np.sort(rng.uniform(0, 1, (4, 2, 2)), axis=1).transpose(0, 2, 1).reshape(-1, 4)
        labels = rng.choice(MIDS, 4)
        for _ in range(n_boxes):
            k = rng.integers(0, 4)
            box = np.clip(objects[k] + rng.normal(0, 0.03, 4), 0, 1)
            rows.append((image, str(labels[k]), float(rng.uniform(0.01, 1)), *map(float, box)))
    return rows


@pytest.fixture
def case(tmp_path):
    """Two models on 12 images: model a as two shards in a folder, model b as files matched by a glob; image
    'hand' holds one Oyster box in both models (scores 0.9 and 0.6) and an Animal box in model a only."""
    rng = np.random.default_rng(0)
    work = tmp_path / "work"
    images = [f"{i:016x}" for i in rng.integers(0, 2 ** 63, 11)]
    hand_box = (0.25, 0.25, 0.75, 0.5)
    a = random_predictions(rng, images, 25) + [("hand", OYSTER, 0.9, *hand_box), ("hand", ANIMAL, 0.5, *hand_box)]
    b = random_predictions(rng, images[:8], 20) + [("hand", OYSTER, 0.6, *hand_box)]
    merged = work / "predictions" / "a" / "validation" / "merged"
    write_predictions(merged / "shard-000-of-002.parquet", a[: len(a) // 2])
    write_predictions(merged / "shard-001-of-002.parquet", a[len(a) // 2:])
    write_predictions(work / "predictions" / "b" / "validation" / "part-1.parquet", b[:100])
    write_predictions(work / "predictions" / "b" / "validation" / "part-2.parquet", b[100:])
    recipe = {"inputs": [{"path": "{work}/predictions/a/{split}/merged", "weight": WEIGHTS[0]},
                         {"path": "{work}/predictions/b/{split}/part-*.parquet", "weight": WEIGHTS[1]}],
              "method": "wbf", "params": {"iou_thr": 0.55, "skip_box_thr": 0.0, "conf_type": "avg"},
              "hierarchy": str(HIERARCHY)}
    return {"work": work, "a": a, "b": b, "recipe": recipe, "tmp": tmp_path, "hand_box": hand_box}


def write_recipe(case, name, **changes):
    recipe = {**case["recipe"], **changes}
    recipe = {k: v for k, v in recipe.items() if v is not None}
    path = case["tmp"] / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def run(case, name="demo", jobs=1, extra=(), **changes):
    recipe = write_recipe(case, name, **changes)
    assert main(["--recipe", str(recipe), "--split", "validation", "--work", str(case["work"]),
                 "--jobs", str(jobs), *extra]) == 0
    return case["work"] / "ensemble" / name / "validation" / "predictions.parquet"


def reference_wbf_recipe(boxes, scores, labels):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # swapped corners
        return reference_wbf(boxes, scores, labels, weights=list(WEIGHTS), iou_thr=0.55, skip_box_thr=0.0,
                             conf_type="avg")


def expected_rows(case, fuse=reference_wbf_recipe, expand=True, score_thr=0.0, cap=None):
    """The reference: ``fuse`` (ensemble-boxes) per image, rows by score (stable), one copy per ancestor (sorted
    MIDs), threshold, cap."""
    ancestors = ancestors_from_file(HIERARCHY)
    rows = []
    for image in sorted({r[0] for r in case["a"] + case["b"]}):
        per_model = [[r for r in case[m] if r[0] == image] for m in ("a", "b")]
        boxes, scores, labels = fuse([np.array([r[3:] for r in p], np.float32).reshape(-1, 4) for p in per_model],
                                     [np.array([r[2] for r in p], np.float32) for p in per_model],
                                     [np.array([MIDS.index(r[1]) for r in p]) for p in per_model])
        order = np.argsort(-scores, kind="stable")
        image_rows = []
        for box, score, label in zip(boxes[order], scores[order], labels[order]):
            if np.float32(score) < score_thr:
                continue
            mid = MIDS[int(label)]
            for out_mid in [mid] + (sorted(ancestors[mid]) if expand else []):
                image_rows.append((image, out_mid, np.float32(score), *np.float32(box)))
        rows += image_rows[:cap]
    return rows


def read_rows(path):
    table = pq.read_table(path)
    assert table.schema.equals(SCHEMA)
    return list(zip(*[table.column(c).to_pylist() for c in SCHEMA.names]))


def assert_rows_equal(got, want):
    assert [r[:2] for r in got] == [r[:2] for r in want]
    np.testing.assert_array_equal(np.array([r[2:] for r in got], np.float32).reshape(-1, 5),
                                  np.array([r[2:] for r in want], np.float32).reshape(-1, 5))


def test_fused_and_expanded_like_the_reference(case):
    assert_rows_equal(read_rows(run(case)), expected_rows(case))


def test_multi_parent_class_gets_one_copy_per_ancestor(case):
    hand = [r for r in read_rows(run(case)) if r[0] == "hand"]
    # Oyster's parents are Invertebrate and Shellfish; Animal is above both and gets one copy. The fused score:
    # (0.9 * 2 + 0.6 * 1) / 2 boxes * min(2 models, 2 boxes) / (2 + 1) = 0.8
    oyster = [r for r in hand if r[2] == pytest.approx(0.8, abs=1e-6)]
    assert sorted(r[1] for r in oyster) == sorted([OYSTER, INVERTEBRATE, SHELLFISH, ANIMAL, SEAFOOD])
    np.testing.assert_allclose([r[3:] for r in oyster], [case["hand_box"]] * 5, atol=1e-6)
    # model a's own Animal box at the same place is kept beside Oyster's Animal copy: 0.5 * 2 * min(2, 1) / 3
    animal = sorted(r[2] for r in hand if r[1] == ANIMAL)
    assert animal == pytest.approx([1 / 3, 0.8], abs=1e-6)
    assert len(hand) == 6


def test_no_hierarchy_means_no_expansion(case):
    assert_rows_equal(read_rows(run(case, hierarchy=None)), expected_rows(case, expand=False))


def test_score_threshold_and_cap(case):
    got = read_rows(run(case, score_thr=0.2, max_per_image=7))
    assert_rows_equal(got, expected_rows(case, score_thr=0.2, cap=7))
    assert min(r[2] for r in got) >= 0.2
    assert max(sum(r[0] == image for r in got) for image in {r[0] for r in got}) == 7


def test_output_is_deterministic_whatever_the_workers_and_chunks(case):
    first = run(case, "same").read_bytes()
    assert run(case, "same").read_bytes() == first
    assert run(case, "same", jobs=2, extra=["--chunk-images", "3"]).read_bytes() == first


def test_failed_run_leaves_previous_output_untouched(case, capsys):
    out = run(case, "atomic")
    before = out.read_bytes()
    bad = [("hand", CAT, float("nan"), 0.1, 0.1, 0.2, 0.2)]
    write_predictions(case["work"] / "predictions" / "b" / "validation" / "part-3.parquet", bad)
    recipe = write_recipe(case, "atomic")
    assert main(["--recipe", str(recipe), "--split", "validation", "--work", str(case["work"])]) == 2
    err = capsys.readouterr().err
    assert "part-3.parquet" in err and "non-finite" in err
    assert out.read_bytes() == before
    assert [p.name for p in out.parent.iterdir()] == ["predictions.parquet"]


def test_input_errors_name_the_file(case):
    work = case["work"]
    (work / "predictions" / "a" / "validation" / "merged" / "shard-001-of-002.parquet").rename(
        case["tmp"] / "moved.parquet")
    with pytest.raises(FileNotFoundError, match="incomplete or mixed shard set"):
        run_ensemble(load_recipe(write_recipe(case, "shards")), "validation", work)
    with pytest.raises(FileNotFoundError, match="no Parquet files"):
        run_ensemble(load_recipe(write_recipe(case, "shards")), "test", work)
    (case["tmp"] / "moved.parquet").rename(work / "predictions" / "a" / "validation" / "merged" /
                                            "shard-001-of-002.parquet")
    write_predictions(work / "predictions" / "b" / "validation" / "part-3.parquet",
                      [("x", "/m/not-a-class", 0.5, 0.1, 0.1, 0.2, 0.2)])
    with pytest.raises(ValueError, match=r"part-3\.parquet: classes not in the hierarchy"):
        run_ensemble(load_recipe(write_recipe(case, "mids")), "validation", work)
    pq.write_table(pa.table({"ImageID": ["x"], "Score": [0.5]}),
                   work / "predictions" / "b" / "validation" / "part-3.parquet")
    with pytest.raises(ValueError, match=r"part-3\.parquet: missing column"):
        run_ensemble(load_recipe(write_recipe(case, "columns")), "validation", work)


def test_recipe_errors_name_the_file_and_key(case):
    with pytest.raises(ValueError, match=r"bad\.yaml: unknown keys \['iou_thr'\]"):
        load_recipe(write_recipe(case, "bad", iou_thr=0.5))
    with pytest.raises(ValueError, match=r"bad\.yaml: bad params for wbf: conf_type"):
        load_recipe(write_recipe(case, "bad", params={"conf_type": "median"}))
    with pytest.raises(ValueError, match=r"bad\.yaml: unknown params \['sigma'\] for wbf"):
        load_recipe(write_recipe(case, "bad", params={"sigma": 0.5}))
    with pytest.raises(ValueError, match=r"bad\.yaml: 'method' must be one of"):
        load_recipe(write_recipe(case, "bad", method="vote"))
    inputs = [{**case["recipe"]["inputs"][0], "classes": 3}]
    with pytest.raises(ValueError, match=r"bad\.yaml: inputs\[0\]\.classes must be the path of a class file"):
        load_recipe(write_recipe(case, "bad", inputs=inputs))
    inputs = [{**case["recipe"]["inputs"][0], "classes": "{work}/missing.csv"}]
    with pytest.raises(ValueError, match=r"file not found: .*work/missing\.csv"):
        run_ensemble(load_recipe(write_recipe(case, "bad", inputs=inputs)), "validation", case["work"])


def test_nms_recipe_matches_reference(case):
    def fuse(boxes, scores, labels):
        with contextlib.redirect_stdout(io.StringIO()):
            return reference_nms(boxes, scores, labels, weights=list(WEIGHTS), iou_thr=0.5)

    got = read_rows(run(case, "nms", method="nms", params={"iou_thr": 0.5}, hierarchy=None))
    assert_rows_equal(got, expected_rows(case, fuse, expand=False))


def test_soft_nms_recipes_match_the_functions(case):
    """The recipe plumbing for the methods without an ensemble-boxes twin (tested in test_nms.py)."""
    for method, function, params in (("soft_nms", soft_nms, {"sigma": 0.3}), ("adj_nms", adj_nms, {"thresh": 0.1})):
        def fuse(boxes, scores, labels):
            return function(boxes, scores, labels, weights=list(WEIGHTS), **params)

        got = read_rows(run(case, method, method=method, params=params, hierarchy=None))
        assert_rows_equal(got, expected_rows(case, fuse, expand=False))


def test_bundled_recipes_and_cli_help():
    recipe = load_recipe(REPO / "configs" / "ensemble" / "mini.yaml")
    assert [i.path for i in recipe.inputs] == ["{work}/predictions/mini_tsd/{split}/merged",
                                            "{work}/predictions/mini_baseline/{split}/merged"]
    assert recipe.hierarchy == "{prepared}/hierarchy.json"
    challenge = REPO / "configs" / "ensemble" / "challenge.yaml"
    assert "mini" not in challenge.read_text() and "data/" not in challenge.read_text()
    recipe = load_recipe(challenge)
    assert [i.path for i in recipe.inputs] == [f"{{work}}/predictions/{m}/{{split}}/merged"
                                            for m in ("x101_tsd", "cascade_r50_tsd", "r152_tsd")]
    assert expand_placeholders(recipe.hierarchy, "work/oid", "test") == "work/oid/prepared/hierarchy.json"
    assert expand_placeholders(recipe.hierarchy, "w", "test", prepared="/p") == "/p/hierarchy.json"
    result = subprocess.run([sys.executable, "-m", "ensemble", "--help"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0 and "--recipe" in result.stdout and "--jobs" in result.stdout


COVERAGE = {"a": None, "b": [CAR, PERSON, CAT, OYSTER], "e": [OYSTER, TOMATO]}  # model -> classes it covers
COVERAGE_WEIGHTS = {"a": 2.0, "b": 1.0, "e": 3.0}


@pytest.fixture
def experts(tmp_path):
    """Three models on 10 images; b and e cover some classes only (class files), yet predict every class."""
    rng = np.random.default_rng(1)
    work = tmp_path / "work"
    images = [f"img{i:02d}" for i in range(10)]
    rows = {m: random_predictions(rng, images if m == "a" else images[:7], 30) for m in COVERAGE}
    inputs = []
    for m, mids in COVERAGE.items():
        write_predictions(work / "predictions" / m / "validation" / "p.parquet", rows[m])
        entry = {"path": f"{{work}}/predictions/{m}/{{split}}/p.parquet", "weight": COVERAGE_WEIGHTS[m]}
        if mids is not None:
            (work / "classes").mkdir(exist_ok=True)
            (work / "classes" / f"{m}.csv").write_text("".join(f"{mid},name of {mid}\n" for mid in mids))
            entry["classes"] = f"{{work}}/classes/{m}.csv"
        inputs.append(entry)
    return {"work": work, "rows": rows, "images": images, "tmp": tmp_path,
            "recipe": {"inputs": inputs, "method": "wbf", "params": {}}}


def reference_per_class(experts, fuse):
    """Per (image, class): ``fuse`` (ensemble-boxes) on the covering models alone, with their weights; rows by
    score (stable)."""
    want = {}
    for image in experts["images"]:
        for mid in MIDS:
            covering = [m for m, mids in COVERAGE.items() if mids is None or mid in mids]
            per_model = [[r for r in experts["rows"][m] if r[0] == image and r[1] == mid] for m in covering]
            if not any(per_model):
                continue
            boxes, scores, labels = fuse([np.array([r[3:] for r in p], np.float32).reshape(-1, 4) for p in per_model],
                                         [np.array([r[2] for r in p], np.float32) for p in per_model],
                                         [np.zeros(len(p), int) for p in per_model],
                                         [COVERAGE_WEIGHTS[m] for m in covering])
            order = np.argsort(-np.asarray(scores), kind="stable")
            want[image, mid] = [(image, mid, np.float32(s), *np.float32(b))
                                for b, s in zip(np.asarray(boxes)[order], np.asarray(scores)[order])]
    return want


def quiet(fn):
    """An ensemble-boxes function without its prints and warnings, on copies of the scores it rescales in place."""
    def call(boxes, scores, labels, weights, **kwargs):
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            return fn(boxes, [s.copy() for s in scores], labels, weights=weights, **kwargs)
    return call


@pytest.mark.parametrize("method, params", [
    ("wbf", {"iou_thr": 0.55, "conf_type": "avg"}), ("wbf", {"iou_thr": 0.5, "conf_type": "max"}),
    ("wbf", {"iou_thr": 0.6, "conf_type": "box_and_model_avg"}),
    ("wbf", {"iou_thr": 0.55, "conf_type": "absent_model_aware_avg"}), ("nms", {"iou_thr": 0.5}),
    ("soft_nms", {"iou_thr": 0.5, "sigma": 0.3, "thresh": 0.01})])
def test_each_class_is_fused_over_the_models_covering_it(experts, capsys, method, params):
    recipe = experts["tmp"] / f"{method}.yaml"
    recipe.write_text(yaml.safe_dump({**experts["recipe"], "method": method, "params": params}))
    assert main(["--recipe", str(recipe), "--split", "validation", "--work", str(experts["work"]), "--jobs", "1"]) == 0
    assert re.search(r"b/validation/p\.parquet: \d+ boxes of classes outside .*b\.csv left out",
                     capsys.readouterr().err)
    got = {}
    for row in read_rows(experts["work"] / "ensemble" / method / "validation" / "predictions.parquet"):
        got.setdefault(row[:2], []).append(row)
    reference = {"wbf": reference_wbf, "nms": reference_nms, "soft_nms": reference_soft_nms}[method]
    want = reference_per_class(experts, lambda b, s, lab, w: quiet(reference)(b, s, lab, w, **params))
    assert sorted(got) == sorted(want)
    if method == "soft_nms":  # ensemble-boxes keeps the same boxes but returns their original scores; ours decays
        decayed = reference_per_class(experts, lambda b, s, lab, w: soft_nms(b, s, lab, weights=w, **params))
        for key in want:
            assert_rows_equal(got[key], decayed[key])
            assert sorted(r[3:] for r in got[key]) == sorted(r[3:] for r in want[key])
    else:
        for key in want:
            assert_rows_equal(got[key], want[key])


def test_a_class_covered_by_one_model_keeps_its_scores(experts):
    """A class covered by one model of three keeps that model's score (WBF avg: not divided by all weights)."""
    lone = [r for r in experts["rows"]["a"] if r[1] == TEDDY_BEAR]
    recipe = experts["tmp"] / "lone.yaml"
    recipe.write_text(yaml.safe_dump({**experts["recipe"], "params": {"iou_thr": 0.99}}))
    assert main(["--recipe", str(recipe), "--split", "validation", "--work", str(experts["work"]), "--jobs", "1"]) == 0
    got = [r for r in read_rows(experts["work"] / "ensemble" / "lone" / "validation" / "predictions.parquet")
           if r[1] == TEDDY_BEAR]
    assert sorted(r[2] for r in got) == pytest.approx(sorted(r[2] for r in lone), abs=1e-6)


def test_placeholders_round_trip():
    assert insert_placeholders("w/predictions/m/validation/merged", "w", "validation") == \
        "{work}/predictions/m/{split}/merged"
    assert insert_placeholders("w/prepared/hierarchy.json", "w", "test") == "{prepared}/hierarchy.json"
    assert insert_placeholders("/p/experts/x/classes.csv", "w", "test", prepared="/p") == \
        "{prepared}/experts/x/classes.csv"
    assert insert_placeholders("/data/validation-extra/a.parquet", "w", "validation") == \
        "/data/validation-extra/a.parquet"
    for pattern in ("{work}/predictions/m/{split}/merged", "{prepared}/hierarchy.json"):
        assert insert_placeholders(expand_placeholders(pattern, "w", "validation"), "w", "validation") == pattern


def test_equal_scores_are_ordered_by_class_then_box(case):
    """Ties come out by class (MID order, the class numbers), then box, whatever the input order."""
    rows = [("tie", CAR, 0.5, 0.1, 0.1, 0.2, 0.2), ("tie", CAT, 0.5, 0.6, 0.6, 0.7, 0.7),
            ("tie", CAT, 0.5, 0.1, 0.1, 0.2, 0.2), ("tie", PERSON, 0.7, 0.3, 0.3, 0.4, 0.4)]
    write_predictions(case["work"] / "predictions" / "t" / "validation" / "p.parquet", rows)
    got = read_rows(run(case, "ties", inputs=["{work}/predictions/t/{split}/p.parquet"], method="nms",
                        params={"iou_thr": 0.5}, hierarchy=None))
    assert [(r[1], r[3]) for r in got] == [(PERSON, pytest.approx(0.3)), (CAT, pytest.approx(0.1)),
                                           (CAT, pytest.approx(0.6)), (CAR, pytest.approx(0.1))]


def test_zero_weight_input_matches_reference(case):
    """An input of weight 0 (switched off): its boxes count with key 0, as ensemble-boxes weighs them (WBF, NMS); its
    boxes copy model a's, so that none is fused alone with other zero-key boxes (ensemble-boxes' NaN boxes)."""
    rng = np.random.default_rng(1)
    case["b"] = [(r[0], r[1], float(rng.uniform(0.01, 1)), *r[3:]) for r in case["a"] if rng.uniform() < 0.5]
    write_predictions(case["work"] / "predictions" / "b" / "validation" / "part-1.parquet", case["b"])
    write_predictions(case["work"] / "predictions" / "b" / "validation" / "part-2.parquet", [])
    inputs = [case["recipe"]["inputs"][0], {**case["recipe"]["inputs"][1], "weight": 0}]

    def reference(function, **params):
        def fuse(boxes, scores, labels):
            with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return function(boxes, scores, labels, weights=[WEIGHTS[0], 0], **params)
        return fuse

    got = read_rows(run(case, "off", inputs=inputs))
    want = expected_rows(case, reference(reference_wbf, iou_thr=0.55, skip_box_thr=0.0, conf_type="avg"))
    assert np.isfinite([r[2:] for r in want]).all()
    assert_rows_equal(got, want)
    got = read_rows(run(case, "off_nms", inputs=inputs, method="nms", params={"iou_thr": 0.5}, hierarchy=None))
    assert_rows_equal(got, expected_rows(case, reference(reference_nms, iou_thr=0.5), expand=False))
    with pytest.raises(ValueError, match=r"every input has weight 0"):
        load_recipe(write_recipe(case, "bad", inputs=[{**i, "weight": 0} for i in inputs]))


def test_classes_covered_only_by_zero_weight_inputs_get_no_boxes(experts):
    """Experts b and e, e switched off (weight 0): Tomato, which only e covers, gets no boxes; Oyster, covered by
    both, is ensemble-boxes' NMS of the two with weights 1 and 0."""
    inputs = [experts["recipe"]["inputs"][1], {**experts["recipe"]["inputs"][2], "weight": 0}]
    recipe = experts["tmp"] / "off.yaml"
    recipe.write_text(yaml.safe_dump({**experts["recipe"], "inputs": inputs, "method": "nms"}))
    assert main(["--recipe", str(recipe), "--split", "validation", "--work", str(experts["work"]), "--jobs", "1"]) == 0
    got = read_rows(experts["work"] / "ensemble" / "off" / "validation" / "predictions.parquet")
    assert {r[1] for r in got} == {CAR, PERSON, CAT, OYSTER}
    want = []
    for image in experts["images"]:
        per_model = [[r for r in experts["rows"][m] if r[0] == image and r[1] == OYSTER] for m in ("b", "e")]
        if not any(per_model):
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            boxes, scores, _ = reference_nms(
                [np.array([r[3:] for r in p], np.float32).reshape(-1, 4) for p in per_model],
                [np.array([r[2] for r in p], np.float32) for p in per_model],
                [np.zeros(len(p), int) for p in per_model], weights=[1.0, 0.0], iou_thr=0.5)
        want += [(image, OYSTER, s, *b) for s, b in sorted(zip(scores, boxes.tolist()), key=lambda x: (-x[0], x[1]))]
    assert any(s == 0 for _, _, s, *_ in want)  # e's boxes took part, at score 0
    assert_rows_equal([r for r in got if r[1] == OYSTER], want)
