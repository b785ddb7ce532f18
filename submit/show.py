"""``python -m submit.show``: predictions drawn on their images, judged by the official metric when ground truth is
given, so a person sees what the model sees.

One picture per image, ``OUT/<ImageID>.png`` (or ``.jpg``), at the original image's size, plus ``OUT/index.html``
listing them (worst first) with their image-level labels and a legend. Predictions scored >= ``--score-thr`` are
drawn (the ``--max-boxes`` highest per image) in a colour per class, labelled with the class's display name and
score. With ground truth, each prediction's outcome is ``contracts.metric.match_detections``'s:

    TP       solid line           matched a ground-truth box (IoU >= 0.5)
    group    solid line           absorbed by a group-of box (IoA >= 0.5); the box counts one TP
    FP       dashed line          false positive
    ignored  thin dotted line     not counted: the class is not verified in the image (no box, no image label)

Ground-truth boxes, each judged by all its expanded copies: a white line on black when found, red on black when a
copy was missed (labelled with the missed classes: the box's own and/or its ancestors), the white or red dashed
for group-of boxes (labelled "group").

Without ``--image-ids``, the images where the model loses most come first: loss = expanded ground-truth boxes
left unfound + the summed scores of the false positives >= ``--score-thr``. Only the drawn images are read.
"""
from __future__ import annotations

import argparse
import html
import io
import math
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from contracts.arrays import positions
from contracts.classes import ClassList, read_classes
from contracts.cli import entry_point
from contracts.files import IMAGE_SUFFIXES, DataError, atomic_output, image_files
from contracts.hierarchy import Hierarchy
from contracts.metric import (FALSE_POSITIVE, GROUP_OF, IGNORED, TRUE_POSITIVE, GroundTruth, Matching,
                              expand_ground_truth, match_detections, read_gt_boxes, read_gt_labels)
from contracts.predictions import read_predictions

SCORE_THR = 0.3
MAX_BOXES = 100
MAX_IMAGES = 20
# tab20 without its reds and greys: red is kept for missed ground truth, white for found ground truth
PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (148, 103, 189), (140, 86, 75), (227, 119, 194),
           (188, 189, 34), (23, 190, 207), (174, 199, 232), (255, 187, 120), (152, 223, 138), (197, 176, 213),
           (196, 156, 148), (247, 182, 210), (219, 219, 141), (158, 218, 229))
GT_FOUND, GT_MISSED, GT_EDGE = (255, 255, 255), (255, 0, 0), (0, 0, 0)
OUTCOME_KIND = {TRUE_POSITIVE: "tp", GROUP_OF: "group", FALSE_POSITIVE: "fp", IGNORED: "ignored"}
GT_KINDS = ("gt", "gt-missed", "gt-group", "gt-group-missed")
LEGEND = (("TP", "solid, class colour: matched a ground-truth box (IoU >= 0.5)"),
          ("group", "solid, class colour: inside a group-of box (IoA >= 0.5), which counts one TP"),
          ("FP", "dashed, class colour: false positive"),
          ("ignored", "thin dotted: class not verified in this image, not counted"),
          ("ground truth", "white on black: found; red on black: missed (the label names the missed classes, "
                           "the box's own or its ancestors'); dashed: group-of box"))


@dataclass(frozen=True)
class Evaluated:
    """What show draws from: predictions, and optionally the raw ground truth with the metric's matching."""

    predictions: pd.DataFrame
    classes: ClassList | None = None
    gt_boxes: pd.DataFrame | None = None
    gt_labels: pd.DataFrame | None = None
    gt: GroundTruth | None = None
    matching: Matching | None = None

    @property
    def has_gt(self) -> bool:
        return self.matching is not None

    def name(self, mid: str) -> str:
        return self.classes.name_of(mid) if self.classes is not None and mid in self.classes.index else mid


@dataclass(frozen=True)
class Mark:
    """One box to draw: ``kind`` (a prediction's "tp", "group", "fp", "ignored", or "prediction" without ground
    truth; or one of GT_KINDS), normalised x0, y0, x1, y1, class colour, label text."""

    kind: str
    box: tuple[float, float, float, float]
    colour: tuple[int, int, int]
    text: str


