"""The README's "Real data" walkthrough, run verbatim on a generated full-format data folder outside the repository,
and the V6 layout through the targets that read the layout (prepare, ensemble, evaluate, submission).

The commands are read from the README's block after ``<!-- real-data-walkthrough -->``, so the README and this test
cannot drift. The data folders hold the real 500-class (Challenge 2019 names) or 601-class (V6 names) class file
and hierarchy, train / validation / test JPEGs (the mini dataset's images and boxes, whose MIDs are real challenge
classes), the box and image-label CSVs in that release's layout, and ``sample_submission.csv``. The only changes
to the commands: the data path, ``GPUS=1`` for ``GPUS=8``, and, through the environment (variables the block does
not set), a tiny stand-in config for each model (CONFIGS), a private work root (WORK_ROOT), ADAPT_CLASSES=1 (the
stand-ins are mini-dataset configs) and one test-time scale without flip (INFER_OPTS).
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.helpers import METADATA, REPO
from contracts.classes import read_classes
from contracts.predictions import COLUMNS
from data_prep.mini import write_mini_dataset

MARKER = "<!-- real-data-walkthrough -->"
README_DATA = "/data/oid2019"
MODELS = ("x101_tsd", "cascade_r50_tsd", "r152_tsd")
V6_NAMES = {  # mini (Challenge 2019) name -> V6 name
    "challenge-2019-train-detection-bbox.csv": "oidv6-train-annotations-bbox.csv",
    "challenge-2019-validation-detection-bbox.csv": "validation-annotations-bbox.csv",
    "challenge-2019-train-detection-human-imagelabels.csv": "oidv6-train-annotations-human-imagelabels.csv",
    "challenge-2019-validation-detection-human-imagelabels.csv": "validation-annotations-human-imagelabels-boxable.csv",
}
V6_BOX_HEADER = ("ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,"
                 "IsDepiction,IsInside,XClick1X,XClick2X,XClick3X,XClick4X,XClick1Y,XClick2Y,XClick3Y,XClick4Y")


def walkthrough() -> str:
    """The bash block that follows the marker in README.md."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert text.count(MARKER) == 1, f"README.md must hold the marker {MARKER} once"
    match = re.match(r"\s*```bash\n(.*?)```", text.split(MARKER, 1)[1], re.S)
    assert match, f"a ```bash block must follow {MARKER}"
    return match.group(1)


def _rewrite_csv(path: Path, out: Path, header: str, row) -> None:
    with open(path, newline="") as f_in, open(out, "w", newline="") as f_out:
        reader = csv.DictReader(f_in)
        f_out.write(header + "\n")
        for record in reader:
            f_out.write(",".join(row(record)) + "\n")
    path.unlink()


def to_v6(data: Path) -> None:
    """Rename the mini files to V6 names and layouts (21-column train boxes, 13-column validation boxes, 4-column
    validation labels) and use the 601-class boxable class file and hierarchy."""
    (data / "challenge-2019-classes-description-500.csv").unlink()
    (data / "challenge-2019-label500-hierarchy.json").unlink()
    shutil.copy(METADATA / "class-descriptions-boxable.csv", data)
    shutil.copy(METADATA / "bbox_labels_600_hierarchy.json", data)
    train, val = (data / n for n in list(V6_NAMES)[:2])
    _rewrite_csv(train, data / V6_NAMES[train.name], V6_BOX_HEADER, lambda r: [
        *r.values(), r["XMin"], r["XMax"], r["XMin"], r["XMax"], r["YMin"], r["YMin"], r["YMax"], r["YMax"]])
    _rewrite_csv(val, data / V6_NAMES[val.name], V6_BOX_HEADER.rsplit(",XClick1X", 1)[0], lambda r: [
        r["ImageID"], "xclick", r["LabelName"], "1", r["XMin"], r["XMax"], r["YMin"], r["YMax"], "0", "0",
        r["IsGroupOf"], "0", "0"])
    labels = data / "challenge-2019-validation-detection-human-imagelabels.csv"
    _rewrite_csv(labels, data / V6_NAMES[labels.name], "ImageID,Source,LabelName,Confidence",
                 lambda r: [r["ImageID"], "verification", r["LabelName"], r["Confidence"]])
    train_labels = data / "challenge-2019-train-detection-human-imagelabels.csv"
    train_labels.rename(data / V6_NAMES[train_labels.name])


def make_data(root: Path, layout: str) -> Path:
    data = write_mini_dataset(root / "oid2019", seed=3, masks=False, n_train=40, n_validation=24, n_test=12)
    for name in ("README.txt", "dataset.json"):  # a real download has neither
        (data / name).unlink()
    if layout == "challenge":
        shutil.copy(METADATA / "challenge-2019-classes-description-500.csv", data)
        shutil.copy(METADATA / "challenge-2019-label500-hierarchy.json", data)
    else:
        to_v6(data)
    return data


