"""`make ensemble`: fuse several models' predictions image by image, copy each fused box to the ancestor classes,
threshold, cap, and write ``WORK/ensemble/{recipe}/{split}/predictions.parquet``; inputs are streamed in chunks of
images, so memory stays bounded. Design (chunks, blocks, output order, ancestor copies): docs/fusion.md.
"""
from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from joblib import Parallel, delayed
from numba import njit
from tqdm import tqdm

from contracts.arrays import counting_order, sort_segments
from contracts.classes import read_classes
from contracts.expansion import Relatives
from contracts.hierarchy import Hierarchy
from contracts.predictions import BOX_COLUMNS, COLUMNS, SCHEMA, check_columns, input_files

from .recipe import Recipe, expand_placeholders, fuse
from .suppression import suppress_images
from .wbf import fuse_images

# one prediction row: image and class numbers (positions in the sorted ImageID and MID lists), score, x1 y1 x2 y2
RECORD = np.dtype([("image", "<i4"), ("label", "<i4"), ("score", "<f4"), ("box", "<f4", (4,))])
_BATCH_ROWS = 1 << 18
_FLUSH_ROWS = 1 << 20


@dataclass(frozen=True)
class Fusion:
    """A recipe bound to a class list: what ``fuse_block`` needs.

    mids (C,): the class list (class numbers index it); weights (M,): per input; groups: the covering inputs of
    each class group (input positions, ascending); group_of_class (C,) int: each class's group, -1 where no input
    of weight > 0 covers it, or None when every input covers every class (one group); expansion: the ancestor copies."""

    method: str
    params: dict
    weights: tuple[float, ...]
    groups: tuple[tuple[int, ...], ...]
    group_of_class: np.ndarray | None
    expansion: Relatives
    mids: tuple[str, ...]
    score_thr: float = 0.0
    max_per_image: int | None = None


def make_fusion(recipe: Recipe, mids: Sequence[str], covered: Sequence[np.ndarray | None],
                expansion: Relatives) -> Fusion:
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
            if any(weights[i] > 0 for i in members):  # covered by weight-0 inputs only: switched off
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
               hierarchy_source: str | None = None) -> tuple[list[str], Relatives]:
    """The class list (sorted MIDs: those predicted, and the hierarchy's) and its ancestor copies; ``mids`` maps each
    predicted MID to a file it appears in (for the error on a MID outside the hierarchy)."""
    if hierarchy is None:
        classes = sorted(mids)
        return classes, Relatives.none(len(classes))
    unknown = sorted(set(mids) - hierarchy.mids)
    if unknown:
        raise ValueError(f"{mids[unknown[0]]}: classes not in the hierarchy {hierarchy_source}: {unknown[:5]}")
    classes = sorted(set(mids) | hierarchy.mids)
    return classes, Relatives.from_hierarchy(hierarchy, classes)


