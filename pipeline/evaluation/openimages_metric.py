"""The Open Images Challenge 2019 metric (``contracts.metric``) as an mmengine metric for the val/test loops.

Ground truth comes from a prepared split (``boxes.parquet`` without the ``IsExpanded`` copies,
``image_labels.parquet``, ``hierarchy.json``), restricted to the images the loop predicted; the official evaluator
expands it again, which leaves the already expanded image labels unchanged. Predictions are normalised by the
original image size and, as a submission must, copied to every ancestor class of their label before scoring.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from mmdet.registry import METRICS
from mmengine.evaluator import BaseMetric

from contracts.expansion import with_ancestors
from contracts.hierarchy import Hierarchy
from contracts.metric import evaluate
from contracts.predictions import predictions_table, to_frame
from pipeline.datasets.open_images import prepared_classes


def prepared_ground_truth(prepared_dir: str | Path, split: str = "validation"
                          ) -> tuple[pd.DataFrame, pd.DataFrame, Hierarchy, list[str]]:
    """(gt_boxes, gt_labels, hierarchy, class MIDs) of a prepared split in the layout ``submit.metric.evaluate``
    takes: boxes ImageID, LabelName, XMin, XMax, YMin, YMax, IsGroupOf; labels ImageID, LabelName, Confidence."""
    prepared_dir = Path(prepared_dir)
    mids = prepared_classes(prepared_dir).mids
    split_dir = prepared_dir / split
    for name in ("images.parquet", "boxes.parquet", "image_labels.parquet"):
        if not (split_dir / name).is_file():
            raise FileNotFoundError(f"prepared annotations not found: {split_dir / name} (run `make prepare` first)")
    image_ids = pq.read_table(split_dir / "images.parquet", columns=["ImageID"])["ImageID"].to_numpy()
    mid_of_label = np.asarray(mids, dtype=object)
    boxes = pq.read_table(split_dir / "boxes.parquet").to_pandas()
    boxes = boxes[boxes["IsExpanded"] != 1]
    gt_boxes = pd.DataFrame({"ImageID": image_ids[boxes["image_idx"].to_numpy()],
                             "LabelName": mid_of_label[boxes["label"].to_numpy()],
                             **{c: boxes[c].to_numpy(np.float64) for c in ("XMin", "XMax", "YMin", "YMax")},
                             "IsGroupOf": boxes["IsGroupOf"].to_numpy()})
    labels = pq.read_table(split_dir / "image_labels.parquet").to_pandas()
    gt_labels = pd.DataFrame({"ImageID": image_ids[labels["image_idx"].to_numpy()],
                              "LabelName": mid_of_label[labels["label"].to_numpy()],
                              "Confidence": labels["Confidence"].to_numpy()})
    return gt_boxes, gt_labels, Hierarchy.from_json(prepared_dir / "hierarchy.json"), list(mids)


@METRICS.register_module()
class OpenImagesChallengeMetric(BaseMetric):
    """Challenge 2019 mAP@0.5 (hierarchy-expanded, group-of aware) of the predictions on a prepared split.

    Args:
        prepared_dir: the ``make prepare`` output holding ``{split}/`` and ``hierarchy.json``.
        split: the evaluated split (the dataloader must iterate the same images).
        add_ancestors: copy each prediction to its ancestor classes first (what the submission does).
    """

    default_prefix = "openimages"

    def __init__(self, prepared_dir: str, split: str = "validation", add_ancestors: bool = True,
                 collect_device: str = "cpu", prefix: str | None = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.prepared_dir = prepared_dir
        self.split = split
        self.add_ancestors = add_ancestors

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            pred = sample["pred_instances"]
            height, width = sample["ori_shape"][:2]
            boxes = pred["bboxes"].detach().cpu().numpy().astype(np.float64)
            boxes = np.clip(boxes / np.array([width, height, width, height]), 0.0, 1.0).astype(np.float32)
            self.results.append((sample["img_id"], boxes, pred["scores"].detach().cpu().numpy(),
                                 pred["labels"].detach().cpu().numpy()))

    def compute_metrics(self, results: list) -> dict:
        """mAP over the images the loop predicted (all of the split, or the dataloader's subset of it)."""
        gt_boxes, gt_labels, hierarchy, mids = prepared_ground_truth(self.prepared_dir, self.split)
        image_ids, boxes, scores, labels = zip(*results) if results else ((), (), (), ())
        seen = set(image_ids)
        gt_boxes = gt_boxes[gt_boxes["ImageID"].isin(seen)]
        gt_labels = gt_labels[gt_labels["ImageID"].isin(seen)]
        predictions = to_frame(predictions_table(image_ids, boxes, scores, labels, mids))
        if self.add_ancestors:
            predictions = with_ancestors(predictions, hierarchy, mids)
        result = evaluate(predictions, gt_boxes, gt_labels, hierarchy, mids)
        return {"mAP": result.map}
