"""`make prepare`: raw Open Images annotation files -> the prepared Parquet layout of docs/artifacts.md.

Per split: boxes and image labels are read (see :mod:`data_prep.formats`), bad rows dropped and counted by reason,
ImageIDs sorted and indexed, image labels expanded through the hierarchy (:mod:`data_prep.expand`; a positive
label wins over a colliding negative one), optionally boxes copied to every ancestor, then everything is written into
a temporary folder inside the output directory and renamed into place. Reruns on unchanged inputs give
byte-identical files.
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from contracts.classes import read_classes
from contracts.expansion import Relatives
from contracts.files import DataError, read_bytes
from contracts.hierarchy import Hierarchy

from . import formats
from .coco import export_coco
from .expand import ExpandedLabels, expand_image_labels, sorted_unique
from .formats import SplitFiles
from .sources import SOURCES_JSON, SOURCES_MK, read_dataset_settings, record_sources, write_sources

BOX_COLUMNS = ("XMin", "YMin", "XMax", "YMax")
FLAG_COLUMNS = ("IsGroupOf", "IsOccluded", "IsTruncated", "IsDepiction", "IsInside")
# Every top-level entry this stage owns in the output directory (entries not produced by a run are removed).
MANAGED = ("classes.csv", "hierarchy.json", "summary.json", SOURCES_JSON, SOURCES_MK, *formats.SPLITS, "experts",
           "coco")
PARQUET_OPTIONS = dict(compression="zstd", compression_level=1, use_dictionary=False, write_statistics=True,
                       version="2.6", data_page_version="1.0", row_group_size=1 << 20)


@dataclass
class SplitData:
    """One prepared split in memory: sorted ImageIDs, boxes sorted by image, expanded image labels."""
    image_ids: pa.Array           # strings, sorted; position = image_idx
    boxes: dict[str, np.ndarray]  # image_idx, label, XMin, YMin, XMax, YMax, flags, IsExpanded
    box_row: np.ndarray           # int64: data row (0-based, header excluded) of each box in the raw box file
    labels: ExpandedLabels
    polygons: dict[int, list[str]] | None = None  # raw box data row -> normalised polygons ("x y x y ...")


# ----------------------------------------------------------------------------------------------- reading


def _used_ids(checked: formats.Checked) -> pa.Array:
    used = np.zeros(len(checked.image_ids), bool)
    used[checked.image_pos[checked.keep]] = True
    return checked.image_ids.filter(pa.array(used))


def _image_index(checked: formats.Checked, split_ids: pa.Array) -> np.ndarray:
    """Per kept row of ``checked``, the position of its ImageID in the sorted split ImageIDs."""
    lut = pc.index_in(checked.image_ids, value_set=split_ids).fill_null(-1).to_numpy().astype(np.int32)
    return lut[checked.image_pos[checked.keep]]


def load_split(files: SplitFiles, mids: Sequence[str], hierarchy: Hierarchy, image_dir: Path | None, *,
               strict: bool = False, expand_boxes: bool = False, with_polygons: bool = False,
               progress: bool = True) -> tuple[SplitData, dict]:
    """Read, validate and index one split; returns the data and its summary entry (dropped rows by reason)."""
    steps = tqdm(total=6, desc=f"{files.boxes.name}: listing images", disable=not progress, leave=False,
                 bar_format="{desc} [step {n_fmt}/{total_fmt}, {elapsed}]")

    def step(name: str) -> None:
        steps.update()
        steps.set_description_str(f"{files.boxes.name}: {name}")

    class_index = {mid: i for i, mid in enumerate(mids)}
    ancestors = Relatives.from_hierarchy(hierarchy, mids, "ancestors")
    listing = formats.list_images(image_dir) if image_dir is not None else None
    step("reading boxes")
    raw_boxes = formats.read_boxes(files.boxes, progress)
    step("checking boxes")
    boxes_ok = formats.check_rows(raw_boxes, class_index, listing, strict, is_boxes=True)
    step("reading and checking image labels")
    summary: dict = {"box_file": files.boxes.name, "box_format": raw_boxes.format,
                     "label_file": files.labels.name if files.labels else None}
    if files.labels is not None:
        raw_labels = formats.read_image_labels(files.labels, progress)
        labels_ok = formats.check_rows(raw_labels, class_index, listing, strict, is_boxes=False)
        summary["label_format"] = raw_labels.format
        used = pa.concat_arrays([_used_ids(boxes_ok), _used_ids(labels_ok)])
    else:
        raw_labels = labels_ok = None
        used = _used_ids(boxes_ok)
    uniq = pc.unique(used)
    split_ids = uniq.take(pc.sort_indices(uniq))
    step("indexing and expanding boxes" if expand_boxes else "indexing boxes")

    keep = boxes_ok.keep
    box_row = np.flatnonzero(keep).astype(np.int64)
    boxes = {"image_idx": _image_index(boxes_ok, split_ids), "label": boxes_ok.labels[keep]}
    for c in BOX_COLUMNS:
        boxes[c] = raw_boxes.numbers[c][keep]
    for c in FLAG_COLUMNS:
        boxes[c] = raw_boxes.small[c][keep]
    boxes["IsExpanded"] = np.zeros(len(box_row), np.int8)
    del raw_boxes
    if expand_boxes:
        rows, parents = ancestors.expand(boxes["label"])
        copies = {c: v[rows] for c, v in boxes.items()}
        copies["label"] = parents.astype(boxes["label"].dtype)
        copies["IsExpanded"] = np.ones(len(rows), np.int8)
        boxes = {c: np.concatenate([boxes[c], copies[c]]) for c in boxes}
        box_row = np.concatenate([box_row, box_row[rows]])
    order = np.argsort(boxes["image_idx"], kind="stable")
    boxes = {c: v[order] for c, v in boxes.items()}
    box_row = box_row[order]

    step("expanding image labels")
    if labels_ok is not None:
        lk = labels_ok.keep
        img, lab, conf = _image_index(labels_ok, split_ids), labels_ok.labels[lk], raw_labels.small["Confidence"][lk]
        labels = expand_image_labels(img, lab, conf, len(mids), ancestors,
                                     Relatives.from_hierarchy(hierarchy, mids, "descendants"))
        before = {"before_expansion": int(lk.sum()), "positive": int((conf == 1).sum()),
                  "negative": int((conf == 0).sum())}
    else:
        labels = ExpandedLabels(np.zeros(0, np.int32), np.zeros(0, np.int16), np.zeros(0, np.int8), 0)
        before = {"before_expansion": 0, "positive": 0, "negative": 0}

    polygons = None
    if with_polygons and files.polygons is not None:
        polygons = _polygons_by_row(files.polygons, boxes_ok)
    data = SplitData(split_ids, boxes, box_row, labels, polygons)
    summary.update(split_counts(data, mids))
    summary["image_labels"] = {**before, "after_expansion": len(labels.label), "conflicts": labels.conflicts}
    summary["dropped"] = {"boxes": boxes_ok.dropped, "image_labels": labels_ok.dropped if labels_ok else {}}
    step("done")
    steps.close()
    return data, summary


def _polygons_by_row(path: Path, boxes_ok: formats.Checked) -> dict[int, list[str]]:
    """Polygons keyed by box data row, checked against the box file (row exists, same ImageID)."""
    rows, ids, polys = formats.read_polygons(path)
    n = len(boxes_ok.keep)
    out: dict[int, list[str]] = {}
    for line, (row, image, poly) in enumerate(zip(rows.tolist(), ids, polys), start=2):
        if row >= n:
            raise DataError(f"{path}: line {line}: BoxRow {row} is past the last box row ({n - 1})")
        expected = boxes_ok.image_ids[int(boxes_ok.image_pos[row])].as_py()
        if expected != image:
            raise DataError(f"{path}: line {line}: BoxRow {row} belongs to image {expected}, not {image}")
        if boxes_ok.keep[row]:
            out.setdefault(row, []).append(poly)
    return out


def split_counts(data: SplitData, mids: Sequence[str]) -> dict:
    """Image, box and label counts of a prepared split (boxes per class by MID, ancestor copies excluded)."""
    boxes = data.boxes
    original = boxes["IsExpanded"] == 0
    per_class = np.bincount(boxes["label"][original], minlength=len(mids))
    return {
        "images": len(data.image_ids),
        "images_with_boxes": int(np.count_nonzero(np.bincount(boxes["image_idx"], minlength=1))),
        "boxes": int(original.sum()),
        "expanded_boxes": int((~original).sum()),
        "group_of": int((boxes["IsGroupOf"][original] == 1).sum()),
        "image_labels": {"after_expansion": len(data.labels.label)},
        "boxes_per_class": {mid: int(n) for mid, n in zip(mids, per_class)},
    }


# ----------------------------------------------------------------------------------------------- subsets


def restrict(data: SplitData, keep_classes: np.ndarray, n_classes: int) -> SplitData:
    """The split restricted to ``keep_classes`` (sorted class indices, re-indexed 0..k-1) and to the images holding
    at least one of their boxes; image labels are kept for those images and classes."""
    remap = np.full(n_classes, -1, np.int16)
    remap[keep_classes] = np.arange(len(keep_classes), dtype=np.int16)
    box_mask = remap[data.boxes["label"]] >= 0
    images = sorted_unique(data.boxes["image_idx"][box_mask])
    image_remap = np.full(len(data.image_ids), -1, np.int32)
    image_remap[images] = np.arange(len(images), dtype=np.int32)
    boxes = {c: v[box_mask] for c, v in data.boxes.items()}
    boxes["label"] = remap[boxes["label"]]
    boxes["image_idx"] = image_remap[boxes["image_idx"]]
    lab = data.labels
    label_mask = (image_remap[lab.image_idx] >= 0) & (remap[lab.label] >= 0)
    labels = ExpandedLabels(image_remap[lab.image_idx[label_mask]], remap[lab.label[label_mask]],
                            lab.confidence[label_mask], 0)
    return SplitData(data.image_ids.take(pa.array(images)), boxes, data.box_row[box_mask], labels)


# ----------------------------------------------------------------------------------------------- writing


def write_parquet(columns: dict[str, np.ndarray | pa.Array], path: Path) -> None:
    """Write columns (in the given order) with the pinned, deterministic writer options."""
    pq.write_table(pa.table(columns), path, **PARQUET_OPTIONS)


def write_split(data: SplitData, out: Path) -> None:
    """The four Parquet files of one split."""
    out.mkdir(parents=True)
    n = len(data.image_ids)
    counts = np.bincount(data.boxes["image_idx"], minlength=n).astype(np.int32)
    starts = (np.cumsum(counts, dtype=np.int64) - counts).astype(np.int64)
    write_parquet({"image_idx": np.arange(n, dtype=np.int32), "ImageID": data.image_ids,
                   "box_start": starts, "box_count": counts}, out / "images.parquet")
    boxes = data.boxes
    columns = ("image_idx", "label", *BOX_COLUMNS, *FLAG_COLUMNS, "IsExpanded")
    write_parquet({c: boxes[c] for c in columns}, out / "boxes.parquet")
    write_parquet({"image_idx": data.labels.image_idx, "label": data.labels.label,
                   "Confidence": data.labels.confidence}, out / "image_labels.parquet")
    key = sorted_unique(boxes["label"].astype(np.int64) * max(n, 1) + boxes["image_idx"])
    write_parquet({"label": (key // max(n, 1)).astype(np.int16), "image_idx": (key % max(n, 1)).astype(np.int32)},
                  out / "class_index.parquet")


def write_classes(rows: Sequence[tuple[str, str]], path: Path) -> None:
    """``MID,DisplayName`` rows, no header, LF line ends."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")