@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True)
def _writable(order, lo, hi, score, label, score_thr, max_per_image, indptr, out, k):
    """Into ``out`` from position ``k``, in any order, those of one image's boxes ``order[lo:hi]`` that can be
    written: float32 score >= ``score_thr`` and, when their rows (each box with its ancestor copies) outnumber
    ``max_per_image`` (-1: no cap), only those scoring at least as high as the box whose rows reach the cap (a
    weighted quickselect). Returns the end of what was written."""
    first, total = k, 0
    for p in range(lo, hi):
        i = order[p]
        if np.float64(np.float32(score[i])) >= score_thr:  # as written: float32
            out[k] = i
            k += 1
            total += 1 + indptr[label[i] + 1] - indptr[label[i]]
    if max_per_image < 0 or total <= max_per_image:
        return k
    if max_per_image == 0:
        return first
    need, a, b = max_per_image, first, k  # the box reaching the cap is in out[a:b]; out[first:a] score higher
    while True:
        x, y, z = score[out[a]], score[out[(a + b) // 2]], score[out[b - 1]]
        pivot = max(min(x, y), min(max(x, y), z))  # the median of three
        above, below, t = a, b, a  # partition out[a:b]: > pivot, == pivot, < pivot
        while t < below:
            i = out[t]
            if score[i] > pivot:
                out[t], out[above] = out[above], i
                above += 1
                t += 1
            elif score[i] < pivot:
                below -= 1
                out[t], out[below] = out[below], i
            else:
                t += 1
        rows_above, rows_equal = 0, 0
        for t in range(a, below):
            c = label[out[t]]
            if t < above:
                rows_above += 1 + indptr[c + 1] - indptr[c]
            else:
                rows_equal += 1 + indptr[c + 1] - indptr[c]
        if rows_above >= need:
            b = above
        elif rows_above + rows_equal >= need:
            return below
        else:
            need -= rows_above + rows_equal
            a = below


@njit(cache=True, nogil=True)
def _output_rows(boxes, score, image, label, wanted, n_images, score_thr, max_per_image, indptr, indices):
    """The output rows of fused boxes (K, 4) float64, scores (K,) float64, images (K,) (in ``0 .. n_images - 1``)
    and classes (K,): per image in ``_before`` order, those whose float32 score is >= ``score_thr``, each followed
    by its ancestor copies (``Relatives``'s CSR ``indptr``, ``indices``), cut after ``max_per_image`` rows (-1: no
    cap), of those only the (image, class) pairs ``wanted`` marks ((I, C) bool; (0, 0): all). Returns each row's
    image, class, score (float32) and box (float32)."""
    by_image, image_start = counting_order(image, n_images, np.arange(score.size))
    order, start = np.empty(score.size, np.int64), np.zeros(n_images + 1, np.int64)
    for g in range(n_images):  # only the boxes that can be written are sorted
        start[g + 1] = _writable(by_image, image_start[g], image_start[g + 1], score, label, score_thr,
                                 max_per_image, indptr, order, start[g])
    descending = -score
    sort_segments(order, start, descending, np.empty(0))  # each image's boxes by descending score
    capacity = 0
    for i in order[:start[-1]]:
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
    block's images (see ``fuse_block``), each (image, class) pair fused on its own: per class group, one call
    (``fuse_images`` for WBF, ``suppress_images`` for the NMS family)."""
    fuse_group = fuse_images if fusion.method == "wbf" else partial(suppress_images, function=fusion.method)
    parts = []
    for g, members in enumerate(fusion.groups):
        weights = [fusion.weights[i] for i in members]
        take = None if fusion.group_of_class is None else fusion.group_of_class == g
        try:
            parts.append(fuse_group(rows["box"], rows["score"], rows["label"], bounds[list(members)],
                                    len(fusion.mids), weights, take=take, **fusion.params))
        except ValueError:
            raise _fusion_error(fusion, members, _group_rows(rows, bounds, members, take), image_ids,
                                first) from None
    if not parts:
        return np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return tuple(np.concatenate(column) for column in zip(*parts))


def _group_rows(rows: np.ndarray, bounds: np.ndarray, members: Sequence[int],
                take: np.ndarray | None) -> list[np.ndarray]:
    """Per member, its rows of the block's images (those of the classes ``take`` marks)."""
    run = [rows[bounds[m, 0]:bounds[m, -1]] for m in members]
    return run if take is None else [r[take[r["label"]]] for r in run]


def fuse_block(fusion: Fusion, rows: np.ndarray, bounds: np.ndarray, first: int, image_ids: Sequence[str],
               wanted: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Fuse I images from image ``first`` on: ``rows`` holds RECORD rows of the inputs, those of input m and image
    ``first + i`` at ``rows[bounds[m, i]:bounds[m, i + 1]]`` (bounds (M, I + 1); ``image_ids``: the I ImageIDs, for
    errors); expand to ancestors, threshold, cap. Returns the output rows (RECORD; per image by score, descending,
    each fused box followed by its ancestor copies) and I. ``wanted`` (I, C) bool keeps only the rows of the marked
    (image, class) pairs (the cap still counts every row)."""
    boxes, scores, image, label = _fuse_groups(fusion, np.asarray(rows), bounds, first, image_ids)
    scores = np.asarray(scores, np.float64)
    n_images = bounds.shape[1] - 1
    image, label, score, box = _output_rows(
        boxes, scores, image, label, np.ones((0, 0), bool) if wanted is None else wanted, n_images,
        float(fusion.score_thr), -1 if fusion.max_per_image is None else fusion.max_per_image,
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


_NAMES = ["ImageID", "LabelName"]  # read as dictionaries: each distinct string is looked at once per batch


def _batches(path: Path, columns: list[str]):
    return pq.ParquetFile(path, read_dictionary=_NAMES).iter_batches(batch_size=_BATCH_ROWS, columns=columns)


def _dictionary(column: pa.Array) -> pa.DictionaryArray:
    """``column`` dictionary-encoded (as read; a column of another type than strings is encoded here)."""
    return column if pa.types.is_dictionary(column.type) else column.dictionary_encode()


def _distinct(column: pa.Array) -> list:
    """The values a column holds (its dictionary, less the entries no row uses)."""
    column = _dictionary(column)
    used = np.zeros(len(column.dictionary), bool)
    used[column.indices.to_numpy(zero_copy_only=False)] = True
    return column.dictionary.filter(pa.array(used)).to_pylist()


def scan_inputs(files_per_model: list[list[Path]]) -> tuple[list[str], dict[str, Path]]:
    """Sorted ImageIDs over all inputs, and each MID with a file it appears in; checks the columns."""
    images, mids = set(), {}
    for files in files_per_model:
        for path in files:
            check_columns(path, pq.ParquetFile(path).schema_arrow.names)
            for batch in _batches(path, _NAMES):
                images.update(_distinct(_column(batch, "ImageID", path)))
                for mid in _distinct(_column(batch, "LabelName", path)):
                    mids.setdefault(mid, path)
    return sorted(images), mids


def _positions(column: pa.Array, values: pa.Array) -> np.ndarray:
    """Each row's position in ``values`` (which holds every value of the column)."""
    column = _dictionary(column)
    lookup = pc.index_in(column.dictionary.cast(pa.string()), value_set=values).to_numpy(zero_copy_only=False)
    return lookup[column.indices.to_numpy(zero_copy_only=False)]


def _records(batch: pa.RecordBatch, path: Path, images: pa.Array, classes: pa.Array) -> np.ndarray:
    """One record batch of predictions as RECORD rows."""
    out = np.empty(batch.num_rows, RECORD)
    out["image"] = _positions(_column(batch, "ImageID", path), images)
    out["label"] = _positions(_column(batch, "LabelName", path), classes)
    out["score"] = _column(batch, "Score", path).cast(pa.float32()).to_numpy()
    for k, name in enumerate(BOX_COLUMNS):
        out["box"][:, k] = _column(batch, name, path).cast(pa.float32()).to_numpy()
    bad = ~np.isfinite(out["score"]) | ~np.isfinite(out["box"]).all(axis=1)
    if bad.any():
        row = batch.slice(int(np.flatnonzero(bad)[0]), 1).to_pylist()[0]
        raise ValueError(f"{path}: {int(bad.sum())} rows with non-finite Score or coordinates, e.g. {row}")
    return out


def _spill(path: Path, m: int, k: int, mask: np.ndarray | None, images: pa.Array, classes: pa.Array,
           chunk_images: int, spill_dir: Path) -> int:
    """Input file ``path`` (file k of model m) into ``spill_dir/{chunk:06d}-{m:03d}-{k:05d}.bin``; returns the
    number of rows left out (classes outside ``mask``)."""
    dropped = 0
    for batch in _batches(path, COLUMNS):
        records = _records(batch, path, images, classes)
        if mask is not None:
            keep = mask[records["label"]]
            dropped += int(len(keep) - keep.sum())
            records = records[keep]
        records = records[np.argsort(records["image"], kind="stable")]  # by image: sorting a chunk is then a merge
        chunk = records["image"] // chunk_images
        starts = np.flatnonzero(np.r_[True, chunk[1:] != chunk[:-1]])
        for start, stop in zip(starts, np.r_[starts[1:], len(chunk)]):
            with open(spill_dir / f"{chunk[start]:06d}-{m:03d}-{k:05d}.bin", "ab") as f:
                records[start:stop].tofile(f)
    return dropped


def partition(files_per_model: list[list[Path]], images: list[str], classes: list[str], chunk_images: int,
              spill_dir: Path, covered: Sequence[np.ndarray | None] | None = None, jobs: int = 1) -> list[int]:
    """Stream every input into ``spill_dir`` by chunks of ``chunk_images`` images (``spilled`` reads them back),
    leaving out the rows of classes outside ``covered[m]`` (a mask over ``classes``; None: keep all); ``jobs``
    workers read the files. Returns the number of rows left out per model."""
    image_values, class_values = pa.array(images, pa.string()), pa.array(classes, pa.string())
    tasks = [(m, k, path) for m, files in enumerate(files_per_model) for k, path in enumerate(files)]
    dropped = [0] * len(files_per_model)
    with tqdm(total=sum(pq.ParquetFile(p).metadata.num_rows for _, _, p in tasks), unit="box", unit_scale=True,
              desc="ensemble: reading predictions") as bar, Parallel(n_jobs=jobs, return_as="generator") as parallel:
        done = parallel(delayed(_spill)(path, m, k, None if covered is None else covered[m], image_values,
                                        class_values, chunk_images, spill_dir) for m, k, path in tasks)
        for (m, _, path), n in zip(tasks, done):
            dropped[m] += n
            bar.update(pq.ParquetFile(path).metadata.num_rows)
    return dropped


def spilled(spill_dir: Path, chunk: int, m: int) -> np.ndarray:
    """Model m's RECORD rows of one chunk, as ``partition`` wrote them: in input order, its files one after the
    other."""
    parts = [np.fromfile(p, RECORD) for p in sorted(spill_dir.glob(f"{chunk:06d}-{m:03d}-*.bin"))]
    return np.concatenate(parts) if parts else np.empty(0, RECORD)


def chunk_blocks(spill_dir: Path, n_models: int, chunk: int, first_image: int, stop_image: int, block_images: int):
    """The blocks of one chunk (images ``first_image .. stop_image - 1``), sorted by image: ``fuse_block``'s
    ``rows``, ``bounds`` and ``first`` for each block of ``block_images`` images, in image order."""
    per_model = []
    for m in range(n_models):
        records = spilled(spill_dir, chunk, m)
        if (np.diff(records["image"]) < 0).any():  # inputs written image by image are in order already
            records = records[np.argsort(records["image"], kind="stable")]
        per_model.append(records)
    for first in range(first_image, stop_image, block_images):
        stop = min(first + block_images, stop_image)
        at = [np.searchsorted(r["image"], np.arange(first, stop + 1)) for r in per_model]
        rows = np.concatenate([r[a[0]:a[-1]] for r, a in zip(per_model, at)])
        bounds = np.stack([a - a[0] for a in at]) + np.cumsum([0] + [a[-1] - a[0] for a in at[:-1]])[:, None]
        yield rows, bounds, first


def _fuse_chunk(fusion: Fusion, spill_dir: Path, chunk: int, first_image: int, image_ids: Sequence[str],
                block_images: int) -> tuple[np.ndarray, int]:
    """``fuse_block``'s output rows for every block of one chunk, read from ``spill_dir`` (a worker's task), and
    the chunk's number of images."""
    out = []
    for rows, bounds, first in chunk_blocks(spill_dir, len(fusion.weights), chunk, first_image,
                                            first_image + len(image_ids), block_images):
        at = first - first_image
        out.append(fuse_block(fusion, rows, bounds, first, image_ids[at:at + block_images])[0])
    return (np.concatenate(out) if out else np.empty(0, RECORD)), len(image_ids)


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
            dropped = partition(files_per_model, images, classes, chunk_images, Path(spill_dir), covered, jobs)
            for entry, n in zip(recipe.inputs, dropped):
                if n:
                    tqdm.write(f"ensemble: {resolve(entry.path)}: {n:,} boxes of classes outside "
                               f"{resolve(entry.classes)} left out", file=sys.stderr)
            tasks = (delayed(_fuse_chunk)(fusion, Path(spill_dir), first // chunk_images, first,
                                          images[first:first + chunk_images], block_images)
                     for first in range(0, len(images), chunk_images))
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
