"""python -m ensemble.search: a greedy search, on validation, for the ensemble recipe with the best mAP.

Candidates are the validation predictions of several models, each with the class file it covers if it is an expert
(see docs/fusion.md). The search starts from the best single candidate, then at each step adds the candidate,
weight (``--weights``) and fusion settings (``--methods`` x ``--iou-thrs``) that raise the mAP most, and stops when
the best step gains less than ``--min-gain``. Trials are run in a fixed order (candidates as given, then weights,
then settings) and a later trial replaces the best only when strictly better, so the same inputs give the same
recipe.

Every trial recipe is scored with the official metric (``contracts.metric``) on what ``python -m ensemble`` writes
for it: the predictions go through the runner's own ``partition`` and ``fuse_block`` (fusion, score threshold,
ancestor copies, cap per image), with the class list the runner would build. What differs is only the plumbing:
the predictions are read once, into one memory-mapped RECORD file sorted by image; the ground truth is expanded
once; blocks of images are fused by ``--jobs`` threads (the compiled kernels release the GIL, so nothing is copied
between processes), which write only the rows of verified (image, class) pairs (the metric ignores every other row)
and match them against their images' ground truth (``match_entries``); the AP of the entries, concatenated in image
order, is that of the whole output (``evaluate_entries``).

The written recipe is a normal one: paths below ``--prepared`` or ``--work`` start with ``{prepared}`` or
``{work}``, and path components equal to ``--split`` read ``{split}``, so that ``make ensemble RECIPE=OUT
SPLIT=test`` applies it to the test predictions.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from tqdm import tqdm

from contracts.classes import read_classes
from contracts.cli import entry_point
from contracts.files import atomic_output
from contracts.hierarchy import Hierarchy
from contracts.metric import (Entries, GroundTruth, evaluate_entries, expand_ground_truth, match_entries, read_gt_boxes,
                              read_gt_labels)
from contracts.predictions import input_files

from .recipe import METHODS, Recipe, expand_placeholders, insert_placeholders, parse_recipe
from .runner import RECORD, Fusion, class_list, coverage, fuse_block, make_fusion, partition, scan_inputs, spilled


@dataclass(frozen=True)
class Candidate:
    """One model's validation predictions (a file, folder or glob) and the class file it covers (None: all)."""

    path: str
    classes: str | None = None


@dataclass(frozen=True)
class Step:
    """One accepted step of the search: the candidate added (its position), its weight, the fusion settings of the
    whole recipe from then on, the mAP and the gain over the previous step (None for the first)."""

    candidate: int
    weight: float
    method: str
    params: dict
    map: float
    gain: float | None


def _verified_pairs(gt_image: np.ndarray, class_of_gt: np.ndarray, n_classes: int, gt: GroundTruth) -> np.ndarray:
    """The verified (image, class) pairs of a block whose ground truth is ``gt`` (``GroundTruth.of_images``), as an
    (I, n_classes) mask: images as the block numbers them (``gt_image``: each one's number in the ground truth, -1
    where it has none), classes as the class list does (``class_of_gt``: each ground-truth class's number, -1 for
    a class outside the class list)."""
    known = np.flatnonzero(gt_image >= 0)  # the block's images with ground truth, ascending in both numberings
    image, cls = np.divmod(gt.verified_keys, len(gt.mids))
    at = np.minimum(np.searchsorted(gt_image[known], image), max(len(known) - 1, 0))
    hit = (gt_image[known[at]] == image) & (class_of_gt[cls] >= 0) if len(known) else np.zeros(len(image), bool)
    wanted = np.zeros((len(gt_image), n_classes), bool)
    wanted[known[at[hit]], class_of_gt[cls[hit]]] = True
    return wanted


