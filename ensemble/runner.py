"""`make ensemble`: fuse several models' predictions image by image, copy each fused box to the ancestor classes,
threshold, cap, and write ``WORK/ensemble/{recipe}/{split}/predictions.parquet``.

Memory stays bounded whatever the number of images: a first pass reads only the ImageID and LabelName columns
(to number images and classes), a second pass streams every input in record batches and spills each row, as a
fixed-size binary record, into the file of its chunk of images (images numbered in ImageID order). Chunks are then
read one at a time, sorted by image with numpy, and fused in blocks of images by joblib workers; the results are
written in image order, so the output does not depend on the number of workers.

Each group of classes with the same covering inputs (``Fusion``, see ensemble/recipe.py on coverage) is fused on
its own: WBF by ``ensemble.wbf.fuse_images``, one call per block, which fuses image by image; the NMS family one
call per run of a few images (``_FUSE_IMAGES``), each (image, class) pair with a label of its own (every fusion
method treats labels independently, so the fused boxes are those of image-by-image fusion). Rows then come out per
image by score, descending; equal scores are ordered by class number, then box, so the order depends on nothing but
the image's own fused boxes (not on the runs, blocks or workers).

Ancestor copies (``contracts.expansion``): a fused box of class C is also written once for every ancestor of C (a
set, so a class reached through several parents, like Animal from Oyster, gets one copy). A copy is written even
when fusion already produced a box of the ancestor class at the same place: the copy carries the evidence for C,
the other box the detector's own evidence for the ancestor, and merging them would need one more suppression
threshold. The metric's greedy matching makes the lower-scored of two duplicates a false positive ranked below the
true positive, which costs less than losing the recall of either.
"""
from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from joblib import Parallel, delayed
from numba import njit
from tqdm import tqdm

from contracts.arrays import counting_order
from contracts.classes import read_classes
from contracts.expansion import AncestorExpansion
from contracts.hierarchy import Hierarchy
from contracts.predictions import BOX_COLUMNS, COLUMNS, SCHEMA, check_columns, input_files

from .recipe import Recipe, expand_placeholders, fuse
from .wbf import fuse_images

# one prediction row: image and class numbers (positions in the sorted ImageID and MID lists), score, x1 y1 x2 y2
RECORD = np.dtype([("image", "<i4"), ("label", "<i4"), ("score", "<f4"), ("box", "<f4", (4,))])
_BATCH_ROWS = 1 << 18
_FLUSH_ROWS = 1 << 20
_FUSE_IMAGES = 8  # images per call of the NMS family: (image, class) labels; small calls keep arrays in cache


@dataclass(frozen=True)
class Fusion:
    """A recipe bound to a class list: what ``fuse_block`` needs.

    mids (C,): the class list (class numbers index it); weights (M,): per input; groups: the covering inputs of
    each class group (input positions, ascending); group_of_class (C,) int: each class's group, -1 where no input
    covers it, or None when every input covers every class (one group); expansion: the ancestor copies."""

    method: str
    params: dict
    weights: tuple[float, ...]
    groups: tuple[tuple[int, ...], ...]
    group_of_class: np.ndarray | None
    expansion: AncestorExpansion
    mids: tuple[str, ...]
    score_thr: float = 0.0
    max_per_image: int | None = None


def make_fusion(recipe: Recipe, mids: Sequence[str], covered: Sequence[np.ndarray | None],
                expansion: AncestorExpansion) -> Fusion:
    """Bind ``recipe`` to the class list ``mids``; ``covered[i]`` is input i's coverage mask over ``mids`` (C,)
    bool, or None for every class."""
    n_inputs, n_classes = len(recipe.inputs), len(mids)
    weights = tuple(i.weight for i in recipe.inputs)
    if all(c is None for c in covered):
        groups, group_of_class = (tuple(range(n_inputs)),), None
    else:
        cover = np.stack([np.ones(n_classes, bool) if c is None else c for c in covered])
        index: dict[tuple[int, ...], int] = {}  # covering set -> group, groups numbered by their first class
        group_of_class = np.full(n_classes, -1, np.int64)
        for c in range(n_classes):
            members = tuple(int(i) for i in np.flatnonzero(cover[:, c]))
            if members:
                group_of_class[c] = index.setdefault(members, len(index))
        groups = tuple(index)
    return Fusion(recipe.method, dict(recipe.params), weights, groups, group_of_class, expansion, tuple(mids),
                  recipe.score_thr, recipe.max_per_image)


