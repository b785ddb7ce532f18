"""The `make demo` results: one validation table of every stage, recorded run by run, and the per-class AP the
expert's classes come from.

``python tools/demo_report.py per-class --work W --model M --out CSV``: the per-class AP of model M's TTA predictions
on validation, for the classes with training boxes (those an expert can learn), in ``submit.score --per-class``'s
columns; ``python -m data_prep.experts --worst K`` picks the expert's classes from it.

``python tools/demo_report.py table --work W --models A B --averaged A-average:A --expert A-NAME:NAME --recipes R...
[--record RUNS.csv --wall-s S]`` scores each model at one scale and with TTA, the averaged checkpoint, the expert on
its classes and each fused recipe, appends the run to RUNS.csv (docs/demo_runs.csv, the one record of measured
demo runs) and prints the table, each gain with its range over every recorded run.

``python tools/demo_report.py docs [--runs RUNS.csv] [--page docs/demo.md]`` rewrites the table in the page from the
record (the latest run, ranges over all runs).

Model predictions are copied to their ancestor classes before scoring (as the ensemble stage does), because the
official metric does not expand predictions: without it a single model would be scored without its parent classes.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import io
from pathlib import Path

from contracts.classes import read_classes
from contracts.expansion import with_ancestors
from contracts.files import atomic_output
from contracts.hierarchy import Hierarchy
from contracts.metric import EvalResult, evaluate_expanded, expand_ground_truth, read_gt_boxes, read_gt_labels
from contracts.predictions import read_predictions
from data_prep.experts import train_box_counts
from data_prep.sources import read_sources
from submit.score import per_class_table, write_per_class

REPO = Path(__file__).resolve().parents[1]
RUNS_CSV = REPO / "docs" / "demo_runs.csv"
DEMO_PAGE = REPO / "docs" / "demo.md"
# One row per (run, table row). key: a model name, "averaged", "expert" or a recipe name; gain: against reference.
FIELDS = ("run", "date", "wall_s", "images", "key", "predictions", "single", "tta", "gain", "reference")
TABLE_BEGIN, TABLE_END = "<!-- demo-table: written by tools/demo_report.py docs -->", "<!-- /demo-table -->"


class Scorer:
    """The validation ground truth of a demo work folder, and scoring of its predictions."""

    def __init__(self, work: Path):
        self.work = work
        self.prepared = work / "prepared"
        sources = read_sources(self.prepared)
        self.classes = read_classes(self.prepared / "classes.csv")
        self.mids = list(self.classes.mids)
        self.hierarchy = Hierarchy.from_json(self.prepared / "hierarchy.json")
        self.gt = expand_ground_truth(read_gt_boxes(sources["validation_boxes"]),
                                      read_gt_labels(sources["validation_labels"]), self.hierarchy, self.mids)

    def predictions(self, name: str) -> Path:
        return self.work / "predictions" / name / "validation"

    def evaluate(self, path: Path, expand: bool = True) -> EvalResult:
        predictions = read_predictions(path)
        if expand:
            predictions = with_ancestors(predictions, self.hierarchy, self.mids)
        return evaluate_expanded(predictions, self.gt)

    def model(self, name: str) -> tuple[float, float]:
        """mAP of a model's single-scale variant and of its TTA predictions."""
        folder = self.predictions(name)
        return self.evaluate(single_scale_variant(folder)).map, self.evaluate(folder / "merged").map

    def fused(self, recipe: str) -> float:
        return self.evaluate(self.work / "ensemble" / recipe / "validation" / "predictions.parquet", False).map


def single_scale_variant(model_dir: Path) -> Path:
    """The smallest-scale, unflipped TTA variant folder (``s{scale}``) of one model's predictions."""
    variants = [p for p in model_dir.iterdir() if p.is_dir() and p.name.startswith("s") and p.name[1:].isdigit()]
    if not variants:
        raise FileNotFoundError(f"{model_dir}: no s<scale> variant folder (run infer with --keep-variants)")
    return min(variants, key=lambda p: int(p.name[1:]))


def mean_ap(result: EvalResult, mids: list[str]) -> float:
    table = result.per_class.set_index("MID")
    return float(table.loc[mids, "AP"].mean())


def write_model_per_class(scorer: Scorer, model: str, out: Path) -> None:
    """The per-class CSV of ``model``'s TTA predictions, restricted to the classes with training boxes."""
    result = scorer.evaluate(scorer.predictions(model) / "merged")
    _, counts = train_box_counts(scorer.prepared)
    table = per_class_table(result, scorer.classes)
    write_per_class(table[counts > 0].reset_index(drop=True), out)
    print(f"wrote {out}: AP of {int((counts > 0).sum())} classes with training boxes, mAP {result.map:.4f} "
          f"over all {int((result.per_class['num_gt'] > 0).sum())} classes with ground truth")


