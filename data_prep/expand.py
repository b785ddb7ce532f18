"""Hierarchical expansion of labels and boxes, vectorised over class-index arrays.

Official rules: a box gets one copy per ancestor class; a positive image label (Confidence 1) expands to its
ancestors and a negative one (Confidence 0) to its descendants. Ancestors and descendants are sets, so a
multi-parent class never yields two copies for one shared ancestor.

Collisions: when, after expansion and de-duplication, one image holds both a positive and a negative label of the
same class (e.g. a verified-present Tomato makes Fruit positive while a verified-absent Fruit label makes Tomato
negative), the **positive label wins** and the negative one is dropped: presence of a subclass implies presence of
the class, and the official metric treats both confidences alike (the class counts as verified). Each such
(image, class) pair is counted as a conflict.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from contracts.hierarchy import Hierarchy


@dataclass(frozen=True)
class Relatives:
    """Per class index, the class indices of its ancestors (or descendants), as CSR arrays."""
    offsets: np.ndarray  # int64, length n_classes + 1
    targets: np.ndarray  # int16

    @classmethod
    def build(cls, hierarchy: Hierarchy, classes: Sequence[str], direction: str) -> Relatives:
        pairs = hierarchy.expansion_pairs(classes, direction)
        pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
        counts = np.bincount(pairs[:, 0], minlength=len(classes))
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(offsets, pairs[:, 1].astype(np.int16))

    def expand(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For rows with class ``labels``: (source row, relative class) for every relative of every row, grouped by
        row in row order, relatives in class order."""
        starts = self.offsets[labels]
        counts = self.offsets[labels + 1] - starts
        rows = np.repeat(np.arange(len(labels), dtype=np.int64), counts)
        first = np.repeat(np.cumsum(counts) - counts, counts)
        positions = starts[rows] + (np.arange(len(rows), dtype=np.int64) - first)
        return rows, self.targets[positions]


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (a sort and a neighbour comparison: much faster than ``np.unique`` on large int
    arrays)."""
    s = np.sort(values)
    return s[np.concatenate([[True], s[1:] != s[:-1]])] if len(s) else s


@dataclass
class ExpandedLabels:
    image_idx: np.ndarray   # int32
    label: np.ndarray       # int16
    confidence: np.ndarray  # int8
    conflicts: int          # (image, class) pairs that were both positive and negative; resolved as positive


def _unique_keys(image_idx: np.ndarray, labels: np.ndarray, relatives: Relatives, n_classes: int) -> np.ndarray:
    """Sorted distinct ``image * n_classes + class`` keys of the rows and of their relatives."""
    rows, extra = relatives.expand(labels)
    img = np.concatenate([image_idx, image_idx[rows]]).astype(np.int64)
    cls = np.concatenate([labels, extra]).astype(np.int64)
    return sorted_unique(img * n_classes + cls)


def expand_image_labels(image_idx: np.ndarray, labels: np.ndarray, confidence: np.ndarray, n_classes: int,
                        ancestors: Relatives, descendants: Relatives) -> ExpandedLabels:
    """Positive labels to ancestors, negative to descendants, de-duplicated, sorted by (image, class); on a
    collision the positive label wins (see the module docstring)."""
    pos = confidence == 1
    positive = _unique_keys(image_idx[pos], labels[pos], ancestors, n_classes)
    negative = _unique_keys(image_idx[~pos], labels[~pos], descendants, n_classes)
    clash = np.isin(negative, positive, assume_unique=True)
    keys = np.concatenate([positive, negative[~clash]])
    conf = np.concatenate([np.ones(len(positive), np.int8), np.zeros(int((~clash).sum()), np.int8)])
    order = np.argsort(keys, kind="stable")
    keys, conf = keys[order], conf[order]
    return ExpandedLabels((keys // n_classes).astype(np.int32), (keys % n_classes).astype(np.int16), conf,
                          int(clash.sum()))