def coverage(class_file: str | Path | None, mids: Sequence[str]) -> np.ndarray | None:
    """The mask over ``mids`` of the classes listed in ``class_file`` (None: no file, every class)."""
    if class_file is None:
        return None
    listed = set(read_classes(class_file).mids)
    return np.array([m in listed for m in mids], bool)


def class_list(mids: dict[str, Path], hierarchy: Hierarchy | None,
               hierarchy_source: str | None = None) -> tuple[list[str], AncestorExpansion]:
    """The class list (sorted MIDs: those predicted, and the hierarchy's) and its ancestor copies; ``mids`` maps each
    predicted MID to a file it appears in (for the error on a MID outside the hierarchy)."""
    if hierarchy is None:
        classes = sorted(mids)
        return classes, AncestorExpansion.none(len(classes))
    unknown = sorted(set(mids) - hierarchy.mids)
    if unknown:
        raise ValueError(f"{mids[unknown[0]]}: classes not in the hierarchy {hierarchy_source}: {unknown[:5]}")
    classes = sorted(set(mids) | hierarchy.mids)
    return classes, AncestorExpansion.from_hierarchy(hierarchy, classes)


@njit(cache=True)
def _before(i, j, score, label, boxes):
    """Whether fused box i comes before box j of the same image: higher score, then lower class number, then box
    (x1, y1, x2, y2)."""
    if score[i] != score[j]:
        return score[i] > score[j]
    if label[i] != label[j]:
        return label[i] < label[j]
    for k in range(4):
        if boxes[i, k] != boxes[j, k]:
            return boxes[i, k] < boxes[j, k]
    return False


@njit(cache=True)
def _output_rows(boxes, score, image, label, by_score, wanted, n_images, score_thr, max_per_image, indptr, indices):
    """The output rows of fused boxes (K, 4) float64, scores (K,) float64, images (K,) (in ``0 .. n_images - 1``)
    and classes (K,), given ``by_score`` (K,), an order by descending score (any among equal scores): per image in
    ``_before`` order, those whose float32 score is >= ``score_thr``, each followed by its ancestor copies
    (``AncestorExpansion``'s CSR ``indptr``, ``indices``), cut after ``max_per_image`` rows (-1: no cap), of those
    only the (image, class) pairs ``wanted`` marks ((I, C) bool; (0, 0): all). Returns each row's image, class,
    score (float32) and box (float32)."""
    n = score.size
    order, start = counting_order(image, n_images, by_score)  # each image's boxes by descending score
    capacity = 0
    for i in range(n):
        capacity += 1 + indptr[label[i] + 1] - indptr[label[i]]
    out_image = np.empty(capacity, np.int32)
    out_label = np.empty(capacity, np.int32)
    out_score = np.empty(capacity, np.float32)
    out_box = np.empty((capacity, 4), np.float32)
    r = 0
    for g in range(n_images):
        lo, hi = start[g], start[g + 1]
        rows = order[lo:hi]
        p = 0
        while p < hi - lo:  # a run of equal scores by class, then box: by insertion, runs are short
            q = p + 1
            while q < hi - lo and score[rows[q]] == score[rows[p]]:
                q += 1
            for t in range(p + 1, q):
                item = rows[t]
                u = t
                while u > p and _before(item, rows[u - 1], score, label, boxes):
                    rows[u] = rows[u - 1]
                    u -= 1
                rows[u] = item
            p = q
        written = 0
        for t in range(hi - lo):
            i = rows[t]
            if not np.float64(np.float32(score[i])) >= score_thr:  # as written: float32
                continue
            c = label[i]
            for a in range(indptr[c + 1] - indptr[c] + 1):  # the box, then its ancestors
                if written == max_per_image:
                    break
                written += 1
                cls = c if a == 0 else indices[indptr[c] + a - 1]
                if wanted.size and not wanted[g, cls]:
                    continue
                out_image[r] = g
                out_label[r] = cls
                out_score[r] = score[i]
                for k in range(4):
                    out_box[r, k] = boxes[i, k]
                r += 1
            if written == max_per_image:
                break
    return out_image[:r], out_label[:r], out_score[:r], out_box[:r]


