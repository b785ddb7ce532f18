"""What a prepared folder records of the raw dataset it was made from, so that later stages need not be told again.

``make prepare DATA=DIR`` is the only place a user names the raw folder. ``python -m data_prep`` writes, beside the
prepared annotations, ``sources.json`` (for programs) and ``sources.mk`` (for ``make``, which includes it) with the
same absolute paths: the data folder, the images root (``{split}/<ImageID>.jpg``), the validation box and
image-label files it read (Challenge 2019 or V5/V6 names, plain or .gz) and ``sample_submission.csv``. The
make variables are assigned with ``?=``, so a variable given on the command line still wins.

What a dataset needs beyond the official files follows from the dataset itself, never from how its path is spelled:
an optional ``dataset.json`` in the raw folder (the mini dataset writes one) names its default ensemble recipe and the
splits to export as COCO (``read_dataset_settings``).
"""
from __future__ import annotations

import json
from pathlib import Path

from contracts.files import DataError

from . import formats

SOURCES_JSON = "sources.json"
SOURCES_MK = "sources.mk"
SAMPLE_SUBMISSION = "sample_submission.csv"
DATASET_SETTINGS = "dataset.json"
SETTING_TYPES = {"recipe": str, "coco_splits": list}  # recipe: a name under configs/ensemble/
DEFAULT_RECIPE = "challenge"


def read_dataset_settings(data_dir: str | Path) -> dict:
    """The raw folder's ``dataset.json`` (``{}`` when there is none); an unknown key or a wrong type is an error."""
    path = Path(data_dir) / DATASET_SETTINGS
    if not path.is_file():
        return {}
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(settings, dict):
        raise DataError(f"{path}: expected an object with keys {', '.join(SETTING_TYPES)}")
    for key, value in settings.items():
        if key not in SETTING_TYPES:
            raise DataError(f"{path}: unknown key {key!r}; expected {', '.join(SETTING_TYPES)}")
        if not isinstance(value, SETTING_TYPES[key]):
            raise DataError(f"{path}: {key!r} must be a {SETTING_TYPES[key].__name__}, got {value!r}")
    return settings


def record_sources(files: formats.DataFiles, data_dir: Path, images_root: Path, settings: dict) -> dict:
    """The raw paths of one dataset, absolute (``None`` where a file is absent), and its recipe from ``settings``
    (its ``read_dataset_settings``)."""
    def absolute(path: Path | None) -> str | None:
        return str(Path(path).resolve()) if path is not None else None

    validation = files.splits.get("validation")
    sample, _ = formats.find_file(data_dir, (SAMPLE_SUBMISSION,))
    return {
        "data_dir": absolute(data_dir),
        "images_root": absolute(images_root),
        "class_file": absolute(files.classes),
        "hierarchy_file": absolute(files.hierarchy),
        "validation_boxes": absolute(validation.boxes) if validation else None,
        "validation_labels": absolute(validation.labels) if validation else None,
        "sample_submission": absolute(sample),
        "recipe": settings.get("recipe", DEFAULT_RECIPE),
    }


MAKE_VARIABLES = {"DATA": "data_dir", "IMAGES_ROOT": "images_root", "VAL_BOXES": "validation_boxes",
                  "VAL_LABELS": "validation_labels", "SAMPLE_SUBMISSION": "sample_submission",
                  "DATASET_RECIPE": "recipe"}


def write_sources(sources: dict, out_dir: Path) -> None:
    """``sources.json`` and ``sources.mk`` into ``out_dir`` (a path with a space cannot be a make word: refused)."""
    lines = ["# Written by python -m data_prep: the raw files of this prepared dataset. The Makefile includes it;",
             "# a variable given on the command line wins.", ""]
    for variable, key in MAKE_VARIABLES.items():
        value = sources[key]
        if value is None:
            continue
        if any(c.isspace() for c in value) or any(c in value for c in "$#\\"):
            raise DataError(f"{value}: make cannot pass a path holding spaces, '$', '#' or '\\'; "
                                    "move or link the data to a plain path")
        lines.append(f"{variable} ?= {value}")
    (out_dir / SOURCES_JSON).write_text(json.dumps(sources, indent=2) + "\n", encoding="utf-8")
    (out_dir / SOURCES_MK).write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_sources(prepared_dir: str | Path) -> dict:
    """The ``sources.json`` of a prepared folder."""
    path = Path(prepared_dir) / SOURCES_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `make prepare DATA=DIR` (or python -m data_prep) first")
    return json.loads(path.read_text(encoding="utf-8"))
