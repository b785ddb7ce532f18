"""Shards, chunks and resuming: which images shard k of N predicts, and how a shard is written chunk by chunk so
that a rerun skips finished shards and resumes an interrupted one at its first unfinished chunk."""
from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from contracts.files import IMAGE_SUFFIXES, DataError, atomic_output, image_files
from contracts.predictions import SCHEMA, predictions_table, write_predictions
from pipeline.infer.variants import Detections, Variant, merge_variants

MERGED = "merged"
PARTIAL = ".partial"


def parse_shard(text: str) -> tuple[int, int]:
    """``'k/N'`` -> (k, N), with 0 <= k < N (shards are numbered from 0)."""
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected k/N, e.g. 0/4") from None
    if n < 1 or not 0 <= k < n:
        raise ValueError(f"--shard {text!r}: need N >= 1 and 0 <= k < N")
    return k, n


def shard_bounds(num_items: int, k: int, num_shards: int) -> tuple[int, int]:
    """[start, stop) of shard k: contiguous blocks by position, disjoint and covering ``range(num_items)``."""
    return num_items * k // num_shards, num_items * (k + 1) // num_shards


def shard_name(k: int, num_shards: int) -> str:
    return f"shard-{k:03d}-of-{num_shards:03d}"


def detections_table(image_ids: Sequence[str], dets: Sequence[Detections], classes: Sequence[str]) -> pa.Table:
    """Per-image detections -> a predictions table (``contracts.predictions``), images in the given order."""
    return predictions_table(image_ids, [d.boxes for d in dets], [d.scores for d in dets], [d.labels for d in dets],
                             classes)


def list_images(images_dir: Path, image_list: Path | None = None) -> list[Path]:
    """The images to predict, sorted by ImageID: every image of the folder (``contracts.files.image_files``), or
    those a list file names.

    The list file has one ImageID per line (an image suffix and further comma-separated fields are ignored, so
    ``sample_submission.csv`` works as it is; a header line ``ImageID``/``ImageId`` is skipped).
    """
    files = image_files(images_dir)
    if image_list is None:
        if not files:
            raise DataError(f"{images_dir}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        return [files[i] for i in sorted(files)]
    paths = {}
    with open(image_list, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            image_id = line.split(",", 1)[0].strip()
            suffix = next((s for s in IMAGE_SUFFIXES if image_id.lower().endswith(s)), "")
            image_id = image_id[: len(image_id) - len(suffix)]
            if not image_id or (line_no == 1 and image_id.lower() == "imageid"):
                continue
            if image_id not in files:
                raise DataError(f"{image_list}:{line_no}: image {image_id!r} not found in {images_dir}")
            paths[image_id] = files[image_id]
    return [paths[i] for i in sorted(paths)]


@dataclass
class InferSettings:
    """Everything that determines a shard's output: a partial shard is resumed only under identical settings."""

    config: str
    checkpoint: str
    variants: list[Variant]
    merge: str = "wbf"
    iou_thr: float | None = None
    score_thr: float = 0.001
    max_per_img: int = 500
    keep_variants: bool = False
    chunk_size: int = 500
    batch_size: int = 1

    def fingerprint(self, image_ids: Sequence[str]) -> dict:
        ckpt = Path(self.checkpoint)
        return {
            "config": str(Path(self.config).resolve()),
            "checkpoint": str(ckpt.resolve()),
            "checkpoint_bytes": ckpt.stat().st_size,
            "checkpoint_mtime_ns": ckpt.stat().st_mtime_ns,
            "variants": [v.name for v in self.variants],
            "merge": self.merge, "iou_thr": self.iou_thr, "score_thr": self.score_thr,
            "max_per_img": self.max_per_img, "keep_variants": self.keep_variants,
            "chunk_size": self.chunk_size, "batch_size": self.batch_size,
            "images": hashlib.sha256("\n".join(image_ids).encode()).hexdigest(),
        }


def output_names(settings: InferSettings) -> list[str]:
    """The output folders of a run: the variants (with --keep-variants) and ``merged``, which is written last."""
    return ([v.name for v in settings.variants] if settings.keep_variants else []) + [MERGED]


def shard_done(out: Path, shard: str, settings: InferSettings) -> bool:
    return all((out / name / f"{shard}.parquet").is_file() for name in output_names(settings))


def run_shard(out: Path, k: int, num_shards: int, paths: Sequence[Path], predict, classes: Sequence[str],
              settings: InferSettings, overwrite: bool = False, progress: bool = True) -> bool:
    """Predict shard k of N of ``paths`` (all images, sorted) into ``out``; False when it was already finished.

    ``predict(paths)`` yields per image the per-variant detections (see ``predict_images``). Work is written per
    chunk of ``settings.chunk_size`` images under ``out/.partial``, so an interrupted shard resumes at its first
    unfinished chunk; the shard files are assembled at the end and the partial folder removed.
    """
    from tqdm import tqdm

    shard = shard_name(k, num_shards)
    if not overwrite and shard_done(out, shard, settings):
        return False
    start, stop = shard_bounds(len(paths), k, num_shards)
    shard_paths = list(paths[start:stop])
    image_ids = [p.stem for p in shard_paths]
    partial = out / PARTIAL / shard
    fingerprint = json.dumps(settings.fingerprint(image_ids), indent=1, sort_keys=True)
    settings_file = partial / "settings.json"
    if partial.exists() and (overwrite or not settings_file.is_file() or settings_file.read_text() != fingerprint):
        shutil.rmtree(partial)
    if not partial.exists():
        with atomic_output(settings_file) as f:
            f.write(fingerprint.encode())

    names = output_names(settings)
    size = settings.chunk_size
    chunks = [(a, min(a + size, len(shard_paths))) for a in range(0, len(shard_paths), size)]
    chunk_file = [{name: partial / name / f"chunk-{c:05d}.parquet" for name in names} for c in range(len(chunks))]
    done = [all(f.is_file() for f in files.values()) for files in chunk_file]
    bar = tqdm(total=len(shard_paths), initial=sum(b - a for (a, b), d in zip(chunks, done) if d), unit="img",
               desc=f"{shard} ({len(settings.variants)} variants)", disable=not progress)
    for c, (a, b) in enumerate(chunks):
        if done[c]:
            continue
        per_image = []
        for variants in predict(shard_paths[a:b]):
            per_image.append(variants)
            bar.update()
        ids = image_ids[a:b]
        if settings.keep_variants:
            for v, variant in enumerate(settings.variants):
                write_predictions(detections_table(ids, [d[v] for d in per_image], classes),
                                  chunk_file[c][variant.name])
        merged = [merge_variants(d, settings.merge, settings.iou_thr, settings.max_per_img) for d in per_image]
        write_predictions(detections_table(ids, merged, classes), chunk_file[c][MERGED])
    bar.close()

    for name in names:  # ``merged`` last: its shard file marks the shard as finished
        parts = [pq.read_table(files[name]) for files in chunk_file]
        table = pa.concat_tables(parts) if parts else SCHEMA.empty_table()
        write_predictions(table, out / name / f"{shard}.parquet")
    shutil.rmtree(partial)
    with contextlib.suppress(OSError):  # other shards may still be running
        (out / PARTIAL).rmdir()
    return True
