"""Convert an original TSD checkpoint (Sense-X/TSD, mmdetection 1.1) into a checkpoint of this project's model.

``python -m pipeline.convert_tsd ORIGINAL.pth --config configs/released/NAME.py --out FILE [--label-file F]``

Original key -> ours (checked against the original code, Sense-X/TSD at fb1fdd7):
- ``backbone.``, ``neck.``, ``rpn_head.`` keep their names; ``bbox_head.`` (Cascade: ``bbox_head.{i}.``) and
  ``mask_head.`` move under ``roi_head.``;
- in the TSD head, ``shared_fc.0`` (the offset trunk) -> ``offset_fc``, ``TSD_pc_fcs`` -> ``tsd_cls_fcs``,
  ``TSD_pr_fcs`` -> ``tsd_reg_fcs``, ``TSD_fc_cls`` / ``TSD_fc_reg`` -> ``tsd_fc_cls`` / ``tsd_fc_reg``.

Class layout: mmdet v1 has the background at class index 0, mmdet 3 after the K object classes. Classifier rows
become ``[1..K, 0]``; class-specific regressors drop the background's 4 rows; the mask logits drop the background
channel. An Open Images release numbers its classes by its own label file (``MID,DisplayName,ID`` rows, ID 1..K),
so its rows are also permuted, by MID, to our class order.

Every original tensor must find its place and every tensor of the model must be filled, with the shapes the
model has; the result is loaded strictly into the model built from the config before anything is written.
"""
from __future__ import annotations

import argparse
import csv
import re
import sys
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from contracts.classes import read_classes
from contracts.cli import entry_point
from contracts.files import open_text
from pipeline.checkpoints import TRUST_HELP, load_checkpoint, save_checkpoint

# (pattern on an original key, replacement), first match wins; keys no pattern matches are errors.
NAME_MAP = [
    (r"^(backbone|neck|rpn_head)\.", r"\1."),
    (r"^bbox_head\.(\d+\.)?shared_fc\.0\.", r"roi_head.bbox_head.\1offset_fc."),
    (r"^bbox_head\.(\d+\.)?TSD_pc_fcs\.", r"roi_head.bbox_head.\1tsd_cls_fcs."),
    (r"^bbox_head\.(\d+\.)?TSD_pr_fcs\.", r"roi_head.bbox_head.\1tsd_reg_fcs."),
    (r"^bbox_head\.(\d+\.)?TSD_fc_(cls|reg)\.", r"roi_head.bbox_head.\1tsd_fc_\2."),
    (r"^(bbox_head|mask_head)\.", r"roi_head.\1."),
]
CLASSIFIER = re.compile(r"^roi_head\.bbox_head\.(\d+\.)?(tsd_)?fc_cls\.(weight|bias)$")
REGRESSOR = re.compile(r"^roi_head\.bbox_head\.(\d+\.)?(tsd_)?fc_reg\.(weight|bias)$")
MASK_LOGITS = re.compile(r"^roi_head\.mask_head\.conv_logits\.(weight|bias)$")
OPEN_IMAGES_DATASET = "OpenImagesPreparedDataset"


class ConversionError(ValueError):
    """The original checkpoint does not fit the model of the config (the message names the key or class)."""


def our_name(key: str) -> str | None:
    """The project's name of an original state-dict key; None when no rule covers it."""
    for pattern, replacement in NAME_MAP:
        if re.match(pattern, key):
            return re.sub(pattern, replacement, key, count=1)
    return None


def _rows(value: Tensor, index: Sequence[int]) -> Tensor:
    return value[torch.as_tensor(index, dtype=torch.long, device=value.device)]


def convert_tensor(key: str, value: Tensor, target: Tensor, order: Sequence[int]) -> Tensor:
    """The original tensor ``value`` laid out as our ``target`` (shape and dtype) under our name ``key``.

    ``order[c]`` is the original class id (1..K; 0 is the background) of our class c.
    """
    num_classes = len(order)
    rows = value.shape[0] if value.dim() else 0
    if CLASSIFIER.match(key) and rows == num_classes + 1:
        value = _rows(value, [*order, 0])
    elif REGRESSOR.match(key) and rows == 4 * (num_classes + 1):
        if target.shape[0] == 4:
            raise ConversionError(f"{key}: the original regresses per class ({rows} rows) but the config's head "
                                  f"is class-agnostic (4 rows): use a config with reg_class_agnostic=False "
                                  f"(configs/released/)")
        value = _rows(value, [4 * c + j for c in order for j in range(4)])
    elif MASK_LOGITS.match(key) and rows == num_classes + 1:
        value = _rows(value, order)
    if value.shape != target.shape:
        raise ConversionError(f"{key}: the original has shape {tuple(value.shape)} (after the class layout "
                              f"change), the model {tuple(target.shape)}")
    return value.to(target.dtype)


