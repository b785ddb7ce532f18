"""`make ensemble`: fuse several models' predictions image by image, copy each fused box to the ancestor classes,
threshold, cap, and write ``WORK/ensemble/{recipe}/{split}/predictions.parquet``.

Memory stays bounded whatever the number of images: a first pass reads only the ImageID and LabelName columns
(to number images and classes), a second pass streams every input in record batches and spills each row, as a
fixed-size binary record, into the file of its chunk of images (images numbered in ImageID order). Chunks are then
read one at a time, sorted by image with numpy, and fused in blocks of images by joblib workers; the results are
written in image order, so the output does not depend on the number of workers.

Ancestor copies (``contracts.expansion``): a fused box of class C is also written once for every ancestor of C (a
set, so a class reached through several parents, like Animal from Oyster, gets one copy). A copy is written even when fusion already
produced a box of the ancestor class at the same place: the copy carries the evidence for C, the other box the
detector's own evidence for the ancestor, and merging them would need one more suppression threshold. The
metric's greedy matching makes the lower-scored of two duplicates a false positive ranked below the true
positive, which costs less than losing the recall of either.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from joblib import Parallel, delayed
from tqdm import tqdm

from contracts.expansion import AncestorExpansion
from contracts.hierarchy import Hierarchy
from contracts.predictions import BOX_COLUMNS, COLUMNS, SCHEMA, check_columns, input_files

from .recipe import Recipe, expand_placeholders
# one prediction row: image and class numbers (positions in the sorted ImageID and MID lists), score, x1 y1 x2 y2
RECORD = np.dtype([("image", "<i4"), ("label", "<i4"), ("score", "<f4"), ("box", "<f4", (4,))])
_BATCH_ROWS = 1 << 18
_FLUSH_ROWS = 1 << 20


def fuse_image(recipe: Recipe, expansion: AncestorExpansion, image: int, per_model: list[np.ndarray]) -> np.ndarray:
    """Fuse image number ``image`` (its RECORD rows, one array per model), expand to ancestors, threshold, cap.

    Rows come out by score, descending, each fused box followed by its ancestor copies."""
    boxes, scores, labels = recipe.fuse([r["box"] for r in per_model], [r["score"] for r in per_model],
                                        [r["label"] for r in per_model])
    order = np.argsort(-scores, kind="stable")
    scores = scores[order].astype(np.float32)
    keep = scores.astype(np.float64) >= recipe.score_thr
    boxes, scores, labels = boxes[order][keep], scores[keep], labels[order][keep].astype(np.int64)
    rows, labels = expansion.apply(labels)
    if recipe.max_per_image is not None:
        rows, labels = rows[:recipe.max_per_image], labels[:recipe.max_per_image]
    out = np.empty(len(rows), RECORD)
    out["image"] = image
    out["label"] = labels
    out["score"] = scores[rows]
    out["box"] = boxes[rows]
    return out


def fuse_block(recipe: Recipe, expansion: AncestorExpansion, per_model: list[np.ndarray], first: int,
               stop: int) -> tuple[np.ndarray, int]:
    """Fuse images ``first .. stop - 1`` (per model: their RECORD rows, sorted by image). Returns the output rows
    and the number of images."""
    bounds = [np.searchsorted(r["image"], np.arange(first, stop + 1)) for r in per_model]
    results = []
    for i in range(stop - first):
        rows = [r[b[i]:b[i + 1]] for r, b in zip(per_model, bounds)]
        if any(len(r) for r in rows):
            results.append(fuse_image(recipe, expansion, first + i, rows))
    return (np.concatenate(results) if results else np.empty(0, RECORD)), stop - first


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
              spill_dir: Path) -> None:
    """Stream every input into ``spill_dir/{chunk:06d}-{model:03d}.bin`` (RECORD rows, input order kept)."""
    image_values, class_values = pa.array(images, pa.string()), pa.array(classes, pa.string())
    total = sum(pq.ParquetFile(p).metadata.num_rows for files in files_per_model for p in files)
    with tqdm(total=total, desc="ensemble: reading predictions", unit="box", unit_scale=True) as bar:
        for m, files in enumerate(files_per_model):
            for path in files:
                for batch in pq.ParquetFile(path).iter_batches(batch_size=_BATCH_ROWS, columns=COLUMNS):
                    records = _records(batch, path, image_values, class_values)
                    chunk = records["image"] // chunk_images
                    order = np.argsort(chunk, kind="stable")
                    records, chunk = records[order], chunk[order]
                    starts = np.flatnonzero(np.r_[True, chunk[1:] != chunk[:-1]])
                    for start, stop in zip(starts, np.r_[starts[1:], len(chunk)]):
                        with open(spill_dir / f"{chunk[start]:06d}-{m:03d}.bin", "ab") as f:
                            records[start:stop].tofile(f)
                    bar.update(batch.num_rows)


def _blocks(recipe: Recipe, expansion: AncestorExpansion, spill_dir: Path, n_models: int, n_images: int,
            chunk_images: int, block_images: int):
    """Fusion tasks in image order: chunk by chunk, each chunk sorted by image, cut in blocks of images."""
    for first_image in range(0, n_images, chunk_images):
        chunk = first_image // chunk_images
        per_model = []
        for m in range(n_models):
            path = spill_dir / f"{chunk:06d}-{m:03d}.bin"
            records = np.fromfile(path, RECORD) if path.exists() else np.empty(0, RECORD)
            per_model.append(records[np.argsort(records["image"], kind="stable")])
        stop_image = min(first_image + chunk_images, n_images)
        for first in range(first_image, stop_image, block_images):
            stop = min(first + block_images, stop_image)
            rows = [r[np.searchsorted(r["image"], first):np.searchsorted(r["image"], stop)] for r in per_model]
            yield delayed(fuse_block)(recipe, expansion, rows, first, stop)


def _table(records: np.ndarray, images: pa.Array, classes: pa.Array) -> pa.Table:
    columns = [images.take(pa.array(records["image"])), classes.take(pa.array(records["label"])),
               pa.array(records["score"])]
    columns += [pa.array(np.ascontiguousarray(records["box"][:, k])) for k in range(4)]
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def run_ensemble(recipe: Recipe, split: str, work: str | Path = "work", jobs: int = 2, chunk_images: int = 1000,
                 block_images: int = 100, prepared: str | Path | None = None) -> Path:
    """Run a recipe on one split; returns the path of the written predictions.parquet. ``prepared`` fills the
    recipe's ``{prepared}`` placeholder (default ``{work}/prepared``)."""
    files_per_model = [input_files(expand_placeholders(p, work, split, prepared)) for p, _ in recipe.inputs]
    images, mids = scan_inputs(files_per_model)
    if recipe.hierarchy is None:
        classes = sorted(mids)
        expansion = AncestorExpansion.none(len(classes))
    else:
        hierarchy = Hierarchy.from_json(expand_placeholders(recipe.hierarchy, work, split, prepared))
        unknown = sorted(set(mids) - hierarchy.mids)
        if unknown:
            raise ValueError(f"{mids[unknown[0]]}: classes not in the hierarchy {recipe.hierarchy}: {unknown[:5]}")
        classes = sorted(set(mids) | hierarchy.mids)
        expansion = AncestorExpansion.from_hierarchy(hierarchy, classes)

    out_path = Path(work) / "ensemble" / recipe.name / split / "predictions.parquet"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    image_values, class_values = pa.array(images, pa.string()), pa.array(classes, pa.string())
    fd, tmp_name = tempfile.mkstemp(dir=out_path.parent, prefix=".predictions-", suffix=".parquet.tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".spill-") as spill_dir:
            partition(files_per_model, images, classes, chunk_images, Path(spill_dir))
            tasks = _blocks(recipe, expansion, Path(spill_dir), len(files_per_model), len(images), chunk_images,
                            block_images)
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
