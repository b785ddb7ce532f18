"""Shared fixtures: the bundled mini dataset and its prepared annotations, built once per test session (once per
worker under pytest-xdist, as `make test` runs it)."""
import os
from pathlib import Path

import pytest

if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    # each worker, with the processes its tests start, takes its share of the cores: torch reads this at import, and
    # two workers of two threads each on two cores run slower than one (OpenMP threads wait spinning)
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))


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


def pytest_collection_modifyitems(items):
    """The slow tests first, so that with several workers the longest start at once."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
