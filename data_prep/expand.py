"""Expansion of the prepared image labels through the hierarchy, and its rule for conflicting labels.

Official rules: a positive image label (Confidence 1) expands to its ancestors and a negative one (Confidence 0)
to its descendants (``contracts.expansion.Relatives``, the one implementation of the hierarchy's relatives).

Collisions: when, after expansion and de-duplication, one image holds both a positive and a negative label of the
same class (e.g. a verified-present Tomato makes Fruit positive while a verified-absent Fruit label makes Tomato
negative), the **positive label wins** and the negative one is dropped: presence of a subclass implies presence of
the class, and the official metric treats both confidences alike (the class counts as verified). Each such
(image, class) pair is counted as a conflict.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from contracts.expansion import Relatives


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
