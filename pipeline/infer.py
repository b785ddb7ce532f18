"""Test-time-augmented inference: ``python -m pipeline.infer CONFIG CHECKPOINT ...`` -> predictions Parquet.

Every image runs through each TTA variant: a short side from the scale list (mmdet ``Resize(keep_ratio=True)``
to ``(long cap, short side)``), with and without a horizontal flip. The boxes of each variant are mapped back to
the original image, normalised to [0, 1] and un-flipped, then the variants are fused per image and class
(weighted boxes fusion by default). Output layout (docs/artifacts.md)::

    OUT/merged/shard-{k:03d}-of-{N:03d}.parquet     fused predictions
    OUT/s{scale}[_flip]/shard-....parquet          one folder per variant (--keep-variants)
    OUT/.partial/shard-...-of-.../                  finished chunks of an unfinished shard (removed at the end)

A finished shard is skipped on a rerun; an interrupted one resumes from its last finished chunk.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import json
import math
import shutil
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from contracts.classes import read_classes
from contracts.cli import INPUT_ERRORS, report_error
from contracts.files import atomic_output
from contracts.predictions import SCHEMA, predictions_table, write_predictions
from data_prep import formats
from pipeline.checkpoints import TRUST_HELP, load_checkpoint

MERGE_METHODS = ("wbf", "nms", "soft_nms", "adj_nms")
MERGED = "merged"
NO_LONG_CAP = 1 << 30  # a long-side cap no image reaches
PARTIAL = ".partial"


class Detections(NamedTuple):
    """Detections of one image: boxes (R, 4) normalised x1y1x2y2 float32, scores (R,) float32, labels (R,) int64."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


def empty_detections() -> Detections:
    return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))


@dataclass(frozen=True)
class Variant:
    """One TTA variant: the short side the image is resized to, and whether it is mirrored left-right."""

    scale: int
    flip: bool

    @property
    def name(self) -> str:
        return f"s{self.scale}_flip" if self.flip else f"s{self.scale}"


def make_variants(scales: Sequence[int], flip: bool) -> list[Variant]:
    """The variants in output order: each scale, followed by its mirrored copy when ``flip``."""
    return [Variant(s, f) for s in scales for f in ((False, True) if flip else (False,))]


# ---------------------------------------------------------------- pure helpers


def parse_shard(text: str) -> tuple[int, int]:
    """``'k/N'`` -> (k, N), with 0 <= k < N (shards are numbered from 0)."""
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected k/N, e.g. 0/4") from None
    if n < 1 or not 0 <= k < n:
        raise ValueError(f"--shard {text!r}: need N >= 1 and 0 <= k < N")
    return k, n


def parse_scales(text: str) -> list[int]:
    """``'800,1000,1200'`` -> [800, 1000, 1200] (short sides in pixels)."""
    try:
        scales = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--scales {text!r}: expected comma-separated integers, e.g. 800,1000") from None
    if not scales or min(scales) <= 0 or len(set(scales)) != len(scales):
        raise ValueError(f"--scales {text!r}: need distinct positive integers")
    return scales


def shard_bounds(num_items: int, k: int, num_shards: int) -> tuple[int, int]:
    """[start, stop) of shard k: contiguous blocks by position, disjoint and covering ``range(num_items)``."""
    return num_items * k // num_shards, num_items * (k + 1) // num_shards


def shard_name(k: int, num_shards: int) -> str:
    return f"shard-{k:03d}-of-{num_shards:03d}"


def resize_scale(short_side: int, config_scale: Sequence[int] | None) -> tuple[int, int]:
    """The ``Resize(keep_ratio=True)`` scale (long cap, short side) of a TTA short side.

    The long cap keeps the config's own long/short ratio, e.g. (1333, 800) -> 1000 gives (1666, 1000), so that a
    larger short side really enlarges typical landscape images instead of hitting the config's long cap. A config
    that tests at native size (``Resize(scale_factor=...)``, ``config_scale`` None) sets no long cap.
    """
    if config_scale is None:
        return NO_LONG_CAP, short_side
    long_side, short = max(config_scale), min(config_scale)
    return int(math.floor(short_side * long_side / short + 0.5)), short_side