def write_json(obj, path: Path) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_prepared(out: Path, class_rows: Sequence[tuple[str, str]], hierarchy_json: bytes,
                   splits: dict[str, SplitData], summary: dict, name: str = "prepared",
                   progress: bool = True) -> None:
    """A complete prepared directory; ``name`` labels the progress bar."""
    out.mkdir(parents=True, exist_ok=True)
    write_classes(class_rows, out / "classes.csv")
    (out / "hierarchy.json").write_bytes(hierarchy_json)
    for split, data in tqdm(splits.items(), desc=f"writing {name}", unit="split", disable=not progress,
                            leave=False):
        write_split(data, out / split)
    write_json(summary, out / "summary.json")


def publish(tmp: Path, out: Path) -> None:
    """Move every entry of ``tmp`` into ``out`` by rename (replacing older versions) and remove the managed entries
    this run did not produce."""
    for name in MANAGED:
        new, target = tmp / name, out / name
        old = tmp / f".old-{name}"
        if target.exists() or target.is_symlink():
            os.replace(target, old)
        if new.exists():
            os.replace(new, target)
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        elif old.exists() or old.is_symlink():
            old.unlink()


# ----------------------------------------------------------------------------------------------- entry point


def run_prepare(data_dir: str | Path, out_dir: str | Path, *, split_names: Sequence[str] = formats.SPLITS,
                coco_splits: Sequence[str] | None = None,
                expand_boxes: bool = False, expert_groups: str | Path | None = None, strict: bool = False,
                images_root: str | Path | None = None, workers: int | None = None, progress: bool = True) -> dict:
    """Prepare the annotations of ``data_dir`` into ``out_dir`` (see docs/artifacts.md) and return the summary.

    ``coco_splits`` also writes ``coco/{split}.json`` (image sizes read from ``images_root/{split}`` with
    ``workers`` processes; ``None``: the splits the dataset's ``dataset.json`` names, else none); ``expert_groups`` (CSV ``group,MID`` or YAML) writes ``experts/{group}/``; ``strict``
    turns the first bad row into a :class:`formats.RowError`; ``images_root`` (default ``data_dir``) holds
    ``{split}/<ImageID>.jpg``; ``split_names`` are the splits to prepare (each must have its box file). The raw paths
    are recorded in ``sources.json`` / ``sources.mk`` (``data_prep.sources``)."""
    data_dir = Path(data_dir)
    settings = read_dataset_settings(data_dir)
    if coco_splits is None:
        coco_splits = settings.get("coco_splits", ())
    if isinstance(coco_splits, str):
        coco_splits = tuple(s for s in coco_splits.split(",") if s)
    out_dir = Path(out_dir)
    images_root = Path(images_root) if images_root is not None else data_dir
    files = formats.discover(data_dir, split_names)
    notes = list(files.notes)
    class_list = read_classes(files.classes)
    class_rows, mids = list(zip(class_list.mids, class_list.names)), list(class_list.mids)
    hierarchy_json = read_bytes(files.hierarchy)
    try:
        hierarchy = Hierarchy.from_json(json.loads(hierarchy_json))
    except json.JSONDecodeError as e:
        raise DataError(f"{files.hierarchy}: not valid JSON ({e})") from None
    except ValueError as e:
        raise DataError(f"{files.hierarchy}: {e}") from None
    outside = [mid for mid in mids if mid not in hierarchy]
    if outside:
        notes.append(f"{len(outside)} classes are not in {files.hierarchy.name} (never expanded): "
                     f"{', '.join(outside[:5])}")
    for split in coco_splits:
        if split not in formats.SPLITS:
            raise ValueError(f"unknown COCO split {split!r}; choose from {', '.join(formats.SPLITS)}")
    groups = formats.read_expert_groups(expert_groups, mids) if expert_groups is not None else {}

    splits: dict[str, SplitData] = {}
    split_summaries: dict[str, dict] = {}
    for split, split_files in files.splits.items():
        image_dir = images_root / split
        if not image_dir.is_dir():
            notes.append(f"{split}: no image folder {split}/ under the images root: missing-image check skipped")
            image_dir = None
        splits[split], split_summaries[split] = load_split(
            split_files, mids, hierarchy, image_dir, strict=strict, expand_boxes=expand_boxes,
            with_polygons=split in coco_splits, progress=progress)

    summary = {
        "class_file": files.classes.name,
        "hierarchy_file": files.hierarchy.name,
        "classes": len(mids),
        "options": {"expand_boxes": expand_boxes, "strict": strict, "coco_splits": list(coco_splits),
                    "expert_groups": sorted(groups)},
        "splits": split_summaries,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".prepare-", dir=out_dir))
    try:
        if groups:
            summary["experts"] = _write_experts(tmp / "experts", groups, class_rows, hierarchy, splits, progress)
        for split in coco_splits:
            if split not in splits:
                notes.append(f"COCO export of {split} skipped: the split has no box file")
                continue
            if not (images_root / split).is_dir():
                notes.append(f"COCO export of {split} skipped: no image folder {split}/ under the images root to "
                             "read the image sizes from")
                continue
            export_coco(splits[split], class_rows, images_root / split, tmp / "coco" / f"{split}.json",
                        workers=workers, progress=progress)
        summary["notes"] = notes
        write_prepared(tmp, class_rows, hierarchy_json, splits, summary, progress=progress)
        write_sources(record_sources(files, data_dir, images_root, settings), tmp)
        publish(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary


def _write_experts(root: Path, groups: dict[str, list[str]], class_rows: Sequence[tuple[str, str]],
                   hierarchy: Hierarchy, splits: dict[str, SplitData], progress: bool) -> dict:
    """``experts/{group}/``: prepared directories restricted to each group's classes; returns their summaries."""
    index = {mid: i for i, (mid, _) in enumerate(class_rows)}
    out = {}
    for group, mids in groups.items():
        keep = np.asarray([index[m] for m in mids], np.int64)
        rows = [class_rows[i] for i in keep]
        tree = json.dumps(hierarchy.restricted_tree(mids), indent=1).encode() + b"\n"
        subsets = {split: restrict(data, keep, len(class_rows)) for split, data in splits.items()}
        counts = {split: split_counts(data, mids) for split, data in subsets.items()}
        write_prepared(root / group, rows, tree, subsets, {"group": group, "classes": len(mids), "splits": counts},
                       f"experts/{group}", progress)
        out[group] = {"classes": mids, "splits": {s: {k: c[k] for k in ("images", "boxes", "expanded_boxes")}
                                                  for s, c in counts.items()}}
    return out


def format_summary(summary: dict) -> str:
    """A short human-readable digest of a prepare summary."""
    lines = [f"{summary['classes']} classes ({summary['class_file']})"]
    for split, s in summary["splits"].items():
        lab = s["image_labels"]
        lines.append(f"{split}: {s['images']:,} images, {s['boxes']:,} boxes ({s['group_of']:,} group-of"
                     + (f", +{s['expanded_boxes']:,} ancestor copies" if s["expanded_boxes"] else "")
                     + f"), image labels {lab['before_expansion']:,} -> {lab['after_expansion']:,} after expansion"
                     + (f" ({lab['conflicts']:,} positive/negative conflicts, kept positive)" if lab["conflicts"]
                        else ""))
        for kind, reasons in s["dropped"].items():
            for reason, d in reasons.items():
                lines.append(f"  dropped {d['count']:,} {kind} rows: {reason} (e.g. lines "
                             f"{', '.join(map(str, d['lines']))})")
    for group, e in summary.get("experts", {}).items():
        lines.append(f"expert {group}: {len(e['classes'])} classes, "
                     + ", ".join(f"{s} {c['images']:,} images / {c['boxes']:,} boxes" for s, c in e["splits"].items()))
    lines.extend(f"note: {n}" for n in summary.get("notes", []))
    return "\n".join(lines)