def _score_block(fusion: Fusion, records: np.ndarray, bounds: np.ndarray, first: int, image_ids: Sequence[str],
                 gt_image: np.ndarray, gt_class: np.ndarray, wanted: np.ndarray, gt: GroundTruth) -> Entries:
    """The metric's entries of ``fuse_block``'s output on the block's images, whose ground truth is ``gt``
    (``GroundTruth.of_images``): ``fuse_block`` writes only the rows of the verified pairs ``wanted``
    (``_verified_pairs``), numbered then as the ground truth numbers images (``gt_image``, per block image) and
    classes (``gt_class``, per class number)."""
    rows, _ = fuse_block(fusion, records, bounds, first, image_ids, wanted)
    return match_entries(gt_image[rows["image"] - first], gt_class[rows["label"]], rows["score"], rows["box"], gt)


class Evaluator:
    """The candidates' validation predictions, read once, and the expanded ground truth: scores recipes.

    Use as a context manager: it holds the memory-mapped predictions (in a temporary folder in ``spill_root``) and
    the ``jobs`` threads that score blocks of images."""

    def __init__(self, candidates: Sequence[Candidate], gt: GroundTruth, hierarchy: Hierarchy, hierarchy_source: str,
                 spill_root: str | Path, jobs: int = 2, block_images: int = 250):
        self.candidates, self.gt, self.block_images = list(candidates), gt, block_images
        self._spill = tempfile.TemporaryDirectory(dir=spill_root, prefix=".search-")
        try:
            self._read(hierarchy, hierarchy_source, jobs)
        except BaseException:
            self._spill.cleanup()
            raise
        self._pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="search")

    def _read(self, hierarchy: Hierarchy, hierarchy_source: str, jobs: int) -> None:
        files = [input_files(c.path) for c in self.candidates]
        self.images, mids = scan_inputs(files)
        if not self.images:
            raise ValueError(f"{self.candidates[0].path}: no predictions in any candidate")
        self.mids, self.expansion = class_list(mids, hierarchy, hierarchy_source)
        self.covered = [coverage(c.classes, self.mids) for c in self.candidates]
        spill = Path(self._spill.name)
        dropped = partition(files, self.images, self.mids, len(self.images), spill, self.covered, jobs)
        for c, n in zip(self.candidates, dropped):
            if n:
                tqdm.write(f"search: {c.path}: {n:,} boxes of classes outside {c.classes} left out", file=sys.stderr)
        # every candidate's rows sorted by image, candidate after candidate, in one file; the workers read its
        # memory map (this process keeps no copy); those of candidate m and image i at bounds[m, i]:bounds[m, i + 1]
        self.bounds, start = np.zeros((len(self.candidates), len(self.images) + 1), np.int64), 0
        with open(spill / "records.bin", "wb") as out:
            for m in range(len(self.candidates)):
                records = spilled(spill, 0, m)
                for path in spill.glob(f"000000-{m:03d}-*.bin"):
                    path.unlink()
                records = records[np.argsort(records["image"], kind="stable")]
                self.bounds[m] = start + np.searchsorted(records["image"], np.arange(len(self.images) + 1))
                records.tofile(out)
                start += len(records)
        # copy-on-write (nothing writes to it): writable arrays, as the runner's, so the kernels compile once for both
        self.records = np.memmap(spill / "records.bin", RECORD, mode="c") if start else np.empty(0, RECORD)
        self.gt_image = pd.Index(self.gt.image_ids).get_indexer(self.images)
        self.gt_class = pd.Index(self.gt.mids).get_indexer(self.mids)
        class_of_gt = pd.Index(self.mids).get_indexer(self.gt.mids)
        # each block is matched against its part of the ground truth and its verified pairs, the same in every
        # trial; matching reads neither the ImageIDs nor the source rows
        matched = replace(self.gt, image_ids=self.gt.image_ids[:0], box_row=None)
        self._blocks = []
        for first in range(0, len(self.images), self.block_images):
            stop = min(first + self.block_images, len(self.images))
            known = self.gt_image[first:stop][self.gt_image[first:stop] >= 0]
            part = matched.of_images(*((known.min(), known.max() + 1) if len(known) else (0, 0)))
            wanted = _verified_pairs(self.gt_image[first:stop], class_of_gt, len(self.mids), part)
            self._blocks.append((first, stop, part, wanted))

    def __enter__(self) -> Evaluator:
        return self

    def __exit__(self, *exc) -> None:
        self._pool.shutdown(cancel_futures=True)
        self._spill.cleanup()

    def _entries(self, recipe: Recipe, members: Sequence[int]) -> list[Entries]:
        fusion = make_fusion(recipe, self.mids, [self.covered[m] for m in members], self.expansion)
        members = list(members)

        def block(first: int, stop: int, part: GroundTruth, wanted: np.ndarray) -> Entries:
            return _score_block(fusion, self.records, self.bounds[members, first:stop + 1], first,
                                self.images[first:stop], self.gt_image[first:stop], self.gt_class, wanted, part)

        # ensemble-boxes' box warnings (python -m ensemble gives them once per recipe), set aside here: the filters
        # are global, and a thread's own catch_warnings would restore them under the others
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return list(self._pool.map(block, *zip(*self._blocks)))

    def score(self, recipe: Recipe, members: Sequence[int]) -> float:
        """Validation mAP of ``recipe`` (input k is candidate ``members[k]``): the official metric on the rows of
        verified (image, class) pairs that ``python -m ensemble`` writes for it (the metric ignores the others)."""
        return evaluate_entries(self._entries(recipe, members), self.gt).map

    def scores(self, trials: Iterable[tuple[Recipe, Sequence[int]]]) -> Iterator[float]:
        """The mAP of each (recipe, members) trial, in order. The AP of a trial (from the workers' matching) is
        computed in a thread while the workers fuse and match the next one, so that no core waits for the other."""
        with ThreadPoolExecutor(max_workers=1) as metric:
            pending = None
            for recipe, members in trials:
                parts = self._entries(recipe, members)
                if pending is not None:
                    yield pending.result().map
                pending = metric.submit(evaluate_entries, parts, self.gt)
            if pending is not None:
                yield pending.result().map


