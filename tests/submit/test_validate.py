"""Submission validator: every kind of broken file is rejected with its line named; valid files pass."""
from __future__ import annotations

import gzip

import pandas as pd
import pytest

from submit.validate import main as validate_main
from submit.validate import validate_submission

from tests.helpers import METADATA

CLASSES = METADATA / "challenge-2019-classes-description-500.csv"
MIDS = pd.read_csv(CLASSES, header=None)[0].tolist()
A, B = MIDS[0], MIDS[1]
IMAGES = ["img0", "img1", "img2", "img3"]
GOOD = [
    "ImageId,PredictionString",
    f"img0,{A} 0.9 0.1 0.2 0.3 0.4 {B} 0.25 0 0 1 1",
    "img1,",
    f"img2,{B} 1 0.5 0.5 0.75 0.6",
    f"img3,{A} 0.000012 0.1 0.1 0.2 0.2 {A} 1e-3 .5 .5 .6 .6",
]


def write(tmp_path, lines, name="sub.csv", ending="\n"):
    path = tmp_path / name
    path.write_bytes((ending.join(lines) + ending).encode("utf-8"))
    return path


def problems(tmp_path, lines, images=IMAGES):
    report = validate_submission(write(tmp_path, lines), MIDS, images)
    assert not report.ok
    return report.problems


def with_line(k, text):
    lines = list(GOOD)
    lines[k - 1] = text
    return lines


def test_valid_files_pass(tmp_path, capsys):
    report = validate_submission(write(tmp_path, GOOD), MIDS, IMAGES)
    assert report.ok and (report.rows, report.boxes, report.mids_used) == (4, 5, 2)
    assert validate_submission(write(tmp_path, GOOD, "crlf.csv", "\r\n"), MIDS, IMAGES).ok
    gz = tmp_path / "sub.csv.gz"
    gz.write_bytes(gzip.compress(("\n".join(GOOD) + "\n").encode()))
    no_final_newline = tmp_path / "last.csv"
    no_final_newline.write_text("\n".join(GOOD))
    (tmp_path / "images.txt").write_text("\n".join(IMAGES) + "\n")
    for path in (gz, no_final_newline):
        assert validate_main([str(path), "--classes", str(CLASSES), "--images", str(tmp_path / "images.txt")]) == 0
        out = capsys.readouterr().out.strip().splitlines()
        assert out == [f"OK {path}: 4 rows, 5 boxes, 2 classes used, all 4 listed images present"]


@pytest.mark.parametrize("line, text, message", [
    (1, "ImageID,PredictionString", "header must be 'ImageId,PredictionString'"),
    (2, f"img0,{A} 0.9 0.1 0.2 0.3", "5 fields in PredictionString, not a multiple of 6"),
    (2, "img0,/m/nope 0.9 0.1 0.2 0.3 0.4", "box 1: MID '/m/nope' is not in"),
    (4, f"img2,{B} 1 0.5 0.5 0.75 0.6 {A} 0.5 0.1 0.1 1.2 0.5", "box 2: xmax 1.2 is outside [0, 1]"),
    (4, f"img2,{B} 1 -0.1 0.5 0.75 0.6", "box 1: xmin -0.1 is outside [0, 1]"),
    (4, f"img2,{B} 1 0.8 0.5 0.75 0.6", "box 1: xmin 0.8 >= xmax 0.75 (inverted or empty box)"),
    (4, f"img2,{B} 1 0.1 0.6 0.75 0.6", "box 1: ymin 0.6 >= ymax 0.6 (inverted or empty box)"),
    (4, f"img2,{B} nan 0.1 0.5 0.75 0.6", "box 1: score 'nan' is not a number"),
    (4, f"img2,{B} 1e999 0.1 0.5 0.75 0.6", "box 1: score '1e999' is not a finite number"),
    (4, f"img2,{B} high 0.1 0.5 0.75 0.6", "box 1: score 'high' is not a number"),
    (4, f"img2,{B} 0.5 0.1 0.5 0,75 0.6", "expected 2 comma-separated fields (ImageId,PredictionString), found 3"),
    (4, f"img2,{B} 0.5 0.1 0.5  0.75 0.6", "empty field 5 in PredictionString (double, leading or trailing space)"),
    (4, f"img2,{B} 0.5 0.1 0.5 0.75 0.6 ", "empty field 7 in PredictionString"),
    (4, "img2", "expected 2 comma-separated fields (ImageId,PredictionString), found 1"),
    (4, "", "empty line"),
    (4, ",", "empty ImageId"),
    (4, "img0,", "duplicate ImageId img0 (first on line 2)"),
    (4, "imgX,", "ImageId 'imgX' is not in the image list"),
    (4, f"img2,{B} 0.5 0.1 0.5 0.75 0.6é", "non-ASCII character"),
])
def test_each_broken_line_is_named(tmp_path, line, text, message):
    found = problems(tmp_path, with_line(line, text))
    assert message in " | ".join(found.get(line, [])), found
    assert set(found) - {line, None} == set()  # no other line is blamed


def test_missing_images_and_capped_listing(tmp_path, capsys):
    found = problems(tmp_path, GOOD[:3])
    assert found == {None: ["2 listed image(s) have no row, e.g. img2, img3"]}
    lines = ["ImageId,PredictionString"] + [f"im{k},{A} 0.5 0.6 0.1 0.5 0.2" for k in range(30)]
    path = write(tmp_path, lines)
    assert validate_main([str(path), "--classes", str(CLASSES), "--max-listed", "5"]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0] == f"INVALID {path}: 30 line(s) with problems"
    assert out[1] == "line 2: box 1: xmin 0.6 >= xmax 0.5 (inverted or empty box)"
    assert [o.split(":")[0] for o in out[1:6]] == [f"line {k}" for k in range(2, 7)]
    assert out[6] == "... and 25 more line(s) with problems"
    bad_boxes = ["ImageId,PredictionString", f"a,{A} 0.5 0.6 0.1 0.5 0.2 {A} 0.5 0.7 0.1 0.5 0.2 /m/x 1 0 0 1 1"]
    found = problems(tmp_path, bad_boxes, images=None)
    assert found[2] == ["box 3: MID '/m/x' is not in the class file",
                        "box 1: xmin 0.6 >= xmax 0.5 (inverted or empty box) (and 1 more such box(es))"]


def test_unreadable_input_exits_2(tmp_path, capsys):
    assert validate_main([str(tmp_path / "none.csv"), "--classes", str(CLASSES)]) == 2
    assert "none.csv" in capsys.readouterr().err
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert validate_main([str(empty), "--classes", str(CLASSES)]) == 1
    assert "line 1: empty file" in capsys.readouterr().out
