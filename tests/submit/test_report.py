"""``python -m submit.score --report DIR``: the self-contained evaluation page, on the mini dataset with predictions
made from its ground truth."""
from __future__ import annotations

import contextlib
import csv
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from submit.score import main as score_main

from tests.submit.test_show import BOXES, CLASSES, HIERARCHY, LABELS, predictions_from_truth


class Page(HTMLParser):
    """The attributes naming other files, the per-class table's cells, and the script bodies of a page."""

    def __init__(self, text: str):
        super().__init__()
        self.references: list[str] = []
        self.header: list[str] = []
        self.rows: list[list[str]] = []
        self.scripts: list[str] = []
        self._in_table = self._in_script = False
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.references += [v for k, v in attrs.items() if k in ("src", "href", "data", "poster", "action")]
        if tag == "table" and attrs.get("id") == "per-class":
            self._in_table = True
        elif self._in_table and tag == "tr":
            self.rows.append([])
        elif self._in_table and tag in ("td", "th"):
            self._cell = []
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_table = False
        elif self._cell is not None and tag in ("td", "th"):
            self.rows[-1].append("".join(self._cell))
            self._cell = None
        elif tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._in_script:
            self.scripts.append(data)


def score_args(data: Path, predictions: Path) -> list[str]:
    return ["--submission", str(predictions), "--boxes", str(data / BOXES), "--labels", str(data / LABELS),
            "--classes", str(data / CLASSES), "--hierarchy", str(data / HIERARCHY)]


@pytest.fixture(scope="module")
def scored(mini_data, tmp_path_factory):
    """Score runs with --per-class, then with --report and --images too; returns (work folder, stdout lines of
    each)."""
    work = tmp_path_factory.mktemp("report")
    predictions_from_truth(mini_data).to_parquet(work / "p.parquet")
    args = score_args(mini_data, work / "p.parquet")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert score_main([*args, "--per-class", str(work / "ap.csv")]) == 0
        plain = out.getvalue().splitlines()
        out.truncate(0)
        out.seek(0)
        assert score_main([*args, "--per-class", str(work / "ap.csv"), "--report", str(work / "report"),
                           "--images", str(mini_data / "validation")]) == 0
    return work, plain, out.getvalue().splitlines()


def test_report_keeps_the_score_output_and_names_the_page(scored):
    work, plain, with_report = scored
    assert with_report[-1] == plain[-1] and with_report[-1].startswith("mAP: ")
    assert f"report: {work / 'report' / 'index.html'}" in with_report
    page = (work / "report" / "index.html").read_text()
    assert f"mAP {plain[-1].split()[1]}" in page
    assert re.search(r"images evaluated</td><td class=n>60<", page)
    assert "classes evaluated (with ground truth)</td><td class=n>13 of 13<" in page


def test_per_class_rows_equal_the_csv(scored):
    work = scored[0]
    page = Page((work / "report" / "index.html").read_text())
    header, *rows = page.rows
    assert header[:5] == ["class", "MID", "AP", "ground-truth boxes", "detections"]
    with open(work / "ap.csv", newline="") as f:
        expected = {r["MID"]: [r["DisplayName"], r["MID"], r["AP"], r["num_gt"], r["num_dets"]]
                    for r in csv.DictReader(f)}
    assert len(rows) == len(expected) == 13
    assert {r[1]: r[:5] for r in rows} == expected
    aps = [float(r[2]) for r in rows if r[2]]
    assert aps == sorted(aps)  # worst first


def test_page_is_self_contained(scored):
    root = (scored[0] / "report").resolve()
    text = (root / "index.html").read_text()
    page = Page(text)
    assert not re.search(r"https?:|ftp:|//[a-z]|url\(|@import|<link|fetch\(|XMLHttpRequest", text, re.I)
    assert "<script src" not in text and page.scripts  # the sort script is inline
    anchors = [r for r in page.references if r.startswith("#")]
    assert all(f"id={a[1:]}>" in text for a in anchors)  # in-page links only
    files = [r for r in page.references if not r.startswith("#")]
    assert len(files) >= 2 + 5  # two plots and the worst classes' pictures
    for ref in files:
        target = (root / ref).resolve()
        assert root in target.parents and target.is_file(), ref
    examples = [r for r in page.references if r.startswith("examples/")]
    assert examples and all(r.endswith(".jpg") for r in examples)
    assert sorted(p.name for p in (root / "examples").iterdir()) == sorted(r[len("examples/"):] for r in examples)
    assert (root / "ap_by_frequency.png").read_bytes()[:4] == b"\x89PNG"


def test_hierarchy_section_compares_parents_with_their_leaves(scored):
    text = (scored[0] / "report" / "index.html").read_text()
    section = text[text.index("<h2 id=hierarchy>"):text.index("<h2 id=worst>")]
    for parent in ("Fruit", "Vegetable", "Squash", "Ball"):
        assert f"<td>{parent}</td>" in section
    assert "ap_by_level.png" in section


def test_rerun_writes_identical_bytes_and_images_need_report(scored, mini_data, capsys):
    work = scored[0]
    before = {p.relative_to(work): p.read_bytes() for p in (work / "report").rglob("*") if p.is_file()}
    args = score_args(mini_data, work / "p.parquet")
    assert score_main([*args, "--report", str(work / "report"), "--images", str(mini_data / "validation"),
                       "--quiet"]) == 0
    after = {p.relative_to(work): p.read_bytes() for p in (work / "report").rglob("*") if p.is_file()}
    assert after == before
    assert score_main([*args, "--report", str(work / "plain"), "--quiet"]) == 0
    assert "pass --images DIR" in (work / "plain" / "index.html").read_text()
    assert not (work / "plain" / "examples").exists()
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        score_main([*args, "--images", str(mini_data / "validation")])
    assert stop.value.code == 2 and "give --report DIR too" in capsys.readouterr().err
    assert score_main([*args, "--report", str(work / "x"), "--images", str(work / "missing")]) == 2
    assert capsys.readouterr().err.strip() == f"error: image folder not found: {work / 'missing'}"