def settings_grid(methods: Sequence[str], iou_thrs: Sequence[float], conf_type: str = "avg",
                  skip_box_thr: float = 0.0) -> list[tuple[str, dict]]:
    """(method, params) pairs: each method with each ``iou_thr``, except soft_nms (its gaussian decay has no IoU
    threshold: tried once, with its defaults)."""
    grid = []
    for method in methods:
        if method == "soft_nms":
            grid.append((method, {}))
            continue
        for iou_thr in iou_thrs:
            extra = {"skip_box_thr": skip_box_thr, "conf_type": conf_type} if method == "wbf" else {}
            grid.append((method, {"iou_thr": iou_thr, **extra}))
    return grid


class Search:
    """Builds the trial recipes and runs the greedy search over an Evaluator's candidates."""

    def __init__(self, evaluator: Evaluator, written: Sequence[Candidate], hierarchy: str, score_thr: float,
                 max_per_image: int | None, name: str):
        self.evaluator, self.written, self.name = evaluator, list(written), name
        self.common = {"hierarchy": hierarchy, "score_thr": score_thr, "max_per_image": max_per_image}

    def recipe(self, chosen: Sequence[tuple[int, float]], method: str, params: dict) -> dict:
        """The recipe (YAML mapping) of candidates ``chosen`` ((position, weight) pairs) fused by ``method``."""
        inputs = []
        for m, weight in chosen:
            entry = {"path": self.written[m].path, "weight": int(weight) if float(weight).is_integer() else weight}
            if self.written[m].classes is not None:
                entry["classes"] = self.written[m].classes
            inputs.append(entry)
        raw = {"inputs": inputs, "method": method, "params": dict(params), **self.common}
        return {k: v for k, v in raw.items() if v is not None}

    def trial(self, chosen: Sequence[tuple[int, float]], candidate: int, weight: float, method: str,
              params: dict) -> Recipe:
        """The checked recipe of ``chosen`` plus ``candidate`` with ``weight``, fused by ``method``."""
        raw = self.recipe([*chosen, (candidate, weight)], method, params)
        return parse_recipe(raw, self.name, f"search trial {method} {params}")

    def run(self, weights: Sequence[float], settings: Sequence[tuple[str, dict]], min_gain: float,
            progress: bool = True) -> tuple[list[Step], Step | None]:
        """The accepted steps, and the best rejected one (None when every candidate was added)."""
        steps: list[Step] = []
        chosen: list[tuple[int, float]] = []
        while len(chosen) < len(self.written):
            used = {m for m, _ in chosen}
            trials = [(m, w, s) for m in range(len(self.written)) if m not in used
                      for w in (weights if chosen else [1.0]) for s in settings]
            recipes = ((self.trial(chosen, m, w, method, params), [*(c for c, _ in chosen), m])
                       for m, w, (method, params) in trials)
            values = self.evaluator.scores(recipes)
            best = None
            for (m, w, (method, params)), value in zip(trials, tqdm(values, total=len(trials), unit="recipe",
                                                                      desc=f"search: step {len(steps) + 1}",
                                                                      disable=not progress)):
                if best is None or value > best.map:
                    best = Step(m, w, method, params, value, value - steps[-1].map if steps else None)
            if steps and best.gain < min_gain:
                return steps, best
            chosen.append((best.candidate, best.weight))
            steps.append(best)
            if progress:
                tqdm.write(f"search: step {len(steps)}: {self.written[best.candidate].path} weight {best.weight:g}, "
                           f"{best.method} {best.params}: mAP {best.map:.6f}", file=sys.stderr)
        return steps, None