def measure(scorer: Scorer, models: list[str], averaged: list[tuple[str, str]], expert: tuple[str, str] | None,
            recipes: list[str]) -> list[dict]:
    """The table rows of one demo run: key, predictions, single, tta, gain and reference (None where absent)."""
    rows: list[dict] = []

    def row(key: str, name: str, single: float | None, tta: float, gain: float | None = None, reference: str = ""):
        rows.append(dict(key=key, predictions=name, single=single, tta=tta, gain=gain, reference=reference))

    tta_of: dict[str, float] = {}
    for model in models:
        single, tta = scorer.model(model)
        best = max(tta_of, key=tta_of.get) if tta_of else None
        row(model, model, single, tta, None if best is None else tta - tta_of[best], best or "")
        tta_of[model] = tta
    for name, source in averaged:
        single, tta = scorer.model(name)
        row("averaged", f"{source}, averaged checkpoints", single, tta, tta - tta_of[source], source)
        tta_of[name] = tta
    if expert is not None:
        name, group = expert
        mids = list(read_classes(scorer.prepared / "experts" / group / "classes.csv").mids)
        source = name.rsplit("-", 1)[0]
        folder = scorer.predictions(name)
        single = mean_ap(scorer.evaluate(single_scale_variant(folder)), mids)
        tta = mean_ap(scorer.evaluate(folder / "merged"), mids)
        base = mean_ap(scorer.evaluate(scorer.predictions(source) / "merged"), mids)
        names = ", ".join(scorer.classes.name_of(mid) for mid in mids)
        row("expert", f"expert {group} ({names}): mean AP", single, tta, tta - base, f"{source}'s {base:.4f} on them")
    reference = max(models, key=tta_of.get)   # the models the first recipe fuses
    value = tta_of[reference]
    for recipe in recipes:
        fused = scorer.fused(recipe)
        row(recipe, f"ensemble: {recipe}", None, fused, fused - value, reference)
        reference, value = recipe, fused
    return rows


def read_runs(path: Path) -> list[dict]:
    """The recorded rows, numbers as floats (None where empty), ``run`` as int."""
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["run"] = int(r["run"])
        for k in ("wall_s", "single", "tta", "gain"):
            r[k] = float(r[k]) if r[k] != "" else None
    return rows