def _listing(keys: Sequence[str], shown: int = 20) -> str:
    more = f" (and {len(keys) - shown} more)" if len(keys) > shown else ""
    return ", ".join(keys[:shown]) + more


def convert_state_dict(original: Mapping[str, Tensor], target: Mapping[str, Tensor],
                       order: Sequence[int]) -> OrderedDict[str, Tensor]:
    """Our state dict (keys and order of ``target``) from an original one; any key left over on either side is an
    error that names it."""
    converted: dict[str, Tensor] = {}
    unmatched = []
    for key, value in original.items():
        name = our_name(key)
        if name is None or name not in target:
            unmatched.append(f"{key} (as {name})" if name else key)
        else:
            converted[name] = convert_tensor(name, value, target[name], order)
    if unmatched:
        raise ConversionError(f"{len(unmatched)} original key(s) have no counterpart in the model: "
                              f"{_listing(unmatched)}")
    missing = [key for key in target if key not in converted]
    if missing:
        raise ConversionError(f"{len(missing)} model key(s) have no source in the original: {_listing(missing)}")
    return OrderedDict((key, converted[key]) for key in target)


def read_label_file(path: str | Path) -> dict[str, int]:
    """MID -> class id of the original's label file (``cls-label-description.csv``: ``MID,DisplayName,ID``)."""
    ids: dict[str, int] = {}
    with open_text(Path(path)) as f:
        for line, row in enumerate(csv.reader(f), start=1):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 3 or not row[0].strip() or not row[-1].strip().isdigit():
                raise ConversionError(f"{path}: line {line}: expected 'MID,DisplayName,ID', got {','.join(row)!r}")
            mid = row[0].strip()
            if mid in ids:
                raise ConversionError(f"{path}: line {line}: MID {mid} appears twice")
            ids[mid] = int(row[-1])
    return ids


def open_images_order(label_ids: Mapping[str, int], mids: Sequence[str], label_file: str) -> list[int]:
    """The original class id of each of our classes, by MID; the two class sets must be the same."""
    for mid in mids:
        if mid not in label_ids:
            raise ConversionError(f"our class {mid} is not in the release's label file {label_file}")
    ours = set(mids)
    for mid in label_ids:
        if mid not in ours:
            raise ConversionError(f"class {mid} of the release's label file {label_file} is not one of ours")
    order = [label_ids[mid] for mid in mids]
    if sorted(order) != list(range(1, len(mids) + 1)):
        raise ConversionError(f"{label_file}: class ids must be 1..{len(mids)} (0 is the background), "
                              f"got {min(order)}..{max(order)} with {len(set(order))} distinct")
    return order


def _train_dataset(cfg) -> dict:
    dataset = (cfg.get("train_dataloader") or {}).get("dataset") or {}
    while "dataset" in dataset:  # dataset wrappers (RepeatDataset, ...)
        dataset = dataset["dataset"]
    return dataset