def to_normalised(boxes: np.ndarray, width: int, height: int, flipped: bool) -> np.ndarray:
    """Pixel boxes (R, 4) x1y1x2y2 in the original image's frame -> normalised, un-flipped, clipped to [0, 1].

    ``flipped`` says the boxes were predicted on the mirrored image: x -> width - x swaps the two x edges.
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 4) / np.array([width, height, width, height], np.float64)
    if flipped:
        b = np.stack([1.0 - b[:, 2], b[:, 1], 1.0 - b[:, 0], b[:, 3]], axis=1)
    return np.clip(b, 0.0, 1.0).astype(np.float32)


def keep_valid(dets: Detections) -> Detections:
    """Drop boxes with no area (xmin >= xmax or ymin >= ymax): the metric ignores them."""
    b = dets.boxes
    ok = (b[:, 0] < b[:, 2]) & (b[:, 1] < b[:, 3])
    return Detections(b[ok], dets.scores[ok], dets.labels[ok])


def top_k(dets: Detections, k: int) -> Detections:
    """The k highest-scoring detections, by descending score (ties keep their order)."""
    order = np.argsort(-dets.scores, kind="stable")[:k]
    return Detections(dets.boxes[order], dets.scores[order], dets.labels[order])


def merge_function(method: str):
    """The fusion function of ``method`` (ensemble-boxes calling convention: lists of per-source arrays)."""
    import ensemble

    functions = {"wbf": ensemble.weighted_boxes_fusion, "nms": ensemble.nms, "soft_nms": ensemble.soft_nms,
                 "adj_nms": ensemble.adj_nms}
    if method not in functions:
        raise ValueError(f"--merge {method!r}: expected one of {', '.join(MERGE_METHODS)}")
    return functions[method]


def merge_variants(variants: Sequence[Detections], method: str = "wbf", iou_thr: float | None = None,
                   max_per_img: int = 500) -> Detections:
    """Fuse the detections of one image's TTA variants per class; keep the ``max_per_img`` best.

    A single variant is kept as it is (there is nothing to fuse). ``iou_thr=None`` uses the method's default.
    """
    if len(variants) == 1:
        return top_k(variants[0], max_per_img)
    if sum(len(d.scores) for d in variants) == 0:
        return empty_detections()
    kwargs = {} if iou_thr is None else {"iou_thr": iou_thr}
    boxes, scores, labels = merge_function(method)(
        [d.boxes for d in variants], [d.scores for d in variants], [d.labels for d in variants], **kwargs)
    fused = Detections(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32),
                       np.asarray(labels).astype(np.int64))
    return top_k(keep_valid(fused), max_per_img)


def detections_table(image_ids: Sequence[str], dets: Sequence[Detections], classes: Sequence[str]) -> pa.Table:
    """Per-image detections -> a predictions table (``contracts.predictions``), images in the given order."""
    return predictions_table(image_ids, [d.boxes for d in dets], [d.scores for d in dets], [d.labels for d in dets],
                             classes)


def list_images(images_dir: Path, image_list: Path | None = None) -> list[Path]:
    """The images to predict, sorted by ImageID: every ``*.jpg`` of the folder, or those a list file names.

    The list file has one ImageID per line (a ``.jpg`` suffix and further comma-separated fields are ignored, so
    ``sample_submission.csv`` works as it is; a header line ``ImageID``/``ImageId`` is skipped).
    """
    if not images_dir.is_dir():
        raise FileNotFoundError(f"image folder not found: {images_dir}")
    if image_list is None:
        image_ids = sorted(formats.list_images(images_dir).to_pylist())
        if not image_ids:
            raise FileNotFoundError(f"no .jpg images in {images_dir}")
        return [images_dir / f"{image_id}.jpg" for image_id in image_ids]
    paths = {}
    with open(image_list, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            image_id = line.split(",", 1)[0].strip().removesuffix(".jpg")
            if not image_id or (line_no == 1 and image_id.lower() == "imageid"):
                continue
            path = images_dir / f"{image_id}.jpg"
            if not path.is_file():
                raise FileNotFoundError(f"{image_list}:{line_no}: image {image_id!r} not found as {path}")
            paths[image_id] = path
    return [paths[i] for i in sorted(paths)]


# ---------------------------------------------------------------- model and data


def _transform_type(step: dict) -> str:
    return str(step["type"]).split(".")[-1]


def _loads_annotations(step: dict) -> bool:
    name = _transform_type(step)
    return name.startswith("Load") and name.endswith("Annotations")


def inference_pipeline(cfg) -> list[dict]:
    """The config's test pipeline without its annotation-loading steps (there are no annotations to read)."""
    dataset = (cfg.get("test_dataloader") or {}).get("dataset") or {}
    pipeline = dataset.get("pipeline") or cfg.get("test_pipeline")
    if not pipeline:
        raise ValueError("the config has neither test_dataloader.dataset.pipeline nor test_pipeline")
    return [copy.deepcopy(dict(s)) for s in pipeline if not _loads_annotations(s)]