@dataclass(frozen=True)
class Scene:
    """Everything drawn on, and said about, one image. Marks in drawing order (ground truth, then predictions by
    ascending score); ``missed``/``gt_boxes`` count expanded ground-truth boxes; ``false_positives`` those drawn;
    ``focus`` the display name of the only class drawn, if one."""

    image_id: str
    marks: tuple[Mark, ...]
    present: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()
    predictions: int = 0
    missed: int = 0
    gt_boxes: int = 0
    false_positives: int = 0
    focus: str = ""


@dataclass(frozen=True)
class Drawn:
    """Where a mark landed: its pixel rectangle (inclusive) and its label's (None if no label)."""

    mark: Mark
    rect: tuple[int, int, int, int]
    label_rect: tuple[int, int, int, int] | None


def class_colour(mid: str, classes: ClassList | None) -> tuple[int, int, int]:
    """A fixed colour per class: by class index, or by a hash of the MID for unlisted classes."""
    if classes is not None and mid in classes.index:
        return PALETTE[classes.index[mid] % len(PALETTE)]
    return PALETTE[zlib.crc32(mid.encode()) % len(PALETTE)]


def load(predictions: str | Path, classes: str | Path | None = None, boxes: str | Path | None = None,
         labels: str | Path | None = None, hierarchy: str | Path | None = None) -> Evaluated:
    """Read the inputs and, with ground truth (boxes, labels, hierarchy and classes together), match them."""
    given = {"--boxes": boxes, "--labels": labels, "--hierarchy": hierarchy}
    if any(v is not None for v in given.values()):
        missing = [k for k, v in given.items() if v is None] + (["--classes"] if classes is None else [])
        if missing:
            raise ValueError(f"ground truth needs --boxes, --labels, --hierarchy and --classes; missing "
                             f"{', '.join(missing)}")
    frame = read_predictions(predictions)
    class_list = read_classes(classes) if classes is not None else None
    if boxes is None:
        return Evaluated(frame, class_list)
    gt_boxes, gt_labels = read_gt_boxes(boxes), read_gt_labels(labels)
    gt = expand_ground_truth(gt_boxes, gt_labels, Hierarchy.from_json(hierarchy), list(class_list.mids))
    return Evaluated(frame, class_list, gt_boxes, gt_labels, gt, match_detections(frame, gt))


def image_losses(ev: Evaluated, score_thr: float = SCORE_THR, focus: str | None = None) -> pd.DataFrame:
    """Per ground-truth image (optionally one class ``focus``): missed and total expanded boxes, false positives
    scored >= ``score_thr`` and their summed score, loss = missed + that sum; worst first, ties by ImageID."""
    gt, m = ev.gt, ev.matching
    n_classes, n_images = len(gt.mids), len(gt.image_ids)
    box_image, box_class = gt.box_key // n_classes, gt.box_key % n_classes
    score = ev.predictions["Score"].to_numpy(dtype=np.float64)
    fp = (m.outcome == FALSE_POSITIVE) & (score >= score_thr)
    box_found = m.box_found
    if focus is not None:
        if focus not in set(gt.mids):
            raise ValueError(f"class {focus} is not in the class list")
        keep = gt.mids[box_class] == focus
        box_image, box_found = box_image[keep], box_found[keep]
        fp &= (ev.predictions["LabelName"] == focus).to_numpy()
    fp_image = positions(ev.predictions["ImageID"], pd.Index(gt.image_ids))[fp]
    table = pd.DataFrame({
        "ImageID": gt.image_ids,
        "missed": np.bincount(box_image[~box_found], minlength=n_images),
        "gt_boxes": np.bincount(box_image, minlength=n_images),
        "false_positives": np.bincount(fp_image, minlength=n_images),
        "fp_score": np.bincount(fp_image, weights=score[fp], minlength=n_images)})
    table["loss"] = table["missed"] + table["fp_score"]
    return table.sort_values("loss", ascending=False, kind="stable").reset_index(drop=True)


