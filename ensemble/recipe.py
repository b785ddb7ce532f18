"""Ensemble recipes: YAML files naming the prediction inputs, their weights (0 switches one off) and covered classes,
the fusion method and its params, the hierarchy for ancestor copies, ``score_thr`` and ``max_per_image``.

The format, weights, coverage and path placeholders: docs/fusion.md ("Recipes").
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from .suppression import adj_nms, nms, soft_nms
from .wbf import weighted_boxes_fusion

METHODS = {"wbf": weighted_boxes_fusion, "nms": nms, "soft_nms": soft_nms, "adj_nms": adj_nms}
KEYS = ("inputs", "method", "params", "hierarchy", "score_thr", "max_per_image")
INPUT_KEYS = ("path", "weight", "classes")


@dataclass(frozen=True)
class Input:
    """One model's predictions: a path pattern, its weight and the class file it covers (None: every class)."""

    path: str
    weight: float = 1.0
    classes: str | None = None


@dataclass(frozen=True)
class Recipe:
    name: str
    inputs: tuple[Input, ...]
    method: str
    params: dict
    hierarchy: str | None = None
    score_thr: float = 0.0
    max_per_image: int | None = None


def fuse(method: str, params: dict, boxes_list: list, scores_list: list, labels_list: list,
         weights: list[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fuse per-model boxes, scores and labels with ``method`` (a METHODS name), its ``params`` and ``weights``."""
    return METHODS[method](boxes_list, scores_list, labels_list, weights=weights, **params)


def _input(entry, where: str) -> Input:
    if isinstance(entry, str):
        entry = {"path": entry}
    if not isinstance(entry, dict) or set(entry) - set(INPUT_KEYS) or not isinstance(entry.get("path"), str):
        raise ValueError(f"{where} must be a path or a mapping with keys {list(INPUT_KEYS)} ('path' required), "
                         f"got {entry!r}")
    weight = entry.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0 or weight == float("inf"):
        raise ValueError(f"{where}.weight must be a finite number >= 0, got {weight!r}")
    classes = entry.get("classes")
    if classes is not None and not isinstance(classes, str):
        raise ValueError(f"{where}.classes must be the path of a class file, got {classes!r}")
    return Input(entry["path"], float(weight), classes)


def parse_recipe(raw, name: str, source: str) -> Recipe:
    """Check a recipe's parsed YAML (``source`` names it in errors) and build the Recipe called ``name``."""
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: a recipe is a mapping with keys {list(KEYS)}")
    unknown = set(raw) - set(KEYS)
    if unknown:
        raise ValueError(f"{source}: unknown keys {sorted(unknown)} (allowed: {sorted(KEYS)})")

    entries = raw.get("inputs")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{source}: 'inputs' must be a non-empty list of paths or {{path, weight, classes}} "
                         f"mappings")
    inputs = tuple(_input(entry, f"{source}: inputs[{i}]") for i, entry in enumerate(entries))
    if not any(i.weight > 0 for i in inputs):
        raise ValueError(f"{source}: every input has weight 0; at least one must weigh more")

    method = raw.get("method")
    if method not in METHODS:
        raise ValueError(f"{source}: 'method' must be one of {sorted(METHODS)}, got {method!r}")
    params = raw.get("params") or {}
    if not isinstance(params, dict):
        raise ValueError(f"{source}: 'params' must be a mapping, got {params!r}")
    # the parameters after the three per-model lists (named boxes_list... for WBF, boxes... for the NMS family)
    allowed = set(list(inspect.signature(METHODS[method]).parameters)[3:]) - {"weights"}
    if set(params) - allowed:
        raise ValueError(f"{source}: unknown params {sorted(set(params) - allowed)} for {method} "
                         f"(allowed: {sorted(allowed)})")

    hierarchy = raw.get("hierarchy")
    if hierarchy is not None and not isinstance(hierarchy, str):
        raise ValueError(f"{source}: 'hierarchy' must be a path, got {hierarchy!r}")
    score_thr = raw.get("score_thr", 0.0)
    if isinstance(score_thr, bool) or not isinstance(score_thr, (int, float)):
        raise ValueError(f"{source}: 'score_thr' must be a number, got {score_thr!r}")
    cap = raw.get("max_per_image")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        raise ValueError(f"{source}: 'max_per_image' must be a positive integer or absent, got {cap!r}")

    try:  # check the parameter values now rather than on the first image
        empty = [np.zeros((0, 4))] * len(inputs), [np.zeros(0)] * len(inputs), [np.zeros(0, int)] * len(inputs)
        fuse(method, params, *empty, weights=[i.weight for i in inputs])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{source}: bad params for {method}: {e}") from None
    return Recipe(name, inputs, method, dict(params), hierarchy, float(score_thr), cap)


def load_recipe(path: str | Path) -> Recipe:
    """Read and check a recipe; errors name the file and the offending key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"recipe not found: {path}") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({e})") from None
    return parse_recipe(raw, path.stem, str(path))


def expand_placeholders(pattern: str, work: str | Path, split: str, prepared: str | Path | None = None) -> str:
    """``pattern`` with ``{work}``, ``{split}`` and ``{prepared}`` (default ``{work}/prepared``) filled in."""
    prepared = Path(work) / "prepared" if prepared is None else prepared
    return pattern.replace("{work}", str(work)).replace("{split}", split).replace("{prepared}", str(prepared))


def _below(path: Path, root: Path) -> tuple[str, ...] | None:
    """The parts of ``path`` below ``root`` (compared as given, then as absolute paths); None if not below it."""
    for p, r in ((path, root), (path.absolute(), root.absolute())):
        if p.parts[:len(r.parts)] == r.parts:
            return p.parts[len(r.parts):]
    return None


def insert_placeholders(path: str, work: str | Path, split: str, prepared: str | Path | None = None) -> str:
    """The inverse of ``expand_placeholders``: a ``path`` below ``prepared`` (default ``{work}/prepared``), or else
    below ``work``, written from ``{prepared}`` or ``{work}``, and each path component equal to ``split`` written as
    ``{split}``."""
    prepared = Path(work) / "prepared" if prepared is None else Path(prepared)
    parts = Path(path).parts
    for placeholder, root in (("{prepared}", prepared), ("{work}", Path(work))):
        rest = _below(Path(path), root)
        if rest is not None:
            parts = (placeholder, *rest)
            break
    return Path(*["{split}" if p == split else p for p in parts]).as_posix()
