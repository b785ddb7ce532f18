"""Raw-file readers: every format variant against the stdlib csv module, and every bad-input case."""
import csv
import gzip
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from data_prep import formats
from contracts.classes import read_classes
from contracts.files import DataError
from data_prep.formats import RowError
from data_prep.prepare import run_prepare
from tests.helpers import FIXTURES, METADATA


H13 = ("ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,IsDepiction,"
       "IsInside")
H7 = "ImageID,LabelName,XMin,XMax,YMin,YMax,IsGroupOf"
H21 = H13 + ",XClick1X,XClick2X,XClick3X,XClick4X,XClick1Y,XClick2Y,XClick3Y,XClick4Y"
H4 = "ImageID,Source,LabelName,Confidence"
H3 = "ImageID,LabelName,Confidence"
TOMATO, APPLE, BANANA, FRUIT = "/m/07j87", "/m/014j1m", "/m/09qck", "/m/02xwb"
IMG_A, IMG_B, IMG_C = "000a1b2c3d4e5f60", "0b1c2d3e4f506172", "ffeeddccbbaa0099"

TRAIN_13 = [  # ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,flags...
    f"{IMG_B},xclick,{TOMATO},1,0.1,0.5,0.2,0.6,0,1,0,0,0",
    f"{IMG_A},activemil,{APPLE},1,0.022673031,0.9642005,0.07103825,0.80054647,1,0,1,0,1",
    f"{IMG_B},xclick,{BANANA},1,0.25,0.75,0.125,0.875,0,0,0,1,0",
]
VAL_7 = [f"{IMG_C},{FRUIT},0.3,0.4,0.5,0.6,1", f"{IMG_A},{TOMATO},0.0,1.0,0.0,1.0,0"]


def write(path: Path, header: str, rows, newline="\n") -> Path:
    path.write_bytes((newline.join([header, *rows]) + newline).encode())
    return path


def challenge_dir(root: Path, train=TRAIN_13, val=VAL_7, labels=True) -> Path:
    """A raw folder in the Challenge 2019 layout with the real 500-class files."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("challenge-2019-classes-description-500.csv", "challenge-2019-label500-hierarchy.json"):
        shutil.copyfile(METADATA / name, root / name)
    if train is not None:
        write(root / "challenge-2019-train-detection-bbox.csv", H13, train)
    if val is not None:
        write(root / "challenge-2019-validation-detection-bbox.csv", H7, val)
    if labels:
        write(root / "challenge-2019-train-detection-human-imagelabels.csv", H4,
              [f"{IMG_A},verification,{FRUIT},1", f"{IMG_B},verification,{APPLE},0"])
        write(root / "challenge-2019-validation-detection-human-imagelabels.csv", H3, [f"{IMG_C},{BANANA},0"])
    return root


def reference_boxes(path: Path):
    """Rows of a box CSV read with the stdlib csv module: (ImageID, MID, XMin, YMin, XMax, YMax as float32)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", newline="") as f:
        rows = list(csv.DictReader(f))
    return [(r["ImageID"], r["LabelName"], *(np.float32(r[c]) for c in ("XMin", "YMin", "XMax", "YMax")))
            for r in rows]


def prepared_boxes(out: Path, split: str):
    """Rows of a prepared boxes.parquet joined back to ImageIDs and MIDs, in file order."""
    with open(out / "classes.csv", newline="") as f:
        mids = [r[0] for r in csv.reader(f)]
    ids = pq.read_table(out / split / "images.parquet").column("ImageID").to_pylist()
    t = pq.read_table(out / split / "boxes.parquet").to_pydict()
    return [(ids[i], mids[lab], *(np.float32(t[c][k]) for c in ("XMin", "YMin", "XMax", "YMax")))
            for k, (i, lab) in enumerate(zip(t["image_idx"], t["label"]))]


TRAIN_ONLY = ("train",)  # the folder has no validation files

# ----------------------------------------------------------------------------------------------- formats