def pick_images(ev: Evaluated, max_images: int = MAX_IMAGES, score_thr: float = SCORE_THR,
                focus: str | None = None) -> list[str]:
    """The ``max_images`` images where the model loses most (with ground truth; only those losing anything), else
    the first predicted images in ImageID order."""
    if not ev.has_gt:
        preds = ev.predictions if focus is None else ev.predictions[ev.predictions["LabelName"] == focus]
        return sorted(map(str, preds["ImageID"].unique()))[:max_images]
    losses = image_losses(ev, score_thr, focus)
    return losses.loc[losses["loss"] > 0, "ImageID"].head(max_images).astype(str).tolist()


def _gt_text(name: str, group_of: bool, missed: Sequence[str]) -> str:
    """A ground-truth label: the missed copies' classes (own class first), or for a found group-of box its class;
    a found box needs none (its TP is labelled)."""
    if missed:
        return f"missed{' group' if group_of else ''}: {', '.join(missed)}"
    return f"group: {name}" if group_of else ""


def scenes(ev: Evaluated, image_ids: Sequence[str], score_thr: float = SCORE_THR, max_boxes: int = MAX_BOXES,
           focus: str | None = None) -> list[Scene]:
    """What to draw on each of ``image_ids`` (only class ``focus`` if given)."""
    preds = ev.predictions
    wanted = pd.Index(list(dict.fromkeys(image_ids)))
    pred_image = positions(preds["ImageID"], wanted)
    rows = np.flatnonzero(pred_image >= 0)
    if focus is not None:
        rows = rows[(preds["LabelName"].iloc[rows] == focus).to_numpy()]
    rows = rows[np.argsort(pred_image[rows], kind="stable")]  # only these rows are read below
    by_image = np.split(np.arange(len(rows)), np.cumsum(np.bincount(pred_image[rows], minlength=len(wanted)))[:-1])
    picked = preds.iloc[rows]
    score = picked["Score"].to_numpy(dtype=np.float64)
    mids = picked["LabelName"].astype(str).to_numpy()
    coords = picked[["XMin", "YMin", "XMax", "YMax"]].to_numpy(dtype=np.float64)
    outcomes = ev.matching.outcome[rows] if ev.has_gt else np.full(len(rows), -1)
    if ev.has_gt:
        gt_image = positions(ev.gt_boxes["ImageID"], wanted)
        label_image = positions(ev.gt_labels["ImageID"], wanted)
        gt_index = pd.Index(ev.gt.image_ids)
    out = []
    for k, image_id in enumerate(wanted):
        own = by_image[k]
        above = own[score[own] >= score_thr]
        drawn = above[np.argsort(-score[above], kind="stable")[:max_boxes]][::-1]  # highest drawn last, on top
        outcome = outcomes[drawn]
        marks, present, absent, missed, n_gt = [], (), (), 0, 0
        if ev.has_gt:
            marks, missed, n_gt = _gt_marks(ev, np.flatnonzero(gt_image == k), gt_index.get_indexer([image_id])[0],
                                            focus)
            lab = ev.gt_labels.iloc[np.flatnonzero(label_image == k)]
            present = tuple(sorted(ev.name(m) for m in lab.loc[lab["Confidence"] == 1, "LabelName"]))
            absent = tuple(sorted(ev.name(m) for m in lab.loc[lab["Confidence"] != 1, "LabelName"]))
        for i, o in zip(drawn, outcome):
            kind = OUTCOME_KIND.get(int(o), "prediction")
            prefix = {"tp": "TP ", "group": "group ", "fp": "FP ", "ignored": "ignored "}.get(kind, "")
            marks.append(Mark(kind, tuple(coords[i]), class_colour(mids[i], ev.classes),
                              f"{prefix}{ev.name(mids[i])} {score[i]:.2f}"))
        out.append(Scene(str(image_id), tuple(marks), present, absent, len(own), missed, n_gt,
                         int((outcome == FALSE_POSITIVE).sum()), ev.name(focus) if focus is not None else ""))
    return out


