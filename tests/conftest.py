"""Shared fixtures: the bundled mini dataset and its prepared annotations, built once per test session."""
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def mini_data(tmp_path_factory) -> Path:
    """The mini dataset in the raw Challenge 2019 layout (seed 0)."""
    from data_prep.mini import write_mini_dataset

    return write_mini_dataset(tmp_path_factory.mktemp("mini") / "data", seed=0)


@pytest.fixture(scope="session")
def mini_prepared(mini_data, tmp_path_factory) -> Path:
    """`make prepare` output for the mini dataset (defaults plus the COCO export of both splits)."""
    from data_prep.prepare import run_prepare

    out = tmp_path_factory.mktemp("prepared") / "prepared"
    run_prepare(mini_data, out, coco_splits=("train", "validation"))
    return out
