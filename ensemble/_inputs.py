"""Checks shared by the fusion functions: per-model lists of boxes, scores and labels in the ensemble-boxes layout.

Every fusion function takes ``boxes_list`` (one ``(n_m, 4)`` array of normalised ``x1, y1, x2, y2`` per model),
``scores_list`` (one ``(n_m,)`` array per model) and ``labels_list`` (one ``(n_m,)`` array of integer class ids per
model). Bad input raises ValueError naming the model and the problem, where ensemble-boxes would call ``exit()``,
index out of range or return NaN.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_NUMERIC_KINDS = "biuf"


def model_arrays(boxes_list: Sequence, scores_list: Sequence,
                 labels_list: Sequence) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per-model ``(boxes (n, 4), scores (n,), labels (n,))`` arrays, each in its own dtype (no copies)."""
    n_models = len(boxes_list)
    if len(scores_list) != n_models or len(labels_list) != n_models:
        raise ValueError(f"boxes_list, scores_list and labels_list need one entry per model, got "
                         f"{n_models}, {len(scores_list)} and {len(labels_list)}")
    out = []
    for m, (boxes, scores, labels) in enumerate(zip(boxes_list, scores_list, labels_list)):
        boxes, scores, labels = np.asarray(boxes), np.asarray(scores), np.asarray(labels)
        if boxes.size == 0 and boxes.ndim < 2:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"model {m}: boxes must have shape (n, 4), got {boxes.shape}")
        if scores.ndim != 1 or labels.ndim != 1:
            raise ValueError(f"model {m}: scores and labels must be 1-D, got shapes {scores.shape} and {labels.shape}")
        if len(scores) != len(boxes) or len(labels) != len(boxes):
            raise ValueError(f"model {m}: {len(boxes)} boxes but {len(scores)} scores and {len(labels)} labels")
        for what, arr in (("boxes", boxes), ("scores", scores)):
            if arr.dtype.kind not in _NUMERIC_KINDS:
                raise ValueError(f"model {m}: {what} must be numbers, got dtype {arr.dtype}")
        if labels.dtype.kind not in _NUMERIC_KINDS:
            raise ValueError(f"model {m}: labels must be integer class ids, got dtype {labels.dtype} "
                             f"(map class names to integers first)")
        if boxes.dtype.kind == "f" and np.isnan(boxes).any():
            raise ValueError(f"model {m}: boxes contain NaN")
        if scores.dtype.kind == "f" and not np.isfinite(scores).all():
            raise ValueError(f"model {m}: scores must be finite, got {scores[~np.isfinite(scores)][0]}")
        if labels.dtype.kind == "f" and not np.isfinite(labels).all():
            raise ValueError(f"model {m}: labels must be finite, got {labels[~np.isfinite(labels)][0]}")
        out.append((boxes, scores, labels))
    return out


def model_weights(weights: Sequence[float] | np.ndarray | None, n_models: int) -> np.ndarray:
    """The weights as an array (ones when None), in the dtype ``np.array`` gives them, as ensemble-boxes keeps it.

    Zero weights are accepted, as ensemble-boxes does; negative weights and all-zero weights (every fused score
    would be NaN there) raise."""
    if weights is None:
        return np.ones(n_models)
    weights = np.array(weights)
    if weights.ndim != 1 or len(weights) != n_models:
        raise ValueError(f"weights needs one number per model ({n_models}), got shape {weights.shape}")
    if weights.dtype.kind not in _NUMERIC_KINDS:
        raise ValueError(f"weights must be numbers, got dtype {weights.dtype}")
    if not np.isfinite(weights).all() or (weights < 0).any() or not (weights > 0).any():
        raise ValueError(f"weights must be finite, non-negative and not all 0, got {weights.tolist()}")
    return weights