def _gt_marks(ev: Evaluated, rows: np.ndarray, image: int, focus: str | None) -> tuple[list[Mark], int, int]:
    """Marks for the raw ground-truth rows ``rows`` of one image (index ``image`` in the ground truth), each judged
    by its expanded copies; and the missed and total expanded box counts."""
    gt, n_classes = ev.gt, len(ev.gt.mids)
    lo, hi = np.searchsorted(gt.box_key, [image * n_classes, (image + 1) * n_classes]) if image >= 0 else (0, 0)
    copy_row, copy_class = gt.box_row[lo:hi], gt.mids[gt.box_key[lo:hi] % n_classes]
    found = ev.matching.box_found[lo:hi]
    if focus is not None:
        keep = copy_class == focus
        copy_row, copy_class, found = copy_row[keep], copy_class[keep], found[keep]
        rows = rows[np.isin(rows, copy_row)]
    boxes = ev.gt_boxes
    marks = []
    for r in rows:
        mid = str(boxes["LabelName"].iat[r])
        group_of = bool(boxes["IsGroupOf"].iat[r] != 0)
        missed_mids = sorted((str(c) for c in copy_class[(copy_row == r) & ~found]), key=lambda c: c != mid)
        kind = ("gt-group" if group_of else "gt") + ("-missed" if missed_mids else "")
        box = tuple(float(boxes[c].iat[r]) for c in ("XMin", "YMin", "XMax", "YMax"))
        marks.append(Mark(kind, box, class_colour(mid, ev.classes),
                          _gt_text(ev.name(mid), group_of, [ev.name(c) for c in missed_mids])))
    return marks, int((~found).sum()), len(found)