def test_challenge_13_and_7_columns(tmp_path):
    data = challenge_dir(tmp_path / "data")
    train = formats.read_boxes(data / "challenge-2019-train-detection-bbox.csv", progress=False)
    assert train.format == "13 columns"
    assert train.numbers["XMin"].dtype == np.float32
    assert train.numbers["XMin"].tolist() == [np.float32(v) for v in (0.1, 0.022673031, 0.25)]
    assert train.small["IsTruncated"].tolist() == [1, 0, 0]
    assert train.small["IsInside"].tolist() == [0, 1, 0]
    val = formats.read_boxes(data / "challenge-2019-validation-detection-bbox.csv", progress=False)
    assert val.format == "7 columns"
    assert val.small["IsGroupOf"].tolist() == [1, 0]
    assert val.small["IsOccluded"].tolist() == [-1, -1]  # not in the 7-column format: unknown

    out = tmp_path / "out"
    run_prepare(data, out, progress=False)
    for split, name in (("train", "challenge-2019-train-detection-bbox.csv"),
                        ("validation", "challenge-2019-validation-detection-bbox.csv")):
        assert sorted(prepared_boxes(out, split)) == sorted(reference_boxes(data / name))
    boxes = pq.read_table(out / "validation" / "boxes.parquet").to_pydict()
    assert boxes["IsGroupOf"] == [0, 1]  # sorted by ImageID: IMG_A (Tomato) then IMG_C (Fruit)
    assert boxes["IsDepiction"] == [-1, -1]


def test_challenge_4_and_3_column_labels(tmp_path):
    data = challenge_dir(tmp_path / "data")
    four = formats.read_image_labels(data / "challenge-2019-train-detection-human-imagelabels.csv", False)
    three = formats.read_image_labels(data / "challenge-2019-validation-detection-human-imagelabels.csv", False)
    assert (four.format, three.format) == ("4 columns", "3 columns")
    assert four.small["Confidence"].tolist() == [1, 0]
    assert three.small["Confidence"].tolist() == [0]
    ids, pos = four.strings["ImageID"].unique_codes()
    assert [ids[int(p)].as_py() for p in pos] == [IMG_A, IMG_B]


def _v5_dir(root: Path, box_name: str, header: str, extra: str = "", newline="\n") -> Path:
    root.mkdir(parents=True)
    for name in ("class-descriptions-boxable.csv", "bbox_labels_600_hierarchy.json"):
        shutil.copyfile(METADATA / name, root / name)
    write(root / box_name, header, [r + extra for r in TRAIN_13], newline)
    write(root / "validation-annotations-bbox.csv", header, [r + extra for r in TRAIN_13[:1]], newline)
    write(root / "train-annotations-human-imagelabels-boxable.csv", H4, [f"{IMG_A},verification,{FRUIT},1"],
          newline)
    return root


def test_v5_13_and_v6_21_columns_with_crlf(tmp_path):
    v5 = _v5_dir(tmp_path / "v5", "train-annotations-bbox.csv", H13)
    v6 = _v5_dir(tmp_path / "v6", "oidv6-train-annotations-bbox.csv", H21, ",0.1,0.5,0.3,0.2,0.2,0.6,0.4,0.3", "\r\n")
    assert formats.read_boxes(v6 / "oidv6-train-annotations-bbox.csv", False).format == "21 columns"
    assert b"\r\n" in (METADATA / "class-descriptions-boxable.csv").read_bytes()  # the real file is CRLF
    run_prepare(v5, tmp_path / "o5", progress=False)
    run_prepare(v6, tmp_path / "o6", progress=False)
    for split in ("train", "validation"):
        for name in ("images.parquet", "boxes.parquet", "image_labels.parquet", "class_index.parquet"):
            assert (tmp_path / "o5" / split / name).read_bytes() == (tmp_path / "o6" / split / name).read_bytes()
    classes = (tmp_path / "o5" / "classes.csv").read_text().splitlines()
    assert len(classes) == 601 and classes[0] == "/m/011k07,Tortoise"
    expected = reference_boxes(v5 / "train-annotations-bbox.csv")
    assert sorted(prepared_boxes(tmp_path / "o6", "train")) == sorted(expected)