def _floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")
    return values


def _methods(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise argparse.ArgumentTypeError(f"methods must be among {sorted(METHODS)}, got {text!r}")
    return methods


def read_candidates(path: str | Path) -> list[Candidate]:
    """A candidates YAML: a list of paths or ``{path, classes}`` mappings."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"candidates file not found: {path}") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{path}: expected a non-empty list of paths or {{path, classes}} mappings")
    out = []
    for i, entry in enumerate(raw):
        if isinstance(entry, str):
            entry = {"path": entry}
        if (not isinstance(entry, dict) or set(entry) - {"path", "classes"} or not isinstance(entry.get("path"), str)
                or not isinstance(entry.get("classes", ""), str)):
            raise ValueError(f"{path}: entry {i} must be a path or a mapping with 'path' and optional 'classes' "
                             f"(strings), got {entry!r}")
        out.append(Candidate(entry["path"], entry.get("classes")))
    return out


def format_table(steps: Sequence[Step], candidates: Sequence[Candidate]) -> str:
    """The steps as a markdown table."""
    lines = ["| step | input added | weight | method | params | mAP | gain |",
             "|---|---|---|---|---|---|---|"]
    for k, s in enumerate(steps, start=1):
        params = ", ".join(f"{key}={value}" for key, value in s.params.items())
        gain = "" if s.gain is None else f"{s.gain:+.6f}"
        lines.append(f"| {k} | {candidates[s.candidate].path} | {s.weight:g} | {s.method} | {params} | "
                     f"{s.map:.6f} | {gain} |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ensemble.search",
        description="Greedy ensemble search on validation: start from the best single candidate, add at each step "
                    "the candidate, weight and fusion settings that raise the official mAP most, stop when the gain "
                    "is below --min-gain; write the recipe (for python -m ensemble). Prints one table row per step, "
                    "then 'mAP: 0.xxxxxx' of the written recipe.")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--inputs", nargs="+", metavar="P",
                       help="validation predictions of each candidate: Parquet file, folder of shards or glob")
    which.add_argument("--candidates", metavar="YAML",
                       help="a list of candidates: paths or {path, classes} mappings (classes: the class file an "
                            "expert covers)")
    parser.add_argument("--boxes", required=True, help="validation box CSV")
    parser.add_argument("--labels", required=True, help="validation image-label CSV")
    parser.add_argument("--hierarchy", required=True, help="label hierarchy JSON (metric and ancestor copies)")
    parser.add_argument("--classes", required=True, help="class file (MID,DisplayName, no header)")
    parser.add_argument("--out", required=True, help="recipe YAML to write; its name names the ensemble")
    parser.add_argument("--work", default="work", help="work folder, written as {work} (default: work)")
    parser.add_argument("--prepared", help="prepared dataset, written as {prepared} (default: WORK/prepared)")
    parser.add_argument("--split", default="validation", help="split of the inputs, written as {split} "
                                                              "(default: validation)")
    parser.add_argument("--weights", type=_floats, default=[1.0, 2.0, 3.0],
                        help="weights tried for an added input (default: 1,2,3)")
    parser.add_argument("--methods", type=_methods, default=["wbf"],
                        help=f"fusion methods tried, among {','.join(METHODS)} (default: wbf)")
    parser.add_argument("--iou-thrs", type=_floats, default=[0.5, 0.55, 0.6],
                        help="iou_thr values tried (default: 0.5,0.55,0.6)")
    parser.add_argument("--conf-type", default="avg", help="WBF conf_type (default: avg)")
    parser.add_argument("--skip-box-thr", type=float, default=0.0, help="WBF skip_box_thr (default: 0)")
    parser.add_argument("--score-thr", type=float, default=0.001, help="the recipe's score_thr (default: 0.001)")
    parser.add_argument("--max-per-image", type=int, default=500,
                        help="the recipe's max_per_image; 0: no cap (default: 500)")
    parser.add_argument("--min-gain", type=float, default=0.0005,
                        help="stop when the best step gains less mAP (default: 0.0005)")
    parser.add_argument("--jobs", type=int, default=2,
                        help="processes reading the predictions, then threads scoring blocks of images (default: 2)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.max_per_image < 0:
        parser.error("--jobs must be at least 1 and --max-per-image at least 0")
    if min(args.weights) < 0:
        parser.error(f"--weights must be >= 0 (0 switches an input off), got {args.weights}")

    def resolve(pattern: str) -> str:
        return expand_placeholders(pattern, args.work, args.split, args.prepared)

    def written(path: str) -> str:
        return insert_placeholders(path, args.work, args.split, args.prepared)

    out = Path(args.out)
    settings = settings_grid(args.methods, args.iou_thrs, args.conf_type, args.skip_box_thr)
    for method, params in settings:  # bad values stop here, before anything is read
        parse_recipe({"inputs": ["-"], "method": method, "params": params}, out.stem, f"--methods {method} {params}")
    given = read_candidates(args.candidates) if args.candidates else [Candidate(p) for p in args.inputs]
    candidates = [Candidate(resolve(c.path), None if c.classes is None else resolve(c.classes)) for c in given]
    recipe_inputs = [Candidate(written(c.path), None if c.classes is None else written(c.classes))
                     for c in candidates]

    hierarchy = Hierarchy.from_json(args.hierarchy)
    mids = list(read_classes(args.classes).mids)
    gt = expand_ground_truth(read_gt_boxes(args.boxes), read_gt_labels(args.labels), hierarchy, mids)
    if not (gt.num_gt > 0).any():
        raise ValueError(f"{args.boxes}: no boxes of the classes in {args.classes}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with Evaluator(candidates, gt, hierarchy, args.hierarchy, out.parent, jobs=args.jobs) as evaluator:
        search = Search(evaluator, recipe_inputs, written(args.hierarchy), args.score_thr,
                        args.max_per_image or None, out.stem)
        steps, rejected = search.run(args.weights, settings, args.min_gain, progress=not args.quiet)
    recipe = search.recipe([(s.candidate, s.weight) for s in steps], steps[-1].method, steps[-1].params)
    print(format_table(steps, recipe_inputs))
    if rejected is not None:
        print(f"stopped: the best next step ({recipe_inputs[rejected.candidate].path} weight {rejected.weight:g}, "
              f"{rejected.method} {rejected.params}) gains {rejected.gain:+.6f} < {args.min_gain}")
    header = (f"# Written by python -m ensemble.search: validation mAP {steps[-1].map:.6f} after {len(steps)} "
              f"step(s).\n")
    with atomic_output(out) as f:
        f.write((header + yaml.safe_dump(recipe, sort_keys=False)).encode())
    print(f"wrote {out}")
    print(f"mAP: {steps[-1].map:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
