"""Kaggle submission writer: format, round trip through the parser, empty images, gzip, determinism, CLI."""
from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from submit.__main__ import main as submit_main
from contracts.files import read_image_ids
from contracts.predictions import read_predictions
from submit.write import write_submission

from tests.helpers import METADATA

MIDS = pd.read_csv(METADATA / "challenge-2019-classes-description-500.csv", header=None)[0].tolist()


def random_predictions(rng, image_ids, n=3000) -> pd.DataFrame:
    xy = rng.random((n, 4)).astype(np.float32)
    return pd.DataFrame({
        "ImageID": rng.choice(image_ids, n),
        "LabelName": rng.choice(MIDS[:40], n),
        "Score": np.r_[rng.random(n - 4), [0.0, 1.0, 0.000123456, 0.99999951]].astype(np.float32),
        "XMin": np.minimum(xy[:, 0], xy[:, 1]), "YMin": np.minimum(xy[:, 2], xy[:, 3]),
        "XMax": np.maximum(xy[:, 0], xy[:, 1]), "YMax": np.maximum(xy[:, 2], xy[:, 3]),
    })


def python_fields(row) -> list[str]:
    """The expected fields of one box, from Python's own number formatting ("%.5g" for the score)."""
    coords = [f"{min(max(float(v), 0.0), 1.0):.4f}".rstrip("0").rstrip(".") for v in row[3:7]]
    return [row[1], f"{float(row[2]):.5g}", *coords]


def same_fields(got: list[str], expected: list[str]) -> bool:
    """Equal text, except that a score below 1e-4 (which "%g" prints with an exponent) is compared by value."""
    if len(got) != len(expected):
        return False
    scores = slice(1, None, 6)
    return ([g for k, g in enumerate(got) if k % 6 != 1] == [e for k, e in enumerate(expected) if k % 6 != 1]
            and all(g == e if float(e) >= 1e-4 else float(g) == float(e) and "e" not in g
                    for g, e in zip(got[scores], expected[scores])))


def test_write_matches_python_formatting_and_parses_back(tmp_path):
    rng = np.random.default_rng(0)
    image_ids = [f"{i:016x}" for i in rng.integers(0, 2**63, 60)]
    preds = random_predictions(rng, image_ids[:50])  # the last ten images get no boxes
    out = tmp_path / "sub.csv"
    stats = write_submission(preds, image_ids, out)

    lines = out.read_text().split("\n")
    assert lines[0] == "ImageId,PredictionString" and lines[-1] == ""
    rows = [line.split(",") for line in lines[1:-1]]
    assert [r[0] for r in rows] == sorted(image_ids)  # one row per image, sorted
    assert sum(r[1] == "" for r in rows) == 10 == stats.images - stats.images_with_boxes
    assert "  " not in out.read_text() and " \n" not in out.read_text()

    # Expected text per image: boxes by descending score (ties: MID), Python-formatted, empty ones left out
    rounded = np.rint(np.clip(preds[["XMin", "YMin", "XMax", "YMax"]].to_numpy(np.float64), 0, 1) * 1e4)
    keep = (rounded[:, 0] < rounded[:, 2]) & (rounded[:, 1] < rounded[:, 3])
    assert stats.dropped_empty == (~keep).sum() and stats.boxes == keep.sum()
    expected = {i: [] for i in image_ids}
    kept = preds[keep].copy()
    kept["order"] = -kept["Score"].astype(np.float64)
    ref = kept.sort_values(["ImageID", "order", "LabelName"], kind="stable")
    for row in ref.itertuples(index=False):
        expected[row[0]] += python_fields(row)
    for image_id, text in rows:
        assert same_fields(text.split(" ") if text else [], expected[image_id]), image_id
    assert "0.00012346" in out.read_text() and " 1 " in out.read_text()

    back = read_predictions(out)  # round trip, in file order: same boxes up to the printed precision
    assert len(back) == keep.sum()
    assert back["ImageID"].astype(str).tolist() == ref["ImageID"].tolist()
    assert back["LabelName"].astype(str).tolist() == ref["LabelName"].tolist()
    np.testing.assert_array_equal(back[["XMin", "YMin", "XMax", "YMax"]].to_numpy(),
                                  np.rint(np.clip(ref[["XMin", "YMin", "XMax", "YMax"]].to_numpy(np.float64), 0, 1)
                                          * 1e4) / 1e4)
    np.testing.assert_array_equal(back["Score"].to_numpy(),
                                  [float(f"{s:.5g}") for s in ref["Score"].astype(np.float64)])