def test_gzip_gives_the_same_output(tmp_path):
    plain = challenge_dir(tmp_path / "plain")
    zipped = tmp_path / "gz"
    zipped.mkdir()
    for f in plain.iterdir():
        (zipped / (f.name + ".gz")).write_bytes(gzip.compress(f.read_bytes(), mtime=0))
    files = formats.discover(zipped)
    assert files.splits["train"].boxes.name == "challenge-2019-train-detection-bbox.csv.gz"
    run_prepare(plain, tmp_path / "o1", progress=False)
    run_prepare(zipped, tmp_path / "o2", progress=False)
    for f in sorted((tmp_path / "o1").rglob("*.parquet")):
        assert f.read_bytes() == (tmp_path / "o2" / f.relative_to(tmp_path / "o1")).read_bytes(), f


def test_mmdet_fixture_files(tmp_path):
    data = shutil.copytree(FIXTURES / "mmdet-openimages", tmp_path / "data")
    out = tmp_path / "out"
    summary = run_prepare(data, out, split_names=TRAIN_ONLY, progress=False)
    assert summary["splits"]["train"]["box_format"] == "13 columns"
    assert prepared_boxes(out, "train") == reference_boxes(data / "oidv6-train-annotations-bbox.csv")
    labels = pq.read_table(out / "train" / "image_labels.parquet").to_pydict()
    assert labels == {"image_idx": [0], "label": [0], "Confidence": [1]}
    with pytest.raises(DataError, match="no validation box file found.*validation-annotations-bbox.csv.*--splits"):
        run_prepare(data, out, progress=False)


def test_flags_other_than_0_1_are_unknown(tmp_path):
    rows = [f"{IMG_A},xclick,{TOMATO},1,0.1,0.5,0.2,0.6,-1,2,,1,0",
            f"{IMG_A},xclick,{APPLE},1,0.1,0.5,0.2,0.6,1,0,0,True,0.0"]
    data = challenge_dir(tmp_path / "data", train=rows, val=None, labels=False)
    summary = run_prepare(data, tmp_path / "out", split_names=TRAIN_ONLY, progress=False)
    assert summary["splits"]["train"]["dropped"]["boxes"] == {}
    boxes = pq.read_table(tmp_path / "out" / "train" / "boxes.parquet").to_pydict()
    assert [boxes[c] for c in ("IsOccluded", "IsTruncated", "IsGroupOf", "IsDepiction", "IsInside")] == \
        [[-1, 1], [-1, 0], [-1, 0], [1, -1], [0, 0]]


# ----------------------------------------------------------------------------------------------- bad files


def test_missing_files(tmp_path):
    with pytest.raises(DataError, match="data directory not found"):
        formats.discover(tmp_path / "nope")
    data = challenge_dir(tmp_path / "data")
    (data / "challenge-2019-label500-hierarchy.json").unlink()
    with pytest.raises(DataError, match="no hierarchy file found.*challenge-2019-label500-hierarchy.json"):
        formats.discover(data)
    data = challenge_dir(tmp_path / "data2", train=None, val=None)
    with pytest.raises(DataError, match="no train box file found.*challenge-2019-train-detection-bbox.csv.*--splits"):
        run_prepare(data, tmp_path / "out", split_names=TRAIN_ONLY, progress=False)
    (tmp_path / "data3").mkdir()
    with pytest.raises(DataError, match="no class file found"):
        formats.discover(tmp_path / "data3")


def test_wrong_header_names_file_and_expected(tmp_path):
    data = challenge_dir(tmp_path / "data")
    path = write(data / "challenge-2019-train-detection-bbox.csv", H7.replace("XMin", "Xmin"), VAL_7)
    with pytest.raises(DataError) as e:
        run_prepare(data, tmp_path / "out", progress=False)
    msg = str(e.value)
    assert str(path) in msg and "line 1" in msg and "Xmin" in msg and H13 in msg and H7 in msg
    write(data / "challenge-2019-train-detection-bbox.csv", H13, TRAIN_13)
    label_path = write(data / "challenge-2019-validation-detection-human-imagelabels.csv", H7, VAL_7)
    with pytest.raises(DataError, match=f"{label_path}: line 1: unexpected image-label file header"):
        run_prepare(data, tmp_path / "out", progress=False)