def stand_in_configs(folder: Path) -> Path:
    """A tiny CPU config under each real model's name: mini_tsd trained 2 iterations at batch 2 without
    validation, one test-time scale, 10 proposals per image (an untrained head scores every one of its 500 or
    601 classes above the score threshold, and mmcv's NMS goes class by class beyond 10,000 boxes)."""
    folder.mkdir()
    for model in MODELS:
        (folder / f"{model}.py").write_text(
            f"_base_ = {str(REPO / 'configs' / 'mini_tsd.py')!r}\n"
            "tta_scales = [160]\n"
            "train_cfg = dict(max_iters=2, val_interval=2)\n"
            "train_dataloader = dict(batch_size=2)\n"
            "val_dataloader = val_cfg = val_evaluator = None\n"
            "default_hooks = dict(checkpoint=dict(interval=2))\n"
            "model = dict(test_cfg=dict(rpn=dict(max_per_img=10)))\n")
    return folder


def run_script(script: str, data: Path, work_root: Path, configs: Path) -> subprocess.CompletedProcess:
    script = script.replace(README_DATA, str(data)).replace("GPUS=8", "GPUS=1")
    env = dict(os.environ, CONFIGS=str(configs), WORK_ROOT=str(work_root), ADAPT_CLASSES="1",
               INFER_OPTS="--no-flip", MAKEFLAGS="--no-print-directory")
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=REPO, env=env, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def challenge_run(tmp_path_factory):
    """The whole walkthrough, verbatim, on a Challenge 2019 layout folder: (data, work root, make's output)."""
    root = tmp_path_factory.mktemp("walkthrough")
    script = walkthrough()
    assert README_DATA in script and "make prepare DATA=" in script
    data = make_data(root, "challenge")
    work_root = root / "work"
    result = run_script(script, data, work_root, stand_in_configs(root / "configs"))
    return data, work_root, result


def check_outputs(data: Path, work_root: Path, stdout: str, layout: str, trained: bool = True) -> None:
    work = work_root / "oid2019"
    assert (work_root / "CURRENT").read_text().strip() == str(work)
    sources = json.loads((work / "prepared" / "sources.json").read_text())
    assert sources["data_dir"] == str(data.resolve())
    expected_val = "validation-annotations-bbox.csv" if layout == "v6" else \
        "challenge-2019-validation-detection-bbox.csv"
    assert Path(sources["validation_boxes"]).name == expected_val
    classes = read_classes(work / "prepared" / "classes.csv")
    assert len(classes) == (601 if layout == "v6" else 500)
    for model in MODELS:
        if trained:
            assert (work / "models" / model / "last_checkpoint").is_file()
        for split in ("validation", "test"):
            shard = work / "predictions" / model / split / "merged" / "shard-000-of-001.parquet"
            assert pq.read_schema(shard).names == COLUMNS
    for split in ("validation", "test"):
        fused = pd.read_parquet(work / "ensemble" / "challenge" / split / "predictions.parquet")
        assert len(fused) and set(fused["LabelName"]) <= set(classes.mids)
    assert (work / "eval" / "challenge" / "per_class.csv").is_file()
    assert re.search(r"^mAP: 0\.\d{6}$", stdout, re.M), stdout[-2000:]
    submission = work / "submission" / "challenge.csv"
    assert f"OK {submission}" in stdout
    rows = pd.read_csv(submission, keep_default_na=False)
    assert sorted(rows["ImageId"]) == sorted(p.stem for p in (data / "test").glob("*.jpg"))
    assert not (REPO / "work" / "oid2019").exists()


@pytest.mark.slow
def test_readme_walkthrough_runs_verbatim(challenge_run):
    data, work_root, result = challenge_run
    check_outputs(data, work_root, result.stdout, "challenge")


@pytest.mark.slow
def test_v6_layout_through_the_targets_that_read_it(challenge_run, tmp_path):
    """The V6 names and columns (601 classes) through the walkthrough's prepare, ensemble, evaluate and submission
    lines, verbatim; training and prediction do not read the layout, so the challenge run's predictions stand in."""
    script = walkthrough()
    lines = [line for line in script.splitlines()
             if line.startswith(("make prepare", "make ensemble", "make evaluate", "make submission"))]
    assert len(lines) == 5, lines
    data = make_data(tmp_path, "v6")
    work_root = tmp_path / "work"
    (work_root / "oid2019").mkdir(parents=True)
    (work_root / "oid2019" / "predictions").symlink_to(challenge_run[1] / "oid2019" / "predictions")
    result = run_script("\n".join(lines) + "\n", data, work_root, tmp_path)
    check_outputs(data, work_root, result.stdout, "v6", trained=False)
