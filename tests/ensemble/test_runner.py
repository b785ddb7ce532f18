"""ensemble.runner's output order, threshold, ancestor copies and cap (``_output_rows``) against a plain sort."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from contracts.predictions import SCHEMA
from ensemble.__main__ import main
from ensemble.runner import _output_rows

MIDS = ["/m/01", "/m/02", "/m/03"]


def reference_rows(boxes, score, image, label, wanted, n_images, score_thr, cap, indptr, indices):
    """Every image's boxes sorted by (descending score, class, box), thresholded on the float32 score, each
    followed by its ancestors, cut after ``cap`` rows, then only the wanted (image, class) pairs."""
    out = []
    for g in range(n_images):
        rows = sorted(np.flatnonzero(image == g), key=lambda i: (-score[i], label[i], *boxes[i]))
        written = []
        for i in rows:
            if np.float32(score[i]) >= score_thr:
                c = label[i]
                written += [(g, cls, np.float32(score[i]), *np.float32(boxes[i]))
                            for cls in [c, *indices[indptr[c]:indptr[c + 1]]]]
        out += [r for r in written[:None if cap < 0 else cap] if not wanted.size or wanted[g, r[1]]]
    return out


@pytest.mark.parametrize("seed", range(6))
def test_output_rows_are_those_of_a_full_sort(seed):
    """Many boxes per image, many equal scores (the cap falls inside runs of ties), boxes below the threshold,
    classes with several ancestors: only the boxes that can be written are sorted, the rows are the same."""
    rng = np.random.default_rng(seed)
    n_images, n_classes = 6, 9
    ancestors = [sorted(rng.choice(n_classes, rng.integers(0, 3), replace=False)) for _ in range(n_classes)]
    indptr = np.r_[0, np.cumsum([len(a) for a in ancestors])].astype(np.int64)
    indices = np.array([c for a in ancestors for c in a], np.int32)
    n = 900
    image = rng.integers(0, n_images, n)
    image[image == 5] = 4  # image 5 has no boxes
    label = rng.integers(0, n_classes, n)
    score = rng.choice(np.r_[rng.random(40), 0.5, 0.25, 1e-4], n)
    boxes = rng.choice(np.array([0.1, 0.2, 0.3]), (n, 4))
    wanted = rng.random((n_images, n_classes)) < 0.6
    for cap in (-1, 0, 1, 7, 40, 150, 10_000):
        for mask in (wanted, np.ones((0, 0), bool)):
            got = _output_rows(boxes, score, image, label, mask, n_images, 0.001, cap, indptr, indices)
            want = reference_rows(boxes, score, image, label, mask, n_images, 0.001, cap, indptr, indices)
            assert list(zip(*got[:3])) == [r[:3] for r in want]
            np.testing.assert_array_equal(got[3], np.array([r[3:] for r in want], np.float32).reshape(-1, 4))


def write_predictions(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(zip(*rows)) if rows else [[]] * 7
    pq.write_table(pa.Table.from_arrays([pa.array(c, t) for c, t in zip(columns, SCHEMA.types)], schema=SCHEMA),
                   path)


def test_a_weight_0_input_whose_boxes_overlap_only_each_other_is_switched_off(tmp_path):
    """WBF: model z of weight 0 has boxes that overlap only each other (ensemble-boxes fuses them into NaN boxes of
    score 0); python -m ensemble leaves those clusters out and writes what it writes with z's boxes removed."""
    rng = np.random.default_rng(3)
    work, a, z = tmp_path / "work", [], []
    for image in ("i1", "i2", "i3"):
        for _ in range(20):
            x, y = rng.uniform(0, 0.5, 2)
            a.append((image, str(rng.choice(MIDS)), float(rng.uniform(0.05, 1)), x, y, x + 0.3, y + 0.3))
        for mid in MIDS[:2]:  # in the corner no box of a reaches
            z += [(image, mid, float(rng.uniform(0.1, 1)), 0.9, 0.9, 0.99 - d, 0.99) for d in (0, 0.01, 0.02)]
    write_predictions(work / "predictions" / "a.parquet", a)
    write_predictions(work / "predictions" / "z.parquet", z)
    write_predictions(work / "predictions" / "none.parquet", [])
    written = {}
    for name, off in (("on", "z"), ("off", "none")):
        recipe = tmp_path / f"{name}.yaml"
        recipe.write_text(yaml.safe_dump({
            "inputs": ["{work}/predictions/a.parquet", {"path": f"{{work}}/predictions/{off}.parquet", "weight": 0}],
            "method": "wbf", "params": {"iou_thr": 0.55}, "score_thr": 0.001}))
        assert main(["--recipe", str(recipe), "--split", "validation", "--work", str(work), "--jobs", "1"]) == 0
        written[name] = pq.read_table(work / "ensemble" / name / "validation" / "predictions.parquet")
    assert written["on"].num_rows > 0 and written["on"].equals(written["off"])