def _fusion_error(fusion: Fusion, members: tuple[int, ...], rows: list[np.ndarray],
                  image_ids: Sequence[str], first: int) -> ValueError:
    """The error of the first (image, class) of ``rows`` whose fusion fails, naming both (after a call failed)."""
    keys = [(r["image"].astype(np.int64) << 32) | r["label"] for r in rows]
    for key in np.unique(np.concatenate(keys)):
        pick = [r[k == key] for r, k in zip(rows, keys)]
        try:
            fuse(fusion.method, fusion.params, [r["box"] for r in pick], [r["score"] for r in pick],
                 [r["label"] for r in pick], [fusion.weights[i] for i in members])
        except ValueError as e:
            image, label = divmod(int(key), 1 << 32)
            return ValueError(f"image {image_ids[image - first]}, class {fusion.mids[label]}: {e}")
    return ValueError(f"fusion failed on images {image_ids[0]} .. {image_ids[-1]}, on none of their classes alone")


def _fuse_groups(fusion: Fusion, rows: np.ndarray, bounds: np.ndarray, first: int, image_ids: Sequence[str]):
    """The fused boxes (K, 4), scores (K,) float64, images (K,) (position in the block) and classes (K,) of the
    block's images (see ``fuse_block``), each (image, class) pair fused on its own: per class group, WBF in one call
    (``fuse_images``), the other methods one call per run of ``_FUSE_IMAGES`` images, each (image, class) pair with
    a label of its own."""
    n_classes, n_images = len(fusion.mids), bounds.shape[1] - 1
    parts = []
    for g, members in enumerate(fusion.groups):
        weights = [fusion.weights[i] for i in members]
        take = None if fusion.group_of_class is None else fusion.group_of_class == g
        if fusion.method == "wbf":
            try:
                boxes, scores, image, label = fuse_images(rows["box"], rows["score"], rows["label"],
                                                          bounds[list(members)], n_classes, weights, take=take,
                                                          **fusion.params)
            except ValueError:
                raise _fusion_error(fusion, members, _runs(rows, bounds, members, take, 0, n_images), image_ids,
                                    first) from None
            parts.append((boxes, scores, image, label))
            continue
        for lo in range(0, n_images, _FUSE_IMAGES):
            run = _runs(rows, bounds, members, take, lo, min(lo + _FUSE_IMAGES, n_images))
            if not any(len(r) for r in run):
                continue
            try:
                boxes, scores, labels = fuse(fusion.method, fusion.params, [r["box"] for r in run],
                                             [r["score"] for r in run],
                                             [(r["image"] - first - lo) * n_classes + r["label"] for r in run], weights)
            except ValueError:
                raise _fusion_error(fusion, members, run, image_ids, first) from None
            image, label = np.divmod(labels.astype(np.int64), n_classes)
            parts.append((boxes, scores, image + lo, label))
    if not parts:
        return np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return tuple(np.concatenate(column) for column in zip(*parts))


def _runs(rows: np.ndarray, bounds: np.ndarray, members: Sequence[int], take: np.ndarray | None, lo: int,
          hi: int) -> list[np.ndarray]:
    """Per member, its rows of block images ``lo .. hi - 1`` (those of the classes ``take`` marks)."""
    run = [rows[bounds[m, lo]:bounds[m, hi]] for m in members]
    return run if take is None else [r[take[r["label"]]] for r in run]