def append_run(path: Path, rows: list[dict], images: int, wall_s: float | None) -> int:
    """Append one run's rows to the record (rewritten atomically) and return its run number."""
    recorded = read_runs(path)
    run = max((r["run"] for r in recorded), default=0) + 1
    date = datetime.date.today().isoformat()
    new = [dict(r, run=run, date=date, wall_s=wall_s, images=images) for r in rows]
    text = io.StringIO()
    writer = csv.DictWriter(text, FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in recorded + new:
        writer.writerow({k: ("" if r[k] is None else f"{r[k]:.4f}" if isinstance(r[k], float) and k != "wall_s"
                             else f"{r[k]:.0f}" if k == "wall_s" else r[k]) for k in FIELDS})
    with atomic_output(path) as f:
        f.write(text.getvalue().encode("utf-8"))
    return run


def render(recorded: list[dict]) -> str:
    """The latest run's table, each gain (the first model: its mAP with TTA) with its lowest-to-highest range over
    every recorded run; with two runs or more, a gain whose range holds 0 is marked (noise)."""
    runs = sorted({r["run"] for r in recorded})
    latest = [r for r in recorded if r["run"] == runs[-1]]
    first_key = latest[0]["key"]

    def measured(r: dict) -> float | None:
        return r["tta"] if r["key"] == first_key else r["gain"]

    ranges = {}
    for r in recorded:
        value = measured(r)
        if value is not None:
            lo, hi = ranges.get(r["key"], (value, value))
            ranges[r["key"]] = (min(lo, value), max(hi, value))
    header = ("predictions", "single scale", "with TTA", "TTA gain", "gain", f"gain in {len(runs)} run" + ("s" if len(runs) > 1 else ""))
    lines = []
    for r in latest:
        lo, hi = ranges.get(r["key"], (None, None))
        noise = len(runs) > 1 and r["gain"] is not None and lo is not None and lo <= 0 <= hi
        fmt = (lambda v: f"{v:.3f}") if r["key"] == first_key else (lambda v: f"{v:+.3f}")
        lines.append((r["predictions"], *("" if v is None else f"{v:.4f}" for v in (r["single"], r["tta"])),
                      "" if r["single"] is None else f"{r['tta'] - r['single']:+.4f}",
                      "" if r["gain"] is None else f"{r['gain']:+.4f} vs {r['reference']}" + (" (noise)" if noise else ""),
                      "" if lo is None else f"{fmt(lo)} to {fmt(hi)}"))
    widths = [max(len(c[k]) for c in lines + [header]) for k in range(len(header))]
    out = []
    for k, cells in enumerate([header] + lines):
        out.append("| " + " | ".join(c.ljust(w) if i in (0, 4) else c.rjust(w)
                                     for i, (c, w) in enumerate(zip(cells, widths))) + " |")
        if k == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    tta = [r["tta"] - r["single"] for r in recorded if r["single"] is not None]
    walls = [r["wall_s"] for r in recorded if r["wall_s"] is not None]
    latest_wall = latest[0]["wall_s"]
    out += ["", f"Run {runs[-1]} of {len(runs)} recorded in docs/demo_runs.csv ({latest[0]['date']}, "
                f"{latest[0]['images']} validation images" + (f", {latest_wall:.0f} s" if latest_wall else "") + "). "
            f"Over all {len(runs)}: TTA gained {min(tta):+.3f} to {max(tta):+.3f} per row"
            + (f"; wall time {min(walls):.0f} to {max(walls):.0f} s." if walls else ".")]
    return "\n".join(out)


def write_page(page: Path, runs_csv: Path) -> None:
    """Rewrite the table block of ``page`` from the record."""
    text = page.read_text(encoding="utf-8")
    if text.count(TABLE_BEGIN) != 1 or text.count(TABLE_END) != 1:
        raise SystemExit(f"error: {page} must hold {TABLE_BEGIN} and {TABLE_END} once each")
    head, rest = text.split(TABLE_BEGIN)
    _, tail = rest.split(TABLE_END)
    with atomic_output(page) as f:
        f.write(f"{head}{TABLE_BEGIN}\n{render(read_runs(runs_csv))}\n{TABLE_END}{tail}".encode("utf-8"))


def pair(text: str) -> tuple[str, str]:
    first, sep, second = text.partition(":")
    if not sep or not first or not second:
        raise argparse.ArgumentTypeError(f"expected NAME:OTHER, got {text!r}")
    return first, second


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    per_class = commands.add_parser("per-class", help="write one model's per-class AP CSV")
    table = commands.add_parser("table", help="score one demo run, record it and print the results table")
    docs = commands.add_parser("docs", help="rewrite the table in docs/demo.md from the record")
    for p in (per_class, table):
        p.add_argument("--work", type=Path, default=Path("work/demo"),
                       help="work folder of the demo (its prepared/ records the validation CSVs)")
    per_class.add_argument("--model", required=True, help="predictions folder name under WORK/predictions")
    per_class.add_argument("--out", required=True, type=Path, help="CSV to write")
    table.add_argument("--models", nargs="+", default=["mini_tsd", "mini_baseline"])
    table.add_argument("--averaged", nargs="*", type=pair, default=[], metavar="NAME:MODEL",
                       help="predictions NAME of MODEL's averaged checkpoint")
    table.add_argument("--expert", type=pair, metavar="NAME:GROUP",
                       help="predictions NAME of the expert of class group GROUP (prepared/experts/GROUP), named "
                            "MODEL-GROUP after the model it is fine-tuned from")
    table.add_argument("--recipes", nargs="*", default=["mini"], help="ensemble names under WORK/ensemble, in order")
    table.add_argument("--record", type=Path, metavar="RUNS.csv",
                       help="append this run to the record (docs/demo_runs.csv); without it, print only this run")
    table.add_argument("--wall-s", type=float, help="the demo's wall time, recorded with the run")
    docs.add_argument("--runs", type=Path, default=RUNS_CSV, help=f"the record (default {RUNS_CSV.relative_to(REPO)})")
    docs.add_argument("--page", type=Path, default=DEMO_PAGE, help=f"page to update (default {DEMO_PAGE.relative_to(REPO)})")
    args = parser.parse_args(argv)

    if args.command == "docs":
        write_page(args.page, args.runs)
        print(f"wrote the table of {args.page} from {args.runs}")
        return 0
    scorer = Scorer(args.work)
    if args.command == "per-class":
        write_model_per_class(scorer, args.model, args.out)
        return 0
    rows = measure(scorer, args.models, args.averaged, args.expert, args.recipes)
    images = len(scorer.gt.image_ids)
    if args.record is not None:
        append_run(args.record, rows, images, args.wall_s)
        recorded = read_runs(args.record)
    else:
        recorded = [dict(r, run=1, date=datetime.date.today().isoformat(), wall_s=args.wall_s, images=images)
                    for r in rows]
    print(f"\nValidation mAP (official Challenge 2019 metric, {images} images)")
    print(render(recorded))
    print("\nGains are with TTA; each ensemble is compared with the row above it, the first with the better single "
          "model. The last recipe\nis searched on these same validation images, so its gain is optimistic.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