def test_empty_and_header_only_files(tmp_path):
    data = challenge_dir(tmp_path / "data")
    path = data / "challenge-2019-validation-detection-bbox.csv"
    path.write_bytes(b"")
    with pytest.raises(DataError, match=f"{path}: empty file"):
        run_prepare(data, tmp_path / "out", progress=False)
    write(path, H7, [])
    with pytest.raises(DataError, match=f"{path}: no data rows"):
        run_prepare(data, tmp_path / "out", progress=False)
    classes = data / "challenge-2019-classes-description-500.csv"
    classes.write_bytes(b"")
    with pytest.raises(DataError, match=f"{classes}: empty file"):
        run_prepare(data, tmp_path / "out", progress=False)


def test_malformed_rows_name_the_line(tmp_path):
    data = challenge_dir(tmp_path / "data")
    path = write(data / "challenge-2019-train-detection-bbox.csv", H13,
                 [TRAIN_13[0], TRAIN_13[1].rsplit(",", 1)[0], TRAIN_13[2]])
    with pytest.raises(DataError, match=f"{path}: line 3: expected 13 columns, got 12"):
        formats.read_boxes(path, progress=False)
    write(path, H13, [TRAIN_13[0], TRAIN_13[1], TRAIN_13[2].replace(",0.75,", ",0.7x5,")])
    with pytest.raises(DataError, match=f"{path}: line 4: XMax is not a number: '0.7x5'"):
        formats.read_boxes(path, progress=False)
    classes = data / "challenge-2019-classes-description-500.csv"
    classes.write_text("/m/07j87,Tomato\n/m/014j1m\n")
    with pytest.raises(DataError, match=f"{classes}: line 2: expected 'MID,DisplayName'"):
        read_classes(classes)
    classes.write_text("/m/07j87,Tomato\n/m/07j87,Tomato again\n")
    with pytest.raises(DataError, match="line 2: MID /m/07j87 repeats line 1"):
        read_classes(classes)


# ----------------------------------------------------------------------------------------------- bad rows

# One bad row per reason; as line 3 of a file whose line 2 is good.
GOOD = f"{IMG_A},xclick,{TOMATO},1,0.1,0.5,0.2,0.6,0,0,0,0,0"
BAD_ROWS = {
    "unknown MID": (f"{IMG_A},xclick,/m/notaclass,1,0.1,0.5,0.2,0.6,0,0,0,0,0", "LabelName '/m/notaclass'"),
    "NaN coordinate": (f"{IMG_A},xclick,{APPLE},1,0.1,nan,0.2,0.6,0,0,0,0,0", "XMax=nan"),
    "coordinate outside [0,1]": (f"{IMG_A},xclick,{APPLE},1,0.1,0.5,-0.2,0.6,0,0,0,0,0", "YMin=-0.2"),
    "inverted box (min >= max)": (f"{IMG_A},xclick,{APPLE},1,0.5,0.5,0.2,0.6,0,0,0,0,0", "XMin=0.5, XMax=0.5"),
    "duplicate row": (f"{IMG_A},activemil,{TOMATO},1,0.1,0.5,0.2,0.6,1,0,0,0,0", "same as line 2"),
    "missing image": (f"{IMG_C},xclick,{APPLE},1,0.1,0.5,0.2,0.6,0,0,0,0,0", f"ImageID '{IMG_C}'"),
}


def with_images(data: Path, split: str, ids) -> None:
    folder = data / split
    folder.mkdir()
    for i in ids:
        (folder / f"{i}.jpg").write_bytes(b"")  # only listed, never opened without a COCO export


@pytest.mark.parametrize("reason", list(BAD_ROWS))
def test_strict_names_file_line_and_value(tmp_path, reason):
    row, value = BAD_ROWS[reason]
    data = challenge_dir(tmp_path / "data", train=[GOOD, row, TRAIN_13[1]], val=None, labels=False)
    with_images(data, "train", [IMG_A, IMG_B])
    with pytest.raises(RowError) as e:
        run_prepare(data, tmp_path / "out", strict=True, split_names=TRAIN_ONLY, progress=False)
    msg = str(e.value)
    assert msg.startswith(f"{data / 'challenge-2019-train-detection-bbox.csv'}: line 3: {reason}: ")
    assert value in msg
    assert not (tmp_path / "out" / "train").exists()