def config_scale(cfg) -> tuple[int, int] | None:
    """The (long, short) scale of the test pipeline's Resize; None when it resizes by ``scale_factor``."""
    for step in inference_pipeline(cfg):
        if _transform_type(step) == "Resize":
            scale = step.get("scale")
            if scale is None:
                return None
            return (scale, scale) if isinstance(scale, int) else (max(scale), min(scale))
    raise ValueError("the config's test pipeline has no Resize step")


def default_scales(cfg) -> list[int]:
    """The TTA short sides: the config's ``tta_scales`` when present, else the test pipeline's own short side."""
    if cfg.get("tta_scales"):
        return [int(s) for s in cfg.tta_scales]
    scale = config_scale(cfg)
    if scale is None:
        raise ValueError("the config tests at native size (Resize by scale_factor) and sets no tta_scales: "
                         "pass --scales, e.g. --scales 160,192")
    return [scale[1]]


class VariantLoader:
    """Loads an image once and runs the config's test pipeline for every variant (picklable for workers)."""

    def __init__(self, cfg, variants: Sequence[Variant]):
        from mmengine.dataset import Compose

        steps = inference_pipeline(cfg)
        if _transform_type(steps[0]) != "LoadImageFromFile":
            raise ValueError(f"the test pipeline must start with LoadImageFromFile, not {steps[0]['type']}")
        base_scale = config_scale(cfg)
        self.load = Compose(steps[:1])
        self.variants = list(variants)
        self.pipelines = []
        for variant in self.variants:
            variant_steps = []
            for step in steps[1:]:
                if _transform_type(step) != "Resize":
                    variant_steps.append(step)
                    continue
                resize = {k: v for k, v in step.items() if k != "scale_factor"}
                variant_steps.append(dict(resize, scale=resize_scale(variant.scale, base_scale), keep_ratio=True))
                if variant.flip:  # mirror after resizing, as mmdet's test-time augmentation does
                    variant_steps.append(dict(type="RandomFlip", prob=1.0, direction="horizontal"))
            self.pipelines.append(Compose(variant_steps))

    def __call__(self, path: Path) -> list[dict]:
        """The packed inputs (``inputs``, ``data_samples``) of every variant of one image."""
        loaded = self.load(dict(img_path=str(path), img_id=path.stem))
        if loaded is None:
            raise ValueError(f"could not read image {path}")
        return [pipeline(dict(loaded)) for pipeline in self.pipelines]


class _ImageVariants:
    """Map-style dataset over image paths for a DataLoader: item i = the variants of image i."""

    def __init__(self, paths: Sequence[Path], loader: VariantLoader):
        self.paths, self.loader = list(paths), loader

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> list[dict]:
        return self.loader(self.paths[i])


def load_checkpoint_file(path: Path, trust: bool = False) -> dict:
    """Read a checkpoint: in full when it is ours (in a training work dir), else without running its pickle code
    unless ``trust`` (:func:`pipeline.checkpoints.load_checkpoint`)."""
    return load_checkpoint(path, "cpu", trust)


def set_test_cfg(cfg, score_thr: float, max_per_img: int) -> None:
    """Set the model's final-stage score threshold and detection cap (two-stage ``rcnn`` or single-stage)."""
    test_cfg = cfg.model.get("test_cfg")
    if test_cfg is None:
        raise ValueError("the config's model has no test_cfg")
    target = test_cfg.get("rcnn") or test_cfg
    target["score_thr"] = score_thr
    target["max_per_img"] = max_per_img


