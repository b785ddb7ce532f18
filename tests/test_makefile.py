"""The Makefile's own rules: what a dataset needs follows from the dataset however its path is spelled, prepare skips
work when nothing changed, and cleaning never takes a real dataset's work folder without being told its name."""
from __future__ import annotations

import shutil

import pytest

from tests.helpers import run_make


def make(*args, check=True):
    return run_make(*map(str, args), timeout=240, check=check)


@pytest.fixture
def datasets(mini_data, tmp_path):
    """The mini dataset (with its dataset.json) and a copy without it, as a real download is."""
    mini = shutil.copytree(mini_data, tmp_path / "mini")
    real = shutil.copytree(mini_data, tmp_path / "oid2019")
    (real / "dataset.json").unlink()
    return mini, real, tmp_path / "work"


@pytest.mark.timeout(300)
def test_recipe_and_coco_export_follow_the_dataset_and_prepare_skips_unchanged_work(datasets):
    mini, real, work_root = datasets
    # the mini dataset spelled with a trailing slash and through "..": still its own recipe and COCO export
    spelled = f"{mini.parent}/../{mini.parent.name}/mini/"
    first = make("prepare", f"DATA={spelled}", f"WORK_ROOT={work_root}")
    assert "wrote" in first.stdout
    prepared = work_root / "mini" / "prepared"
    assert (prepared / "coco" / "train.json").is_file() and (prepared / "coco" / "validation.json").is_file()
    assert "--recipe configs/ensemble/mini.yaml" in make("-n", "ensemble", f"WORK_ROOT={work_root}").stdout
    # nothing changed: make does nothing; new options: it prepares again
    assert "data_prep" not in make("prepare", f"WORK_ROOT={work_root}").stdout
    again = make("prepare", f"WORK_ROOT={work_root}", "PREPARE_OPTS=--expand-boxes")
    assert "--expand-boxes" in again.stdout and "wrote" in again.stdout

    make("prepare", f"DATA={real}", f"WORK_ROOT={work_root}")
    assert not (work_root / "oid2019" / "prepared" / "coco").exists()
    assert "--recipe configs/ensemble/challenge.yaml" in make("-n", "ensemble", f"WORK_ROOT={work_root}").stdout


def test_cleaning_keeps_real_work_unless_it_is_named(tmp_path):
    work_root = tmp_path / "work"
    (work_root / "oid2019" / "models").mkdir(parents=True)
    plan = make("-n", "clean", f"WORK_ROOT={work_root}").stdout
    assert str(work_root / "demo") in plan and str(work_root / "mini") in plan
    assert "oid2019" not in plan
    refused = make("clean-work", f"WORK_ROOT={work_root}", check=False)
    assert refused.returncode == 2 and "make clean-work WORK=work/NAME" in refused.stderr
    assert (work_root / "oid2019" / "models").is_dir()
    make("clean-work", f"WORK={work_root / 'oid2019'}", f"WORK_ROOT={work_root}")
    assert not (work_root / "oid2019").exists()