def class_order(cfg, num_classes: int, original_meta: Mapping, label_file: str | None = None,
                classes_file: str | None = None) -> tuple[list[int], dict]:
    """(original class id of each of our classes, the ``dataset_meta`` to store).

    Open Images configs (our prepared dataset) need the release's label file and take our class order from
    ``classes_file`` (default: the config's ``prepared_dir/classes.csv``). Other configs keep the original order
    (COCO: both follow the sorted category ids); the release's ``CLASSES``, when it names them, must be ours.
    """
    from mmdet.registry import DATASETS

    dataset = _train_dataset(cfg)
    if dataset.get("type") == OPEN_IMAGES_DATASET:
        if label_file is None:
            raise ConversionError("an Open Images release numbers its classes by its own label file: pass "
                                  "--label-file (its cls-label-description.csv, rows MID,DisplayName,ID)")
        classes = read_classes(classes_file or Path(dataset["prepared_dir"]) / "classes.csv")
        if len(classes) != num_classes:
            raise ConversionError(f"{classes.source} lists {len(classes)} classes, the model has {num_classes}")
        order = open_images_order(read_label_file(label_file), classes.mids, label_file)
        return order, {"classes": classes.names, "mids": classes.mids}
    if label_file is not None:
        raise ConversionError(f"--label-file is for Open Images configs; {cfg.filename} trains on "
                              f"{dataset.get('type')}")
    names = tuple((dataset.get("metainfo") or {}).get("classes")
                  or DATASETS.get(dataset["type"]).METAINFO["classes"])
    if len(names) != num_classes:
        raise ConversionError(f"the config's dataset has {len(names)} classes, the model {num_classes}")
    released = original_meta.get("CLASSES")
    if released:  # v1 wrote COCO names with underscores ('traffic_light'), mmdet 3 with spaces
        if len(released) != num_classes:
            raise ConversionError(f"the release names {len(released)} classes, the model has {num_classes}")
        for c, (theirs, ours) in enumerate(zip(released, names)):
            if theirs.replace("_", " ") != ours.replace("_", " "):
                raise ConversionError(f"class {c}: the release has {theirs!r} where the config has {ours!r}")
    return list(range(1, num_classes + 1)), {"classes": names}


def build_meta_model(cfg) -> torch.nn.Module:
    """The config's detector with its tensors on the meta device (no memory, no init)."""
    from mmdet.registry import MODELS

    with torch.device("meta"):
        return MODELS.build(cfg.model)


def convert(checkpoint: Mapping, cfg, label_file: str | None = None, classes_file: str | None = None) -> dict:
    """Our checkpoint (``meta`` and ``state_dict``) for the model of ``cfg`` from an original checkpoint dict."""
    from mmengine.registry import init_default_scope

    from pipeline.num_classes import model_num_classes

    init_default_scope(cfg.get("default_scope", "mmdet"))
    original = checkpoint.get("state_dict", checkpoint)
    meta = checkpoint.get("meta") or {}
    counts = model_num_classes(cfg.model)
    if len(counts) != 1:
        raise ConversionError(f"the model's heads disagree on num_classes: {sorted(counts)}")
    order, dataset_meta = class_order(cfg, counts.pop(), meta, label_file, classes_file)
    model = build_meta_model(cfg)
    state_dict = convert_state_dict(original, model.state_dict(), order)
    model.load_state_dict(state_dict, strict=True, assign=True)
    return {"meta": {"dataset_meta": dataset_meta, "converted_by": "pipeline.convert_tsd",
                     "original_mmdet_version": str(meta.get("mmdet_version", "unknown"))},
            "state_dict": state_dict}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.convert_tsd",
        description="Convert an original TSD checkpoint (Sense-X/TSD, mmdetection 1.1) into a checkpoint of the "
                    "model a config builds (use configs/released/NAME.py: mmdet v1 box conventions, so the "
                    "converted model predicts what the original did). Names are mapped, the background class "
                    "moves from index 0 to the last, and the result must load strictly; nothing is written "
                    "otherwise.")
    p.add_argument("checkpoint", type=Path, help="the original checkpoint (.pth)")
    p.add_argument("--config", type=Path, required=True, help="config of the target model")
    p.add_argument("--out", type=Path, required=True, help="converted checkpoint to write")
    p.add_argument("--label-file", help="Open Images releases: the release's cls-label-description.csv "
                                        "(MID,DisplayName,ID rows; ID = the release's class index, 1..K)")
    p.add_argument("--classes", help="Open Images: our class file, row i = class i (MID,DisplayName; default: "
                                     "the config's prepared_dir/classes.csv)")
    p.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)
    return p


@entry_point
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from mmengine.config import Config

    if not args.config.is_file():
        raise FileNotFoundError(f"config not found: {args.config}")
    cfg = Config.fromfile(str(args.config))
    original = load_checkpoint(args.checkpoint, "cpu", trust=args.trust_checkpoint)
    converted = convert(original, cfg, args.label_file, args.classes)
    save_checkpoint(converted, args.out)
    print(f"wrote {args.out}: {len(converted['state_dict'])} tensors for {args.config}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