def load_config(config: Path | str, score_thr: float, max_per_img: int):
    """Read an mmdet config (its ``custom_imports`` load the plugin) and set its test score_thr / max_per_img."""
    from mmengine.config import Config

    if not Path(config).is_file():
        raise FileNotFoundError(f"config not found: {config}")
    cfg = Config.fromfile(str(config))
    set_test_cfg(cfg, score_thr, max_per_img)
    return cfg


def load_detector(cfg, checkpoint: Path, device: str, trust: bool = False):
    """Build the detector of ``cfg``, load ``checkpoint`` into it, eval mode. Returns (model, checkpoint meta)."""
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    from mmengine.runner import load_state_dict

    init_default_scope(cfg.get("default_scope", "mmdet"))
    from mmdet.registry import MODELS

    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    ckpt = load_checkpoint_file(checkpoint, trust)
    load_state_dict(model, ckpt.get("state_dict", ckpt), strict=True)
    return model.to(device).eval(), ckpt.get("meta", {})


def resolve_classes(classes_file: Path | None, meta: dict, cfg) -> list[str]:
    """The MIDs by class index: the ``--classes`` file, else the ``mids`` the training dataset saved in the
    checkpoint's ``dataset_meta``; their count must be the model's ``num_classes``."""
    from pipeline.num_classes import model_num_classes

    if classes_file is not None:
        mids, source = list(read_classes(classes_file).mids), str(classes_file)
    else:
        mids, source = list((meta.get("dataset_meta") or {}).get("mids") or []), "the checkpoint's dataset_meta"
        if not mids:
            raise ValueError("the checkpoint names no class MIDs: pass --classes FILE "
                             "(e.g. WORK/prepared/classes.csv)")
    counts = model_num_classes(cfg.model)
    if counts and counts != {len(mids)}:
        raise ValueError(f"{source} lists {len(mids)} classes but the model has num_classes="
                         f"{', '.join(map(str, sorted(counts)))}")
    return [str(m) for m in mids]


def predict_images(model, loader: VariantLoader, paths: Sequence[Path], batch_size: int, workers: int = 0,
                   amp: bool = False) -> Iterator[list[Detections]]:
    """Yield, per image in order, the detections of every variant (normalised, un-flipped, in the original frame)."""
    import torch
    from torch.utils.data import DataLoader

    device = next(model.parameters()).device
    data = DataLoader(_ImageVariants(paths, loader), batch_size=batch_size, num_workers=workers, collate_fn=list)
    with torch.no_grad(), torch.autocast(device.type, enabled=amp):
        for batch in data:
            per_variant = []
            for v, variant in enumerate(loader.variants):
                samples = model.test_step(dict(inputs=[item[v]["inputs"] for item in batch],
                                               data_samples=[item[v]["data_samples"] for item in batch]))
                per_variant.append([_sample_detections(s, variant.flip) for s in samples])
            yield from (list(image) for image in zip(*per_variant))


def _sample_detections(sample, flipped: bool) -> Detections:
    """One mmdet prediction (pixel boxes of the original-size frame) -> normalised, un-flipped, valid boxes."""
    pred = sample.pred_instances
    height, width = sample.ori_shape[:2]
    boxes = to_normalised(pred.bboxes.float().cpu().numpy(), width, height, flipped)
    dets = Detections(boxes, pred.scores.float().cpu().numpy(), pred.labels.cpu().numpy().astype(np.int64))
    return keep_valid(dets)


# ---------------------------------------------------------------- shards, chunks and resuming


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


# ---------------------------------------------------------------- command line