def test_gzip_output_is_identical_and_deterministic(tmp_path):
    rng = np.random.default_rng(1)
    image_ids = [f"im{i:03d}" for i in range(30)]
    preds = random_predictions(rng, image_ids, n=500)
    write_submission(preds, image_ids, tmp_path / "a.csv")
    write_submission(preds, image_ids, tmp_path / "a.csv.gz")
    first = (tmp_path / "a.csv.gz").read_bytes()
    assert first[:2] == b"\x1f\x8b"
    assert gzip.decompress(first) == (tmp_path / "a.csv").read_bytes()
    write_submission(preds.sample(frac=1.0, random_state=3), image_ids, tmp_path / "a.csv.gz")
    assert (tmp_path / "a.csv.gz").read_bytes() == first  # reruns (any row order, no exact ties) give same bytes
    pd.testing.assert_frame_equal(read_predictions(tmp_path / "a.csv.gz"), read_predictions(tmp_path / "a.csv"))
    assert not list(tmp_path.glob(".*tmp"))


def test_write_rejects_unknown_images_and_bad_values(tmp_path):
    preds = pd.DataFrame({"ImageID": ["a", "zz"], "LabelName": [MIDS[0]] * 2, "Score": [0.5, 0.5],
                          "XMin": [0.1] * 2, "YMin": [0.1] * 2, "XMax": [0.5] * 2, "YMax": [0.5] * 2})
    with pytest.raises(ValueError, match="not in the image list.*zz"):
        write_submission(preds, ["a", "b"], tmp_path / "x.csv")
    with pytest.raises(ValueError, match="non-finite or huge score"):
        write_submission(preds.assign(Score=[0.5, np.nan]), ["a", "zz"], tmp_path / "x.csv")
    with pytest.raises(ValueError, match="non-finite coordinates"):
        write_submission(preds.assign(XMax=[0.5, np.inf]), ["a", "zz"], tmp_path / "x.csv")
    with pytest.raises(ValueError, match="LabelName 'a b'"):
        write_submission(preds.assign(LabelName=["a b", "c"]), ["a", "zz"], tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists() and not list(tmp_path.iterdir())


def test_cli_from_parquet_shards_and_sample_submission(tmp_path, capsys):
    rng = np.random.default_rng(2)
    image_ids = [f"t{i:02d}" for i in range(12)]
    preds = random_predictions(rng, image_ids[:8], n=200)
    folder = tmp_path / "pred"
    folder.mkdir()
    for k, part in enumerate(np.array_split(np.arange(len(preds)), 2)):
        pq.write_table(pa.Table.from_pandas(preds.iloc[part], preserve_index=False),
                       folder / f"shard-{k:03d}-of-002.parquet")
    sample = tmp_path / "sample_submission.csv"
    sample.write_text("ImageId,PredictionString\n" + "".join(f"{i},/m/01g317 0.5 0 0 1 1\n" for i in image_ids))
    (tmp_path / "list.txt").write_text("".join(f"{i}.jpg\n" for i in reversed(image_ids)))
    assert read_image_ids(sample) == read_image_ids(tmp_path / "list.txt") == image_ids

    assert submit_main(["--predictions", str(folder), "--images", str(sample), "--out", str(tmp_path / "s.csv"),
                        "--quiet"]) == 0
    assert "12 images (8 with boxes)" in capsys.readouterr().out
    write_submission(preds, image_ids, tmp_path / "direct.csv")
    assert (tmp_path / "s.csv").read_bytes() == (tmp_path / "direct.csv").read_bytes()
    assert submit_main(["--predictions", str(folder), "--images", str(tmp_path / "missing"), "--out",
                        str(tmp_path / "t.csv")]) == 2
    assert "missing" in capsys.readouterr().err


def test_parser_reads_numbers_exactly_as_python_float(tmp_path):
    rng = np.random.default_rng(3)
    texts = ["0", "1", "1.", ".5", "-0.25", "+3", "1e-3", "1E+2", "00012.5000", "0.1234567890123456789",
             "123456789012345678901234", "9007199254740993", "1e22", "1e23", "1e999", "-1e-999", "3.14159e-5"]
    texts += [repr(float(x)) for x in rng.random(300)]
    texts += [f"{x:.7g}" for x in rng.random(300) * 10.0 ** rng.integers(-30, 30, 300)]
    texts += ["0"] * (-len(texts) % 5)
    lines = [f"i{k:04d},{MIDS[0]} " + " ".join(texts[k:k + 5]) for k in range(0, len(texts), 5)]
    path = tmp_path / "numbers.csv"
    path.write_text("ImageId,PredictionString\n" + "\n".join(lines) + "\n")
    parsed = read_predictions(path)
    got = parsed[["Score", "XMin", "YMin", "XMax", "YMax"]].to_numpy().ravel()
    np.testing.assert_array_equal(got, [float(t) for t in texts])
    for bad in ["0.5x", "nan", "1e", "--1", ".", "0x10", "1,5"]:
        path.write_text(f"ImageId,PredictionString\na,{MIDS[0]} 0.5 0.1 0.1 {bad} 0.5\n")
        with pytest.raises(ValueError, match=r"numbers.csv, line 2: .*submit.validate"):
            read_predictions(path)
