"""Ensemble recipes: YAML files naming the prediction inputs, their weights, the fusion and the post-processing.

A recipe (``configs/ensemble/NAME.yaml``; NAME names the output folder)::

    inputs:                     # one entry per model: {path, weight} or a bare path (weight 1)
      - path: "{work}/predictions/mini_tsd/{split}/merged"
        weight: 2
      - "{work}/predictions/mini_baseline/{split}/merged"
    method: wbf                 # wbf | nms | soft_nms | adj_nms (ensemble.wbf / ensemble.nms)
    params:                     # keyword arguments of that function (weights come from `inputs`)
      iou_thr: 0.55
      skip_box_thr: 0.0
      conf_type: avg
    hierarchy: "{prepared}/hierarchy.json"   # the prepared dataset's hierarchy; absent: no ancestor copies
    score_thr: 0.001            # drop fused boxes scoring below it (default 0)
    max_per_image: 300          # keep the best rows of each image, ancestor copies included (default: all)

Weights act as in ensemble-boxes: WBF weighs each model's boxes; the NMS family replaces each model's scores by
``score * weight / sum(weights)`` (so with equal weights, scores are divided by the number of inputs: mind
``score_thr``).

A path is a Parquet file, a folder of Parquet files (shards) or a glob; ``{work}``, ``{split}`` and ``{prepared}``
are replaced by the ``--work``, ``--split`` and ``--prepared`` values (``--prepared`` defaults to
``{work}/prepared``), in ``hierarchy`` too. Relative paths are relative to the current
directory (the repository root under ``make``).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from .nms import adj_nms, nms, soft_nms
from .wbf import weighted_boxes_fusion

METHODS = {"wbf": weighted_boxes_fusion, "nms": nms, "soft_nms": soft_nms, "adj_nms": adj_nms}
_KEYS = {"inputs", "method", "params", "hierarchy", "score_thr", "max_per_image"}


@dataclass(frozen=True)
class Recipe:
    name: str
    inputs: tuple[tuple[str, float], ...]  # (path pattern, weight) per model
    method: str
    params: dict
    hierarchy: str | None = None
    score_thr: float = 0.0
    max_per_image: int | None = None

    def fuse(self, boxes_list, scores_list, labels_list):
        """Fuse one image's per-model predictions with the recipe's method, parameters and weights."""
        return METHODS[self.method](boxes_list, scores_list, labels_list,
                                    weights=[w for _, w in self.inputs], **self.params)


def load_recipe(path: str | Path) -> Recipe:
    """Read and check a recipe; errors name the file and the offending key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"recipe not found: {path}") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a recipe is a mapping with keys {sorted(_KEYS)}")
    unknown = set(raw) - _KEYS
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)} (allowed: {sorted(_KEYS)})")

    entries = raw.get("inputs")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: 'inputs' must be a non-empty list of paths or {{path, weight}} mappings")
    inputs = []
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            entry = {"path": entry}
        if not isinstance(entry, dict) or set(entry) - {"path", "weight"} or not isinstance(entry.get("path"), str):
            raise ValueError(f"{path}: inputs[{i}] must be a path or a mapping with 'path' and 'weight', got {entry!r}")
        weight = entry.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
            raise ValueError(f"{path}: inputs[{i}].weight must be a positive number, got {weight!r}")
        inputs.append((entry["path"], float(weight)))

    method = raw.get("method")
    if method not in METHODS:
        raise ValueError(f"{path}: 'method' must be one of {sorted(METHODS)}, got {method!r}")
    params = raw.get("params") or {}
    if not isinstance(params, dict):
        raise ValueError(f"{path}: 'params' must be a mapping, got {params!r}")
    # the parameters after the three per-model lists (named boxes_list... for WBF, boxes... for the NMS family)
    allowed = set(list(inspect.signature(METHODS[method]).parameters)[3:]) - {"weights"}
    if set(params) - allowed:
        raise ValueError(f"{path}: unknown params {sorted(set(params) - allowed)} for {method} "
                         f"(allowed: {sorted(allowed)})")

    hierarchy = raw.get("hierarchy")
    if hierarchy is not None and not isinstance(hierarchy, str):
        raise ValueError(f"{path}: 'hierarchy' must be a path, got {hierarchy!r}")
    score_thr = raw.get("score_thr", 0.0)
    if isinstance(score_thr, bool) or not isinstance(score_thr, (int, float)):
        raise ValueError(f"{path}: 'score_thr' must be a number, got {score_thr!r}")
    cap = raw.get("max_per_image")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        raise ValueError(f"{path}: 'max_per_image' must be a positive integer or absent, got {cap!r}")

    recipe = Recipe(path.stem, tuple(inputs), method, dict(params), hierarchy, float(score_thr), cap)
    try:  # check the parameter values now rather than on the first image
        recipe.fuse([np.zeros((0, 4))] * len(inputs), [np.zeros(0)] * len(inputs), [np.zeros(0, int)] * len(inputs))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: bad params for {method}: {e}") from None
    return recipe


def expand_placeholders(pattern: str, work: str | Path, split: str, prepared: str | Path | None = None) -> str:
    """``pattern`` with ``{work}``, ``{split}`` and ``{prepared}`` (default ``{work}/prepared``) filled in."""
    prepared = Path(work) / "prepared" if prepared is None else prepared
    return pattern.replace("{work}", str(work)).replace("{split}", split).replace("{prepared}", str(prepared))