def test_bad_rows_dropped_and_counted(tmp_path):
    rows = [GOOD]
    for row, _ in BAD_ROWS.values():
        rows += [row, TRAIN_13[1]]
    rows.append(BAD_ROWS["unknown MID"][0].replace(IMG_A, IMG_B))  # line 15
    data = challenge_dir(tmp_path / "data", train=rows, val=None, labels=False)
    with_images(data, "train", [IMG_A, IMG_B])
    summary = run_prepare(data, tmp_path / "out", split_names=TRAIN_ONLY, progress=False)
    dropped = summary["splits"]["train"]["dropped"]["boxes"]
    assert dropped == {
        "unknown MID": {"count": 2, "lines": [3, 15]},
        "NaN coordinate": {"count": 1, "lines": [5]},
        "coordinate outside [0,1]": {"count": 1, "lines": [7]},
        "inverted box (min >= max)": {"count": 1, "lines": [9]},
        "missing image": {"count": 1, "lines": [13]},
        # TRAIN_13[1] repeats on lines 4, 6, ..., 14 (first kept) and line 11 repeats line 2
        "duplicate row": {"count": 6, "lines": [6, 8, 10, 11, 12]},
    }
    assert summary["splits"]["train"]["boxes"] == 2
    assert sorted(prepared_boxes(tmp_path / "out", "train")) == sorted(
        reference_boxes(data / "challenge-2019-train-detection-bbox.csv")[i] for i in (0, 2))


def test_bad_image_label_rows(tmp_path):
    data = challenge_dir(tmp_path / "data", val=None, labels=False)
    path = write(data / "challenge-2019-train-detection-human-imagelabels.csv", H4, [
        f"{IMG_A},verification,{FRUIT},1",
        f"{IMG_A},verification,{FRUIT},2",        # line 3: bad Confidence
        f"{IMG_A},crowdsource,{FRUIT},1",         # line 4: duplicate of line 2 (Source ignored)
        f"{IMG_B},verification,/m/zzz,0",         # line 5: unknown MID
        f"{IMG_C},verification,{APPLE},0",        # line 6: image missing from the folder
    ])
    with_images(data, "train", [IMG_A, IMG_B])
    summary = run_prepare(data, tmp_path / "out", split_names=TRAIN_ONLY, progress=False)
    s = summary["splits"]["train"]
    assert s["dropped"]["image_labels"] == {
        "unknown MID": {"count": 1, "lines": [5]}, "Confidence not 0 or 1": {"count": 1, "lines": [3]},
        "missing image": {"count": 1, "lines": [6]}, "duplicate row": {"count": 1, "lines": [4]}}
    assert s["image_labels"]["before_expansion"] == 1
    with pytest.raises(RowError, match=f"{path}: line 3: Confidence not 0 or 1"):
        run_prepare(data, tmp_path / "out", strict=True, split_names=TRAIN_ONLY, progress=False)


def test_missing_folder_and_split_notes(tmp_path):
    data = challenge_dir(tmp_path / "data", val=None)
    summary = run_prepare(data, tmp_path / "out", coco_splits=("train", "validation"), split_names=TRAIN_ONLY, progress=False)
    notes = " | ".join(summary["notes"])
    assert "train: no image folder train/" in notes and "missing-image check skipped" in notes
    assert "COCO export of train skipped: no image folder train/" in notes
    assert "COCO export of validation skipped: the split has no box file" in notes  # not among split_names
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "classes.csv", "hierarchy.json", "sources.json", "sources.mk", "summary.json", "train"]
    (data / "challenge-2019-train-detection-human-imagelabels.csv").unlink()
    summary = run_prepare(data, tmp_path / "out", split_names=TRAIN_ONLY, progress=False)
    assert "train: no image-label file" in " ".join(summary["notes"])
    assert pq.read_table(tmp_path / "out" / "train" / "image_labels.parquet").num_rows == 0


# ----------------------------------------------------------------------------------------------- expert groups


