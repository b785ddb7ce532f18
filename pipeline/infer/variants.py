"""TTA variants: which (short side, flip) versions of an image are predicted, how each is prepared from the config's
test pipeline, how its boxes map back to the original image, and how an image's variants are fused."""
from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ensemble import FUSION_METHODS

MERGE_METHODS = tuple(FUSION_METHODS)
NO_LONG_CAP = 1 << 30  # a long-side cap no image reaches


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


def parse_scales(text: str) -> list[int]:
    """``'800,1000,1200'`` -> [800, 1000, 1200] (short sides in pixels)."""
    try:
        scales = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--scales {text!r}: expected comma-separated integers, e.g. 800,1000") from None
    if not scales or min(scales) <= 0 or len(set(scales)) != len(scales):
        raise ValueError(f"--scales {text!r}: need distinct positive integers")
    return scales


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


def merge_variants(variants: Sequence[Detections], method: str = "wbf", iou_thr: float | None = None,
                   max_per_img: int = 500) -> Detections:
    """Fuse the detections of one image's TTA variants per class with ``ensemble.FUSION_METHODS[method]``; keep the
    ``max_per_img`` best. A single variant is kept as it is (there is nothing to fuse). ``iou_thr=None`` uses the
    method's default.
    """
    if method not in FUSION_METHODS:
        raise ValueError(f"--merge {method!r}: expected one of {', '.join(MERGE_METHODS)}")
    if len(variants) == 1:
        return top_k(variants[0], max_per_img)
    if sum(len(d.scores) for d in variants) == 0:
        return empty_detections()
    kwargs = {} if iou_thr is None else {"iou_thr": iou_thr}
    boxes, scores, labels = FUSION_METHODS[method](
        [d.boxes for d in variants], [d.scores for d in variants], [d.labels for d in variants], **kwargs)
    # a weighted mean of edges at 1.0 can round to 1.0000001 in float32: clip back into the image
    fused = Detections(np.clip(np.asarray(boxes, np.float32).reshape(-1, 4), 0.0, 1.0), np.asarray(scores, np.float32),
                       np.asarray(labels).astype(np.int64))
    return top_k(keep_valid(fused), max_per_img)


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