def fuse_block(fusion: Fusion, rows: np.ndarray, bounds: np.ndarray, first: int, image_ids: Sequence[str],
               wanted: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Fuse I images from image ``first`` on: ``rows`` holds RECORD rows of the inputs, those of input m and image
    ``first + i`` at ``rows[bounds[m, i]:bounds[m, i + 1]]`` (bounds (M, I + 1); ``image_ids``: the I ImageIDs, for
    errors); expand to ancestors, threshold, cap. Returns the output rows (RECORD; per image by score, descending,
    each fused box followed by its ancestor copies) and I. ``wanted`` (I, C) bool keeps only the rows of the marked
    (image, class) pairs (the cap still counts every row)."""
    boxes, scores, image, label = _fuse_groups(fusion, np.asarray(rows), bounds, first, image_ids)
    scores = scores.astype(np.float64)
    n_images = bounds.shape[1] - 1
    image, label, score, box = _output_rows(
        boxes, scores, image, label, np.argsort(-scores), np.ones((0, 0), bool) if wanted is None else wanted,
        n_images, float(fusion.score_thr), -1 if fusion.max_per_image is None else fusion.max_per_image,
        fusion.expansion.indptr, fusion.expansion.indices)
    out = np.empty(len(image), RECORD)
    out["image"] = first + image
    out["label"] = label
    out["score"] = score
    out["box"] = box
    return out, n_images


def _column(batch: pa.RecordBatch, name: str, path: Path) -> pa.Array:
    column = batch.column(name)
    if column.null_count:
        raise ValueError(f"{path}: column {name} has {column.null_count} missing values")
    return column


def scan_inputs(files_per_model: list[list[Path]]) -> tuple[list[str], dict[str, Path]]:
    """Sorted ImageIDs over all inputs, and each MID with a file it appears in; checks the columns."""
    images, mids = set(), {}
    for files in files_per_model:
        for path in files:
            parquet = pq.ParquetFile(path)
            check_columns(path, parquet.schema_arrow.names)
            for batch in parquet.iter_batches(batch_size=_BATCH_ROWS, columns=["ImageID", "LabelName"]):
                images.update(pc.unique(_column(batch, "ImageID", path)).to_pylist())
                for mid in pc.unique(_column(batch, "LabelName", path)).to_pylist():
                    mids.setdefault(mid, path)
    return sorted(images), mids


def _records(batch: pa.RecordBatch, path: Path, images: pa.Array, classes: pa.Array) -> np.ndarray:
    """One record batch of predictions as RECORD rows."""
    out = np.empty(batch.num_rows, RECORD)
    out["image"] = pc.index_in(_column(batch, "ImageID", path).cast(pa.string()), value_set=images).to_numpy()
    out["label"] = pc.index_in(_column(batch, "LabelName", path).cast(pa.string()), value_set=classes).to_numpy()
    out["score"] = _column(batch, "Score", path).cast(pa.float32()).to_numpy()
    for k, name in enumerate(BOX_COLUMNS):
        out["box"][:, k] = _column(batch, name, path).cast(pa.float32()).to_numpy()
    bad = ~np.isfinite(out["score"]) | ~np.isfinite(out["box"]).all(axis=1)
    if bad.any():
        row = batch.slice(int(np.flatnonzero(bad)[0]), 1).to_pylist()[0]
        raise ValueError(f"{path}: {int(bad.sum())} rows with non-finite Score or coordinates, e.g. {row}")
    return out


def partition(files_per_model: list[list[Path]], images: list[str], classes: list[str], chunk_images: int,
              spill_dir: Path, covered: Sequence[np.ndarray | None] | None = None) -> list[int]:
    """Stream every input into ``spill_dir/{chunk:06d}-{model:03d}.bin`` (RECORD rows, input order kept), leaving
    out the rows of classes outside ``covered[m]`` (a mask over ``classes``; None: keep all). Returns the number of
    rows left out per model."""
    image_values, class_values = pa.array(images, pa.string()), pa.array(classes, pa.string())
    total = sum(pq.ParquetFile(p).metadata.num_rows for files in files_per_model for p in files)
    dropped = [0] * len(files_per_model)
    with tqdm(total=total, desc="ensemble: reading predictions", unit="box", unit_scale=True) as bar:
        for m, files in enumerate(files_per_model):
            mask = None if covered is None else covered[m]
            for path in files:
                for batch in pq.ParquetFile(path).iter_batches(batch_size=_BATCH_ROWS, columns=COLUMNS):
                    records = _records(batch, path, image_values, class_values)
                    if mask is not None:
                        keep = mask[records["label"]]
                        dropped[m] += int(len(keep) - keep.sum())
                        records = records[keep]
                    chunk = records["image"] // chunk_images
                    order = np.argsort(chunk, kind="stable")
                    records, chunk = records[order], chunk[order]
                    starts = np.flatnonzero(np.r_[True, chunk[1:] != chunk[:-1]])
                    for start, stop in zip(starts, np.r_[starts[1:], len(chunk)]):
                        with open(spill_dir / f"{chunk[start]:06d}-{m:03d}.bin", "ab") as f:
                            records[start:stop].tofile(f)
                    bar.update(batch.num_rows)
    return dropped


def _blocks(fusion: Fusion, spill_dir: Path, images: list[str], chunk_images: int, block_images: int):
    """Fusion tasks in image order: chunk by chunk, each chunk sorted by image, cut in blocks of images."""
    n_images = len(images)
    for first_image in range(0, n_images, chunk_images):
        chunk = first_image // chunk_images
        per_model = []
        for m in range(len(fusion.weights)):
            path = spill_dir / f"{chunk:06d}-{m:03d}.bin"
            records = np.fromfile(path, RECORD) if path.exists() else np.empty(0, RECORD)
            per_model.append(records[np.argsort(records["image"], kind="stable")])
        stop_image = min(first_image + chunk_images, n_images)
        for first in range(first_image, stop_image, block_images):
            stop = min(first + block_images, stop_image)
            at = [np.searchsorted(r["image"], np.arange(first, stop + 1)) for r in per_model]
            rows = np.concatenate([r[a[0]:a[-1]] for r, a in zip(per_model, at)])
            bounds = np.stack([a - a[0] for a in at]) + np.cumsum([0] + [a[-1] - a[0] for a in at[:-1]])[:, None]
            yield delayed(fuse_block)(fusion, rows, bounds, first, images[first:stop])


def _table(records: np.ndarray, images: pa.Array, classes: pa.Array) -> pa.Table:
    columns = [images.take(pa.array(records["image"])), classes.take(pa.array(records["label"])),
               pa.array(records["score"])]
    columns += [pa.array(np.ascontiguousarray(records["box"][:, k])) for k in range(4)]
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def run_ensemble(recipe: Recipe, split: str, work: str | Path = "work", jobs: int = 2, chunk_images: int = 1000,
                 block_images: int = 100, prepared: str | Path | None = None) -> Path:
    """Run a recipe on one split; returns the path of the written predictions.parquet. ``prepared`` fills the
    recipe's ``{prepared}`` placeholder (default ``{work}/prepared``)."""
    def resolve(pattern: str) -> str:
        return expand_placeholders(pattern, work, split, prepared)

    files_per_model = [input_files(resolve(i.path)) for i in recipe.inputs]
    images, mids = scan_inputs(files_per_model)
    hierarchy = None if recipe.hierarchy is None else Hierarchy.from_json(resolve(recipe.hierarchy))
    classes, expansion = class_list(mids, hierarchy, recipe.hierarchy)
    covered = [coverage(None if i.classes is None else resolve(i.classes), classes) for i in recipe.inputs]
    fusion = make_fusion(recipe, classes, covered, expansion)

    out_path = Path(work) / "ensemble" / recipe.name / split / "predictions.parquet"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    image_values, class_values = pa.array(images, pa.string()), pa.array(classes, pa.string())
    fd, tmp_name = tempfile.mkstemp(dir=out_path.parent, prefix=".predictions-", suffix=".parquet.tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".spill-") as spill_dir:
            dropped = partition(files_per_model, images, classes, chunk_images, Path(spill_dir), covered)
            for entry, n in zip(recipe.inputs, dropped):
                if n:
                    tqdm.write(f"ensemble: {resolve(entry.path)}: {n:,} boxes of classes outside "
                               f"{resolve(entry.classes)} left out", file=sys.stderr)
            tasks = _blocks(fusion, Path(spill_dir), images, chunk_images, block_images)
            pending, n_pending = [], 0
            with pq.ParquetWriter(tmp, SCHEMA) as writer, \
                    tqdm(total=len(images), desc=f"ensemble: {recipe.name} {split}", unit="img") as bar, \
                    Parallel(n_jobs=jobs, return_as="generator") as parallel:
                for records, n_images in parallel(tasks):
                    pending.append(records)
                    n_pending += len(records)
                    if n_pending >= _FLUSH_ROWS:
                        writer.write_table(_table(np.concatenate(pending), image_values, class_values))
                        pending, n_pending = [], 0
                    bar.update(n_images)
                if n_pending:
                    writer.write_table(_table(np.concatenate(pending), image_values, class_values))
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return out_path
