"""The docs hold no hand-typed results that can drift: the demo table is computed from the record of demo runs, and
every relative link in the README and docs/ names a file that exists."""
from __future__ import annotations

import importlib.util
import re
import shutil

import pytest

from tests.helpers import REPO

spec = importlib.util.spec_from_file_location("demo_report", REPO / "tools" / "demo_report.py")
demo_report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(demo_report)


def test_demo_page_table_is_computed_from_the_record():
    page = (REPO / "docs" / "demo.md").read_text(encoding="utf-8")
    block = page.split(demo_report.TABLE_BEGIN)[1].split(demo_report.TABLE_END)[0]
    assert block.strip() == demo_report.render(demo_report.read_runs(demo_report.RUNS_CSV)).strip()


def test_a_recorded_run_widens_the_ranges_and_marks_sign_changes(tmp_path):
    runs = shutil.copy(demo_report.RUNS_CSV, tmp_path / "runs.csv")
    first = demo_report.read_runs(runs)
    latest = max(r["run"] for r in first)
    rows = [dict(key=r["key"], predictions=r["predictions"], single=r["single"], tta=r["tta"], gain=r["gain"],
                 reference=r["reference"]) for r in first if r["run"] == latest]
    baseline = next(r for r in rows if r["key"] == "mini_baseline")
    baseline["gain"] = -baseline["gain"]  # the gain changes sign in the new run
    assert demo_report.append_run(runs, rows, images=60, wall_s=600.4) == latest + 1
    recorded = demo_report.read_runs(runs)
    assert [r for r in recorded if r["run"] <= latest] == first  # earlier runs untouched
    table = demo_report.render(recorded)
    assert f"gain in {latest + 1} runs" in table
    line = next(l for l in table.splitlines() if l.startswith("| mini_baseline "))
    gains = [r["gain"] for r in first if r["key"] == "mini_baseline"] + [baseline["gain"]]
    lo, hi = min(gains), max(gains)
    assert "(noise)" in line and f"{lo:+.3f} to {hi:+.3f}" in line
    assert "(noise)" not in next(l for l in table.splitlines() if l.startswith("| ensemble: mini_search "))
    assert "600 s" in table


@pytest.mark.parametrize("page", ["README.md", "CHANGES.md", *sorted(p.relative_to(REPO).as_posix()
                                                                     for p in (REPO / "docs").glob("*.md"))])
def test_relative_links_resolve(page):
    path = REPO / page
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text(encoding="utf-8")):
        if "://" in target:
            continue
        assert (path.parent / target).exists(), f"{page} links to {target}, which does not exist"