def test_expert_group_files(tmp_path):
    mids = list(read_classes(METADATA / "challenge-2019-classes-description-500.csv").mids)
    csv_file = tmp_path / "groups.csv"
    csv_file.write_text(f"group,MID\nfruit,{TOMATO}\nfruit,{APPLE}\nballs,/m/018xm\nfruit,{TOMATO}\n")
    groups = formats.read_expert_groups(csv_file, mids)
    order = sorted([TOMATO, APPLE], key=mids.index)
    assert groups == {"fruit": order, "balls": ["/m/018xm"]}
    yaml_file = tmp_path / "groups.yaml"
    yaml_file.write_text(f"fruit: ['{TOMATO}', '{APPLE}']\nballs: ['/m/018xm']\n")
    assert formats.read_expert_groups(yaml_file, mids) == groups
    csv_file.write_text(f"fruit,{TOMATO}\nfruit,/m/nope\n")
    with pytest.raises(DataError, match=f"{csv_file}: line 2: unknown MID '/m/nope'"):
        formats.read_expert_groups(csv_file, mids)
    csv_file.write_text(f"../up,{TOMATO}\n")
    with pytest.raises(DataError, match="line 1: group name '../up' is not a valid folder name"):
        formats.read_expert_groups(csv_file, mids)


def test_duplicate_detection_is_exact_even_with_hash_collisions(monkeypatch):
    rng = np.random.default_rng(0)
    keys = [rng.integers(0, 4, 300).astype(np.int32), rng.integers(0, 3, 300).astype(np.int16),
            rng.integers(0, 3, 300).astype(np.uint32)]
    candidates = rng.random(300) < 0.9
    expected, seen = np.zeros(300, bool), set()
    for i in np.flatnonzero(candidates):  # scalar reference: a later row equal to an earlier candidate row
        row = tuple(int(k[i]) for k in keys)
        expected[i] = row in seen
        seen.add(row)
    assert 0 < expected.sum() < candidates.sum()
    assert formats._duplicates(keys, candidates).tolist() == expected.tolist()
    monkeypatch.setattr(formats, "_mix", lambda h: h & np.uint64(1))  # almost every row collides
    assert formats._duplicates(keys, candidates).tolist() == expected.tolist()


def test_png_and_upper_case_jpg_folders_are_read_alike_by_every_stage(mini_data, mini_prepared, tmp_path):
    """One rule for an image folder (contracts.files.image_files): prepare, the dataset and submit.validate agree
    on a folder of .png, .JPG and .jpg files, and find what they found in the all-.jpg folder."""
    from PIL import Image

    from pipeline.datasets import OpenImagesPreparedDataset
    from submit import validate

    data = tmp_path / "data"
    (data / "validation").mkdir(parents=True)
    for name in ("challenge-2019-classes-description-500.csv", "challenge-2019-label500-hierarchy.json",
                 "challenge-2019-validation-detection-bbox.csv",
                 "challenge-2019-validation-detection-human-imagelabels.csv"):
        shutil.copy(mini_data / name, data / name)
    ids = sorted(p.stem for p in (mini_data / "validation").glob("*.jpg"))
    names = {}
    for i, image_id in enumerate(ids):
        source = mini_data / "validation" / f"{image_id}.jpg"
        names[image_id] = f"{image_id}{('.png', '.JPG', '.jpg')[i % 3]}"
        if i % 3 == 0:
            Image.open(source).save(data / "validation" / names[image_id])
        else:
            shutil.copy(source, data / "validation" / names[image_id])

    run_prepare(data, tmp_path / "prepared", split_names=("validation",), progress=False)
    for column in ("ImageID", "box_count"):
        assert pq.read_table(tmp_path / "prepared" / "validation" / "images.parquet")[column].to_pylist() == \
            pq.read_table(mini_prepared / "validation" / "images.parquet")[column].to_pylist()

    dataset = OpenImagesPreparedDataset(prepared_dir=str(tmp_path / "prepared"), split="validation",
                                        img_dir=str(data / "validation"), test_mode=True)
    paths = {dataset.get_data_info(i)["img_id"]: dataset.get_data_info(i)["img_path"] for i in range(len(dataset))}
    assert paths == {i: str(data / "validation" / names[i]) for i in paths} and len(paths) > 0

    submission = tmp_path / "submission.csv"
    submission.write_text("ImageId,PredictionString\n" + "".join(f"{i},\n" for i in ids))
    classes = str(data / "challenge-2019-classes-description-500.csv")
    assert validate.main([str(submission), "--classes", classes, "--images", str(data / "validation")]) == 0
    submission.write_text("ImageId,PredictionString\n" + "".join(f"{i},\n" for i in ids[1:]))
    assert validate.main([str(submission), "--classes", classes, "--images", str(data / "validation")]) == 1