def _argument_type(parse):
    """``parse`` as an argparse type: its ValueError message becomes the usage error."""
    def convert(text: str):
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return convert


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.infer",
        description="Predict boxes with test-time augmentation (scales x horizontal flip), fuse the variants per "
                    "image and write predictions Parquet (OUT/merged/shard-K-of-N.parquet; docs/artifacts.md).")
    p.add_argument("config", type=Path, help="mmdet config of the model (loads the plugin via custom_imports)")
    p.add_argument("checkpoint", type=Path, help="trained checkpoint (.pth)")
    p.add_argument("--split", choices=("validation", "test"), required=True,
                   help="which split the images are (names the default output folder)")
    p.add_argument("--images", type=Path, required=True, help="folder of <ImageID>.jpg")
    p.add_argument("--image-list", type=Path,
                   help="predict only these images: one ImageID per line (sample_submission.csv works too)")
    p.add_argument("--out", type=Path,
                   help="output folder (default: WORK/predictions/<config name>/<split>)")
    p.add_argument("--work", type=Path, default=Path("work"), help="WORK folder for the default --out (work)")
    p.add_argument("--classes", type=Path,
                   help="class file, row i = class i (MID,DisplayName; e.g. WORK/prepared/classes.csv); "
                        "default: the MIDs saved in the checkpoint's dataset metainfo")
    p.add_argument("--scales", type=_argument_type(parse_scales),
                   help="TTA short sides, e.g. 800,1000,1200 (default: the config's tta_scales, else its test scale)")
    p.add_argument("--no-flip", action="store_true", help="no horizontally mirrored variants")
    p.add_argument("--merge", choices=MERGE_METHODS, default="wbf", help="how variants are fused (default wbf)")
    p.add_argument("--iou-thr", type=float, help="IoU threshold of the fusion (default: the method's own)")
    p.add_argument("--keep-variants", action="store_true", help="also write each variant's predictions")
    p.add_argument("--score-thr", type=float, default=0.001, help="model score threshold (default 0.001)")
    p.add_argument("--max-per-img", type=int, default=500,
                   help="detections per image, per variant and after fusion (default 500)")
    p.add_argument("--shard", type=_argument_type(parse_shard), default=(0, 1),
                   help="predict shard k of N (0-based) of the sorted image list (default 0/1)")
    p.add_argument("--batch-size", type=int, default=1, help="images per forward pass (default 1)")
    p.add_argument("--chunk-size", type=int, default=500,
                   help="images per resumable chunk of a shard (default 500)")
    p.add_argument("--workers", type=int, help="image loading processes (default 4 on cuda, 0 on cpu)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    p.add_argument("--amp", action="store_true", help="mixed-precision (autocast) forward passes (cuda only)")
    p.add_argument("--overwrite", action="store_true", help="redo the shard even if it is finished")
    p.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.batch_size < 1 or args.chunk_size < 1 or args.max_per_img < 1:
        parser.error("--batch-size, --chunk-size and --max-per-img must be >= 1")
    if args.amp and device != "cuda":
        parser.error("--amp needs --device cuda (mixed precision is not used on CPU)")
    out = args.out or args.work / "predictions" / args.config.stem / args.split
    k, num_shards = args.shard
    try:  # every input is checked before the first image is predicted
        for path, what in ((args.config, "config"), (args.checkpoint, "checkpoint")):
            if not path.is_file():
                raise FileNotFoundError(f"{what} not found: {path}")
        paths = list_images(args.images, args.image_list)
        cfg = load_config(args.config, args.score_thr, args.max_per_img)
        variants = make_variants(args.scales or default_scales(cfg), flip=not args.no_flip)
        settings = InferSettings(str(args.config), str(args.checkpoint), variants, args.merge, args.iou_thr,
                                 args.score_thr, args.max_per_img, args.keep_variants, args.chunk_size,
                                 args.batch_size)
        if not args.overwrite and shard_done(out, shard_name(k, num_shards), settings):
            print(f"{out}: {shard_name(k, num_shards)} already finished (--overwrite redoes it)")
            return 0
        model, meta = load_detector(cfg, args.checkpoint, device, args.trust_checkpoint)
        classes = resolve_classes(args.classes, meta, cfg)
    except (*INPUT_ERRORS, KeyError, RuntimeError) as error:  # mmengine and load_state_dict raise these too
        return report_error(error)
    loader = VariantLoader(cfg, variants)
    workers = args.workers if args.workers is not None else (4 if device == "cuda" else 0)

    def predict(batch_paths):
        return predict_images(model, loader, batch_paths, args.batch_size, workers, args.amp)

    run_shard(out, k, num_shards, paths, predict, classes, settings, overwrite=args.overwrite)
    print(f"wrote {out / MERGED / shard_name(k, num_shards)}.parquet ({', '.join(v.name for v in variants)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