def pixel_rect(box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    """Normalised x0, y0, x1, y1 as the inclusive pixel rectangle it covers, clipped to the image."""
    x0 = min(max(math.floor(box[0] * width), 0), width - 1)
    y0 = min(max(math.floor(box[1] * height), 0), height - 1)
    x1 = min(max(math.ceil(box[2] * width) - 1, x0), width - 1)
    y1 = min(max(math.ceil(box[3] * height) - 1, y0), height - 1)
    return x0, y0, x1, y1


def line_width(width: int, height: int) -> int:
    """Outline width in pixels for an image of this size."""
    return max(2, round(min(width, height) / 250))


def _outline(draw: ImageDraw.ImageDraw, rect, colour, width: int, dash: tuple[int, int] | None = None) -> None:
    """A rectangle outline ``width`` pixels wide, inside ``rect``; dashed ``(on, off)`` pixels when given."""
    x0, y0, x1, y1 = rect
    width = max(1, min(width, (x1 - x0) // 2 + 1, (y1 - y0) // 2 + 1))
    if dash is None:
        draw.rectangle(rect, outline=colour, width=width)
        return
    on, off = dash
    for a0, a1, b0, b1, horizontal in ((x0, x1, y0, y0 + width - 1, True), (x0, x1, y1 - width + 1, y1, True),
                                       (y0, y1, x0, x0 + width - 1, False), (y0, y1, x1 - width + 1, x1, False)):
        for start in range(a0, a1 + 1, on + off):
            end = min(start + on - 1, a1)
            draw.rectangle((start, b0, end, b1) if horizontal else (b0, start, b1, end), fill=colour)


def _font(height: int, width: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=max(9, round(min(width, height) / 50)))


def draw_scene(image: Image.Image, scene: Scene) -> list[Drawn]:
    """Draw ``scene`` onto the RGB ``image`` in place; returns where each mark and label went."""
    width, height = image.size
    draw = ImageDraw.Draw(image)
    font = _font(height, width)
    w = line_width(width, height)
    placed = []
    for mark in scene.marks:
        rect = pixel_rect(mark.box, width, height)
        if mark.kind in GT_KINDS:
            core = GT_MISSED if mark.kind.endswith("missed") else GT_FOUND
            _outline(draw, rect, GT_EDGE, 3)
            inner = (rect[0] + 1, rect[1] + 1, max(rect[0] + 1, rect[2] - 1), max(rect[1] + 1, rect[3] - 1))
            _outline(draw, inner, core, 1, (4, 3) if mark.kind.startswith("gt-group") else None)
            label_bg, below = GT_EDGE, True
        else:
            dash = {"fp": (6, 4), "ignored": (1, 2)}.get(mark.kind)
            _outline(draw, rect, mark.colour, 1 if mark.kind == "ignored" else w, dash)
            label_bg, below = mark.colour, False
        label = _label(draw, font, mark.text, rect, label_bg, below, width, height) if mark.text else None
        placed.append(Drawn(mark, rect, label))
    return placed


def _label(draw, font, text, rect, background, below, width, height):
    """Text on a filled strip above the box's top-left corner (ground truth: below its bottom-left), moved inside
    the box where the image ends; returns the strip's rectangle."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    lw, lh = right - left + 4, bottom - top + 2
    x0 = max(0, min(rect[0], width - lw))
    if below:
        y0 = rect[3] + 1 if rect[3] + lh < height else max(0, rect[3] - lh)
    else:
        y0 = rect[1] - lh if rect[1] - lh >= 0 else rect[1]
    strip = (x0, y0, min(x0 + lw - 1, width - 1), min(y0 + lh - 1, height - 1))
    draw.rectangle(strip, fill=background)
    luminance = 0.299 * background[0] + 0.587 * background[1] + 0.114 * background[2]
    draw.text((x0 + 2 - left, y0 + 1 - top), text, font=font, fill=(0, 0, 0) if luminance > 140 else (255, 255, 255))
    return strip


@dataclass(frozen=True)
class Picture:
    """A written picture: its file (relative to the output folder) and its scene."""

    file: str
    scene: Scene


def render(scene_list: Sequence[Scene], images: str | Path, out: str | Path, fmt: str = "png",
           prefix: str = "") -> list[Picture]:
    """Draw each scene on its image (read from ``images``) into ``out/<prefix><ImageID>.<fmt>``, atomically."""
    images, out = Path(images), Path(out)
    files = image_files(images)
    pictures = []
    for scene in scene_list:
        path = files.get(scene.image_id)
        if path is None:
            raise DataError(f"{images}: no image file for ImageID {scene.image_id} ({', '.join(IMAGE_SUFFIXES)})")
        try:
            with Image.open(path) as source:
                image = source.convert("RGB")
        except OSError as e:
            raise DataError(f"{path}: not a readable image ({e})") from None
        draw_scene(image, scene)
        name = f"{prefix}{scene.image_id}.{fmt}"
        buffer = io.BytesIO()
        image.save(buffer, format="PNG" if fmt == "png" else "JPEG", **({"quality": 90} if fmt == "jpg" else {}))
        with atomic_output(out / name) as f:
            f.write(buffer.getvalue())
        pictures.append(Picture(name, scene))
    return pictures


def _count(n: int, noun: str, plural: str = "s") -> str:
    return f"{n} {noun}{'' if n == 1 else plural}"


def caption(scene: Scene, score_thr: float, has_gt: bool) -> str:
    """One line of HTML about a picture: its ImageID, what was drawn and what was lost, its image-level labels."""
    what = f"{html.escape(scene.focus)} " if scene.focus else ""
    parts = [f"<b>{html.escape(scene.image_id)}</b>",
             f"{_count(scene.predictions, what + 'prediction')}, those >= {score_thr:g} drawn"]
    if has_gt:
        boxes = "" if scene.focus else " (with ancestor copies)"
        parts.append(f"missed {scene.missed} of {_count(scene.gt_boxes, what + 'ground-truth box', 'es')}{boxes}, "
                     f"{_count(scene.false_positives, 'false positive')} drawn")
        parts.append("image labels: present " + html.escape(", ".join(scene.present) or "none") + "; absent "
                     + html.escape(", ".join(scene.absent) or "none"))
    return " &middot; ".join(parts)


def legend_html() -> str:
    return "<ul class=legend>" + "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in LEGEND) \
        + "</ul>"


def write_index(out: str | Path, pictures: Sequence[Picture], score_thr: float, has_gt: bool) -> Path:
    """``out/index.html``: the pictures in order with their captions and the legend (local files only)."""
    path = Path(out) / "index.html"
    figures = "\n".join(f'<figure><img src="{html.escape(p.file)}" alt="{html.escape(p.scene.image_id)}">'
                        f"<figcaption>{caption(p.scene, score_thr, has_gt)}</figcaption></figure>" for p in pictures)
    page = (f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>predictions drawn</title><style>"
            f"body{{font:14px sans-serif;margin:1em 2em}}figure{{margin:1em 0}}img{{max-width:100%;min-width:400px}}"
            f"</style>"
            f"</head><body>\n<h1>Predictions drawn ({len(pictures)} images{', worst first' if has_gt else ''})"
            f"</h1>\n{legend_html() if has_gt else ''}\n{figures}\n</body></html>\n")
    with atomic_output(path) as f:
        f.write(page.encode())
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m submit.show",
        description="Draw predictions on their images (one OUT/<ImageID>.png each, original size, plus "
                    "OUT/index.html). With ground truth, each prediction is drawn as the official metric judged "
                    "it (TP solid, FP dashed, group-of absorbed, unverified class ignored) and the ground-truth "
                    "boxes are drawn too; without --image-ids the images where the model loses most come first.")
    parser.add_argument("--predictions", required=True,
                        help="predictions Parquet file, folder of shards or glob, or a submission CSV")
    parser.add_argument("--images", required=True, type=Path, help="folder of the images (<ImageID>.jpg, .png, ...)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--boxes", help="ground-truth box CSV (with --labels, --hierarchy, --classes)")
    parser.add_argument("--labels", help="ground-truth image-label CSV")
    parser.add_argument("--hierarchy", help="label hierarchy JSON")
    parser.add_argument("--classes", help="class file (MID,DisplayName): display names; needed with ground truth")
    parser.add_argument("--image-ids", nargs="+", metavar="ID", help="draw these images, in this order")
    parser.add_argument("--class", dest="focus", metavar="MID", help="draw (and rank images by) this class only")
    parser.add_argument("--max-images", type=int, default=MAX_IMAGES, metavar="N",
                        help=f"images to draw without --image-ids (default {MAX_IMAGES})")
    parser.add_argument("--score-thr", type=float, default=SCORE_THR, metavar="T",
                        help=f"draw predictions scored >= T (default {SCORE_THR})")
    parser.add_argument("--max-boxes", type=int, default=MAX_BOXES, metavar="K",
                        help=f"draw at most the K highest-scored predictions per image (default {MAX_BOXES})")
    parser.add_argument("--format", choices=("png", "jpg"), default="png", help="picture format (default png)")
    return parser


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for flag, value in (("--max-images", args.max_images), ("--max-boxes", args.max_boxes)):
        if value < 1:
            raise ValueError(f"{flag} must be at least 1, got {value}")
    if not args.images.is_dir():
        raise DataError(f"image folder not found: {args.images}")
    ev = load(args.predictions, args.classes, args.boxes, args.labels, args.hierarchy)
    known = set(ev.classes.mids) if ev.classes is not None else set(ev.predictions["LabelName"].astype(str))
    if args.focus is not None and args.focus not in known:
        raise ValueError(f"--class {args.focus}: not a MID of {args.classes or 'the predictions'}")
    ids = args.image_ids or pick_images(ev, args.max_images, args.score_thr, args.focus)
    pictures = render(scenes(ev, ids, args.score_thr, args.max_boxes, args.focus), args.images, args.out,
                      args.format)
    index = write_index(args.out, pictures, args.score_thr, ev.has_gt)
    print(f"{len(pictures)} pictures in {args.out} ({index.name} lists them"
          f"{', worst first' if ev.has_gt and not args.image_ids else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
