"""The bundled mini dataset: synthetic images annotated in the exact Open Images Challenge 2019 formats.

Thirteen real challenge classes (real MIDs, real hierarchy relations): nine leaf classes that are drawn, each as one
shape in one colour on a noisy, textured background, and four non-leaf classes that appear only through hierarchy
expansion, as in the real data where boxes carry the leaf-most label. The set holds a class with two parents
(Tomato: Vegetable and Fruit) and a three-level chain (Pumpkin -> Squash -> Vegetable).

It is made hard in the ways Open Images is hard, so that the pipeline's parts (TSD, TTA, fusion, experts) show:

- look-alikes: classes close in the hierarchy share a colour or a shape (the siblings Tomato / Apple, Lemon /
  Banana and Tennis ball / Football; Pumpkin / Carrot under Vegetable; across branches Tennis ball / Lemon),
  and the image labels often verify a present class's look-alike as absent, as the real verification of
  machine-proposed labels does, so that confusing them costs precision;
- clutter: 2-8 distractor shapes per image that are no class (class shapes in colours of no class, other shapes
  in any colour), under and over the objects;
- small and occluded objects: single objects are 8-64 px, most of them small; an object may be drawn over an
  earlier one and so hide up to MAX_OCCLUDED of its pixels (IsOccluded=1 in train); some images are blurred;
- group-of clusters of 4-12 tiny members (IsGroupOf=1) in a third of the images;
- rare classes: Lemon, Carrot and Football are drawn RARE_WEIGHT times as often as the others in train (a few
  dozen train boxes each), while validation and test draw every class equally often.

Written files (see docs/artifacts.md for the layout)::

    challenge-2019-classes-description-500.csv     the 13 rows of the real file, in its order
    challenge-2019-label500-hierarchy.json          the real hierarchy restricted to those classes
    challenge-2019-{train,validation}-detection-bbox.csv              13 / 7 columns
    challenge-2019-{train,validation}-detection-human-imagelabels.csv  4 / 3 columns
    {train,validation,test}/<ImageID>.jpg          16-hex-digit ImageIDs, 128-192 px per side
    sample_submission.csv                           ImageId,PredictionString (empty strings)
    mini-{train,validation}-polygons.csv            ImageID,BoxRow,Polygon (unless masks=False)
    README.txt
    dataset.json                                    its needs: the mini ensemble recipe, the COCO export

Coordinates are normalised to [0, 1]. Each object is drawn from its polygon, so its box is the polygon's bounding
box and its mask is the polygon (the whole outline, also where a later shape hides part of it); both are quantised
to the number format of their split's box file first (6 decimals for train, float32 for validation), so every
written polygon lies inside its written box.
Everything derives from ``seed`` through numpy's PCG64 streams: the same seed gives byte-identical files.

Shape shorthand: P = polygon vertices, polygons are float64 arrays (P, 2) of (x, y) in image pixels, where the
image spans [0, W] x [0, H] (pixel i covers [i, i + 1)).
"""
from __future__ import annotations

import argparse
import io
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

from contracts.hierarchy import Hierarchy

from .sources import DATASET_SETTINGS

METADATA = Path(__file__).resolve().parent / "metadata"
REAL_CLASSES = METADATA / "challenge-2019-classes-description-500.csv"
REAL_HIERARCHY = METADATA / "challenge-2019-label500-hierarchy.json"

CLASSES_FILE = "challenge-2019-classes-description-500.csv"
HIERARCHY_FILE = "challenge-2019-label500-hierarchy.json"
BOX_HEADER = {
    "train": "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,"
             "IsDepiction,IsInside",
    "validation": "ImageID,LabelName,XMin,XMax,YMin,YMax,IsGroupOf",
}
LABEL_HEADER = {"train": "ImageID,Source,LabelName,Confidence", "validation": "ImageID,LabelName,Confidence"}
POLYGON_HEADER = "ImageID,BoxRow,Polygon"
README_FIRST_LINE = "oid-tsd mini dataset"
# What the mini dataset asks of the stages (data_prep.sources.read_dataset_settings): its own ensemble recipe, and
# the COCO export that configs/mini_mask_tsd.py trains on.
DATASET_NEEDS = {"recipe": "mini", "coco_splits": ["train", "validation"]}

RARE_WEIGHT = 0.12            # train frequency of a rare class relative to a common one


@dataclass(frozen=True)
class Style:
    """How a leaf class is drawn, and how often in train relative to the others."""
    name: str
    shape: str
    colour: tuple[int, int, int]
    train_weight: float = 1.0


# Leaf classes. Siblings look alike: Tomato and Apple are red and round (Apple has a notch), Lemon and Banana share
# a yellow, Pumpkin and Carrot an orange, Tennis ball and Football are discs; Tennis ball is nearly Lemon's colour.
LEAF_STYLES: dict[str, Style] = {
    "/m/07j87": Style("Tomato", "disc", (210, 35, 30)),
    "/m/014j1m": Style("Apple", "apple", (180, 45, 50)),
    "/m/09qck": Style("Banana", "crescent", (235, 205, 45)),
    "/m/09k_b": Style("Lemon", "lemon", (235, 215, 70), RARE_WEIGHT),
    "/m/05zsy": Style("Pumpkin", "hexagon", (235, 125, 25)),
    "/m/027pcv": Style("Zucchini", "capsule", (40, 145, 45)),
    "/m/0fj52s": Style("Carrot", "spike", (230, 105, 35), RARE_WEIGHT),
    "/m/05ctyq": Style("Tennis ball", "disc", (200, 220, 65)),
    "/m/01226z": Style("Football", "disc", (230, 230, 220), RARE_WEIGHT),
}
# Look-alike pairs: an image showing one often has the other verified absent (a hard negative image label).
LOOK_ALIKES = (("/m/07j87", "/m/014j1m"), ("/m/09qck", "/m/09k_b"), ("/m/05zsy", "/m/0fj52s"),
               ("/m/05ctyq", "/m/01226z"), ("/m/05ctyq", "/m/09k_b"))
# Non-leaf classes: annotated only through expansion of their descendants (and by image-level labels).
NON_LEAF_MIDS = ("/m/02xwb", "/m/0f4s2w", "/m/0dv77", "/m/018xm")  # Fruit, Vegetable, Squash, Ball
MINI_MIDS = frozenset(LEAF_STYLES) | frozenset(NON_LEAF_MIDS)
# Distractors: class shapes are drawn only in colours far from every class colour; the other shapes in any colour.
DISTRACTOR_SHAPES = ("square", "triangle", "star", "cross", "ellipse", "stick")

SPLIT_CODES = {"train": 0, "validation": 1, "test": 2}
SIDE_RANGE = (128, 192)       # image width and height, pixels (inclusive)
OBJECT_SIZE = (8, 64)         # longest box side of a single object, pixels (skewed to small)
MEMBER_SIZE = (5, 10)         # longest box side of one member of a group-of cluster, pixels
OBJECTS_PER_IMAGE = (1, 7)
DISTRACTORS_PER_IMAGE = (2, 8)
GROUP_OF_PROB = 0.33          # share of images with one group-of cluster
TRUNCATED_PROB = 0.12         # share of objects placed partly outside the image
MAX_OCCLUDED = 0.35           # most of an object's pixels that shapes drawn later may cover
BLUR_PROB = 0.25              # share of images blurred (Gaussian, radius 0.5-1.1 px)
COLOUR_JITTER = 20            # per-object fill colour: the class colour +- this, per channel
FAR_FROM_CLASSES = 70         # a class-shaped distractor's colour differs by more than this from every class colour
JPEG_QUALITY = 90
JPEG_SUBSAMPLING = 0          # 4:4:4: keeps the colour of thin shapes (4:2:0 bleeds it into the background)


@dataclass
class DrawnImage:
    """One generated image and its annotations (boxes in drawing order)."""
    image_id: str
    width: int
    height: int
    labels: list[str] = field(default_factory=list)
    polygons: list[np.ndarray] = field(default_factory=list)   # (P, 2) pixels; group-of: all members' vertices
    occluded: list[int] = field(default_factory=list)
    truncated: list[int] = field(default_factory=list)
    group_of: list[int] = field(default_factory=list)
    pixels: np.ndarray | None = None                            # (H, W, 3) uint8, set once drawing is done


def _unit_shape(shape: str) -> np.ndarray:
    """The outline of ``shape`` as a (P, 2) polygon around the origin, roughly within [-1, 1]^2."""
    def ring(n: int, radius: float = 1.0, start: float = np.pi / 2) -> np.ndarray:
        t = start + 2 * np.pi * np.arange(n) / n
        return radius * np.stack([np.cos(t), np.sin(t)], axis=1)

    if shape == "disc":
        return ring(32)
    if shape == "apple":   # a disc, a little wider than high, with a notch where the stalk is
        t = np.pi / 2 + 2 * np.pi * np.arange(40) / 40
        r = 1 - 0.3 * np.exp(-((t - np.pi / 2) / 0.3) ** 2)
        return np.stack([1.08 * r * np.cos(t), r * np.sin(t)], axis=1)
    if shape == "lemon":   # an ellipse with a point at either end
        pts = ring(30, start=0.0) * [0.82, 0.62]
        pts[[0, 15]] = [[1.0, 0.0], [-1.0, 0.0]]
        return pts
    if shape == "ellipse":
        return ring(32) * [1.0, 0.6]
    if shape == "hexagon":
        return ring(6)
    if shape == "capsule":  # a bar with round ends
        t = np.linspace(-np.pi / 2, np.pi / 2, 9)
        cap = 0.36 * np.stack([np.cos(t), np.sin(t)], axis=1)
        return np.concatenate([cap + [0.64, 0.0], -cap - [0.64, 0.0]])
    if shape == "spike":    # a long thin triangle with a blunt base
        return np.array([[1.0, 0.0], [-0.85, 0.3], [-1.0, 0.15], [-1.0, -0.15], [-0.85, -0.3]])
    if shape == "crescent":
        # The unit disc minus a disc of radius r centred at (d, 0): the outer arc runs through angle pi, the
        # inner arc back between the two intersection points.
        d, r = 0.5, 0.85
        ix = (1 + d * d - r * r) / (2 * d)
        iy = np.sqrt(1 - ix * ix)
        outer_from = np.arctan2(iy, ix)
        inner_from = np.arctan2(iy, ix - d)
        t_out = np.linspace(outer_from, 2 * np.pi - outer_from, 17)
        t_in = np.linspace(2 * np.pi - inner_from, inner_from, 17)[1:-1]
        outer = np.stack([np.cos(t_out), np.sin(t_out)], axis=1)
        inner = np.stack([d + r * np.cos(t_in), r * np.sin(t_in)], axis=1)
        return np.concatenate([outer, inner])
    if shape == "square":
        return ring(4, start=np.pi / 4)
    if shape == "triangle":
        return ring(3)
    if shape == "star":
        pts = ring(10)
        pts[1::2] *= 0.45
        return pts
    if shape == "cross":
        a = 0.33
        return np.array([[-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a],
                         [a, 1], [-a, 1], [-a, a], [-1, a], [-1, -a], [-a, -a]], dtype=float)
    if shape == "stick":
        return np.array([[-1.0, -0.1], [1.0, -0.1], [1.0, 0.1], [-1.0, 0.1]])
    raise ValueError(f"unknown shape {shape!r}")


CLASS_SHAPES = tuple(dict.fromkeys(style.shape for style in LEAF_STYLES.values()))
UNIT_SHAPES = {shape: _unit_shape(shape) for shape in CLASS_SHAPES + DISTRACTOR_SHAPES}


def _shape_polygon(shape: str, size: float, angle: float) -> np.ndarray:
    """``shape`` rotated by ``angle`` (radians) and scaled so that its box's longest side is ``size`` pixels,
    with its box centred on the origin; (P, 2)."""
    c, s = np.cos(angle), np.sin(angle)
    pts = UNIT_SHAPES[shape] @ np.array([[c, s], [-s, c]])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    return (pts - (lo + hi) / 2) * (size / (hi - lo).max())


def _clip_to_image(poly: np.ndarray, width: int, height: int) -> np.ndarray:
    """Sutherland-Hodgman clipping of a (P, 2) polygon to [0, width] x [0, height]."""
    for axis, bound, keep_below in ((0, 0.0, False), (0, float(width), True),
                                    (1, 0.0, False), (1, float(height), True)):
        if len(poly) == 0:
            break
        v = poly[:, axis] - bound
        inside = v <= 0 if keep_below else v >= 0
        out = []
        for i in range(len(poly)):
            j = i - 1   # previous vertex (wraps to the last one)
            if inside[i] != inside[j]:
                t = v[j] / (v[j] - v[i])
                out.append(poly[j] + t * (poly[i] - poly[j]))
            if inside[i]:
                out.append(poly[i])
        poly = np.array(out).reshape(-1, 2)
    return poly


def _polygon_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _overlaps(box: np.ndarray, taken: list[np.ndarray], margin: float) -> bool:
    """Whether box (x0, y0, x1, y1) comes within ``margin`` pixels of any box in ``taken``."""
    return any(box[0] < t[2] + margin and t[0] < box[2] + margin and box[1] < t[3] + margin
               and t[1] < box[3] + margin for t in taken)


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A muted, textured background: a random mid-tone, low-frequency blotches and per-pixel noise; (H, W, 3)."""
    base = rng.uniform(70, 170) + rng.uniform(-25, 25, size=3)
    coarse = rng.normal(0, 28, size=(height // 16 + 2, width // 16 + 2, 3))
    blotches = np.stack([np.asarray(Image.fromarray(coarse[..., k].astype(np.float32))
                                    .resize((width, height), Image.BILINEAR)) for k in range(3)], axis=2)
    fine = rng.normal(0, 10, size=(height, width, 3))
    return base + blotches + fine


CLASS_COLOURS = np.array([style.colour for style in LEAF_STYLES.values()])


def _distractor_colour(rng: np.random.Generator, far_from_classes: bool) -> tuple[int, int, int]:
    """A random fill colour; with ``far_from_classes``, one differing by more than FAR_FROM_CLASSES (in some
    channel) from every class colour, so that a class-shaped distractor never passes for that class."""
    while True:
        colour = rng.integers(0, 256, size=3)
        if not far_from_classes or (np.abs(CLASS_COLOURS - colour).max(axis=1) > FAR_FROM_CLASSES).all():
            return tuple(int(v) for v in colour)


class _Painter:
    """Draws polygons on one image, records the annotated ones and keeps each annotated object's pixels at least
    1 - MAX_OCCLUDED visible."""

    def __init__(self, rng: np.random.Generator, image_id: str, width: int, height: int):
        self.rng = rng
        self.canvas = Image.fromarray(np.clip(_background(rng, width, height), 0, 255).astype(np.uint8))
        self.draw = ImageDraw.Draw(self.canvas)
        self.out = DrawnImage(image_id, width, height)
        self.painted: list[int] = []          # per annotated object: its pixel count when drawn
        self.visible: list[np.ndarray] = []   # per annotated object: (H, W) bool, its pixels still showing

    def _mask(self, polys: list[np.ndarray]) -> np.ndarray:
        """The pixels that painting ``polys`` covers; (H, W) bool."""
        mask = Image.new("1", (self.out.width, self.out.height))
        draw = ImageDraw.Draw(mask)
        for poly in polys:
            # PIL puts pixel centres at integer coordinates; our frame puts them at i + 0.5.
            draw.polygon([(float(x), float(y)) for x, y in poly - 0.5], fill=1)
        return np.asarray(mask, dtype=bool)

    def _fits(self, mask: np.ndarray) -> bool:
        """Whether painting ``mask`` leaves every annotated object at least 1 - MAX_OCCLUDED visible."""
        return all(np.count_nonzero(visible & ~mask) >= (1 - MAX_OCCLUDED) * painted
                   for visible, painted in zip(self.visible, self.painted))

    def _paint(self, polys: list[np.ndarray], colour: tuple[int, int, int], mask: np.ndarray) -> None:
        for poly in polys:
            self.draw.polygon([(float(x), float(y)) for x, y in poly - 0.5], fill=colour)
        for k, visible in enumerate(self.visible):
            if (visible & mask).any():
                visible &= ~mask
                self.out.occluded[k] = 1

    def _class_colour(self, label: str) -> tuple[int, int, int]:
        jitter = self.rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, size=3)
        return tuple(int(v) for v in np.clip(np.array(LEAF_STYLES[label].colour) + jitter, 0, 255))

    def _record(self, label: str, polys: list[np.ndarray], mask: np.ndarray, truncated: bool,
                group_of: bool) -> None:
        self.out.labels.append(label)
        self.out.polygons.append(np.concatenate(polys))
        self.out.occluded.append(0)
        self.out.truncated.append(int(truncated))
        self.out.group_of.append(int(group_of))
        self.painted.append(int(np.count_nonzero(mask)))
        self.visible.append(mask.copy())

    def _random_size(self, low: float, high: float) -> float:
        return low + (high - low) * self.rng.random() ** 2

    def single(self, label: str, may_truncate: bool) -> None:
        """One object of OBJECT_SIZE pixels at a random place, sometimes partly outside the image."""
        rng, width, height = self.rng, self.out.width, self.out.height
        poly = _shape_polygon(LEAF_STYLES[label].shape, self._random_size(*OBJECT_SIZE), rng.uniform(0, 2 * np.pi))
        half = (poly.max(axis=0) - poly.min(axis=0)) / 2
        may_cut = may_truncate and rng.random() < TRUNCATED_PROB
        reach = half * 0.5 if may_cut else -half   # how far the box may extend past the image border
        colour = self._class_colour(label)
        for _ in range(30):
            placed = poly + rng.uniform(-reach, np.array([width, height]) + reach)
            if may_cut:
                clipped = _clip_to_image(placed, width, height)
                if len(clipped) < 3 or _polygon_area(clipped) < 0.4 * _polygon_area(placed):
                    continue
                placed = clipped
            mask = self._mask([placed])
            if mask.any() and self._fits(mask):
                self._paint([placed], colour, mask)
                lo, hi = placed.min(axis=0), placed.max(axis=0)
                cut = bool((lo <= 0).any() or hi[0] >= width or hi[1] >= height)
                self._record(label, [placed], mask, truncated=cut, group_of=False)
                return

    def cluster(self, label: str) -> None:
        """4-12 tiny objects of one class in a square region, annotated as one group-of box."""
        rng, width, height = self.rng, self.out.width, self.out.height
        side = rng.uniform(28, 60)
        x0, y0 = rng.uniform(2, width - side - 2), rng.uniform(2, height - side - 2)
        members: list[np.ndarray] = []
        boxes: list[np.ndarray] = []
        for _ in range(60):
            size = rng.uniform(*MEMBER_SIZE)
            poly = _shape_polygon(LEAF_STYLES[label].shape, size, rng.uniform(0, 2 * np.pi))
            poly = poly + [x0 + rng.uniform(size / 2, side - size / 2), y0 + rng.uniform(size / 2, side - size / 2)]
            box = np.concatenate([poly.min(axis=0), poly.max(axis=0)])
            if not _overlaps(box, boxes, 0.0):
                members.append(poly)
                boxes.append(box)
                if len(members) == 12:
                    break
        if len(members) < 4:
            return
        mask = self._mask(members)
        if self._fits(mask):
            self._paint(members, self._class_colour(label), mask)
            self._record(label, members, mask, truncated=False, group_of=True)

    def distractor(self, over: bool) -> None:
        """A shape of no class: a class shape in a colour far from every class colour, or another shape in any
        colour; ``over`` the objects drawn so far (hiding at most MAX_OCCLUDED of each) or under what follows."""
        rng, width, height = self.rng, self.out.width, self.out.height
        shapes = CLASS_SHAPES + DISTRACTOR_SHAPES
        shape = shapes[int(rng.integers(len(shapes)))]
        colour = _distractor_colour(rng, far_from_classes=shape in CLASS_SHAPES or shape == "stick")
        poly = _shape_polygon(shape, self._random_size(6, 56), rng.uniform(0, 2 * np.pi))
        for _ in range(10):
            placed = poly + rng.uniform([0, 0], [width, height])
            mask = self._mask([placed])
            if not over or self._fits(mask):
                self._paint([placed], colour, mask)
                return

    def finish(self) -> DrawnImage:
        """The image, sometimes blurred, with sensor-like noise over everything."""
        canvas = self.canvas
        if self.rng.random() < BLUR_PROB:
            canvas = canvas.filter(ImageFilter.GaussianBlur(radius=float(self.rng.uniform(0.5, 1.1))))
        shape = (self.out.height, self.out.width, 3)
        pixels = np.asarray(canvas, dtype=np.float64) + self.rng.normal(0, 6, size=shape)
        self.out.pixels = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
        return self.out


def _draw_image(rng: np.random.Generator, image_id: str, first_label: str, leaves: list[str],
                weights: np.ndarray) -> DrawnImage:
    """Draw one image: distractors, an object of ``first_label`` (always placed, so that each split covers every
    class), sometimes a group-of cluster, up to 6 more objects (classes drawn by ``weights``), more distractors."""
    width, height = (int(v) for v in rng.integers(SIDE_RANGE[0], SIDE_RANGE[1] + 1, size=2))
    while width == height:
        height = int(rng.integers(SIDE_RANGE[0], SIDE_RANGE[1] + 1))
    painter = _Painter(rng, image_id, width, height)
    n_distractors = int(rng.integers(DISTRACTORS_PER_IMAGE[0], DISTRACTORS_PER_IMAGE[1] + 1))
    n_under = int(rng.integers(0, n_distractors + 1))
    for _ in range(n_under):
        painter.distractor(over=False)
    painter.single(first_label, may_truncate=False)
    if rng.random() < GROUP_OF_PROB:
        painter.cluster(leaves[int(rng.choice(len(leaves), p=weights))])
    for _ in range(int(rng.integers(OBJECTS_PER_IMAGE[0], OBJECTS_PER_IMAGE[1] + 1)) - 1):
        painter.single(leaves[int(rng.choice(len(leaves), p=weights))], may_truncate=True)
    for _ in range(n_distractors - n_under):
        painter.distractor(over=True)
    return painter.finish()


def _quantise(values: np.ndarray, split: str) -> np.ndarray:
    """Normalised coordinates rounded to what the split's files hold: 6 decimals (train) or float32 (validation)."""
    values = np.clip(values, 0.0, 1.0)
    return np.round(values, 6) if split == "train" else values.astype(np.float32).astype(np.float64)


def _format(value: float, split: str) -> str:
    """A quantised coordinate as the real files write it: ``0.012500`` (train), ``0.9642005`` (validation)."""
    if split == "train":
        return f"{value:.6f}"
    return np.format_float_positional(np.float32(value), unique=True, trim="0")


def _box_rows(image: DrawnImage, split: str, first_row: int) -> tuple[list[str], list[str]]:
    """The box CSV rows of one image and the polygon CSV rows of its non-group-of boxes, whose BoxRow counts
    from ``first_row`` (the number of data rows before this image's)."""
    boxes, polygons = [], []
    scale = np.array([image.width, image.height], dtype=np.float64)
    for label, poly, occluded, truncated, group_of in zip(image.labels, image.polygons, image.occluded,
                                                          image.truncated, image.group_of):
        norm = _quantise(poly / scale, split)
        (x0, y0), (x1, y1) = norm.min(axis=0), norm.max(axis=0)
        coords = ",".join(_format(v, split) for v in (x0, x1, y0, y1))
        if split == "train":
            boxes.append(f"{image.image_id},xclick,{label},1,{coords},{occluded},{truncated},{group_of},0,0")
        else:
            boxes.append(f"{image.image_id},{label},{coords},{group_of}")
        if not group_of:
            outline = " ".join(_format(v, split) for v in norm.ravel())
            polygons.append(f"{image.image_id},{first_row + len(boxes) - 1},{outline}")
    return boxes, polygons


def _image_labels(rng: np.random.Generator, present: set[str], hierarchy: Hierarchy,
                  class_order: list[str]) -> list[tuple[str, int]]:
    """Human-verified image labels of one image: (MID, Confidence) pairs in class order.

    Positives: every class with a box, plus sometimes an ancestor of one (a non-leaf positive). Negatives: classes
    verified absent (neither the class nor any descendant present): each absent look-alike of a present class with
    probability 0.7, often a non-leaf class, and 1-2 more."""
    positives = set(present)
    if present and rng.random() < 0.3:
        anchor = sorted(present)[int(rng.integers(len(present)))]
        ancestors = sorted(hierarchy.ancestors(anchor) & MINI_MIDS)
        if ancestors:
            positives.add(ancestors[int(rng.integers(len(ancestors)))])
    absent = [c for c in class_order
              if c not in present and not (hierarchy.descendants(c) & present)]
    negatives: set[str] = set()
    for a, b in LOOK_ALIKES:
        for shown, other in ((a, b), (b, a)):
            if shown in present and other in absent and rng.random() < 0.7:
                negatives.add(other)
    non_leaf_absent = [c for c in absent if c in NON_LEAF_MIDS]
    if non_leaf_absent and rng.random() < 0.6:
        negatives.add(non_leaf_absent[int(rng.integers(len(non_leaf_absent)))])
    n_more = int(rng.integers(1, 3))
    rest = [c for c in absent if c not in negatives]
    for i in rng.permutation(len(rest))[:n_more]:
        negatives.add(rest[int(i)])
    return [(c, 1) for c in class_order if c in positives] + [(c, 0) for c in class_order if c in negatives]


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")


def _read_real_classes() -> list[str]:
    """The rows of the bundled 500-class file that name mini classes, verbatim and in file order."""
    rows = [line for line in REAL_CLASSES.read_text(encoding="utf-8").splitlines()
            if line.split(",", 1)[0] in MINI_MIDS]
    found = {line.split(",", 1)[0] for line in rows}
    if found != MINI_MIDS:
        raise ValueError(f"{REAL_CLASSES}: MIDs missing from the class file: {sorted(MINI_MIDS - found)}")
    return rows


def _generate_ids(rng: np.random.Generator, count: int) -> list[str]:
    ids: set[str] = set()
    while len(ids) < count:
        ids.add(rng.bytes(8).hex())
    return sorted(ids)


def _build(out_dir: Path, seed: int, masks: bool, counts: dict[str, int], progress: bool) -> None:
    """Write the whole dataset into the (new, empty) folder ``out_dir``."""
    class_rows = _read_real_classes()
    class_order = [row.split(",", 1)[0] for row in class_rows]
    real = Hierarchy.from_json(REAL_HIERARCHY)
    tree = real.restricted_tree(MINI_MIDS)
    hierarchy = Hierarchy.from_json(tree)
    for mid in LEAF_STYLES:
        if not (hierarchy.is_leaf(mid) and real.is_leaf(mid)):
            raise ValueError(f"{mid} ({LEAF_STYLES[mid][0]}) is drawn with boxes but is not a leaf class")
    leaves = [mid for mid in class_order if mid in LEAF_STYLES]

    _write_text(out_dir / CLASSES_FILE, "\n".join(class_rows) + "\n")
    _write_text(out_dir / HIERARCHY_FILE, json.dumps(tree, indent=4) + "\n")

    all_ids = _generate_ids(np.random.default_rng([seed, 99]), sum(counts.values()))
    id_order = np.random.default_rng([seed, 98]).permutation(len(all_ids))
    start = 0
    bar = tqdm(total=sum(counts.values()), desc="mini dataset", unit="img", disable=not progress)
    for split, count in counts.items():
        ids = sorted(all_ids[int(i)] for i in id_order[start:start + count])
        start += count
        split_rng = np.random.default_rng([seed, SPLIT_CODES[split]])
        weights = np.array([LEAF_STYLES[m].train_weight if split == "train" else 1.0 for m in leaves])
        weights /= weights.sum()
        # every class once, then drawn by the split's class weights
        first_labels = [leaves[int(i)] for i in np.concatenate(
            [split_rng.permutation(len(leaves)), split_rng.choice(len(leaves), size=count, p=weights)])]
        (out_dir / split).mkdir(parents=True)
        boxes, labels, polygons = [], [], []
        for k, image_id in enumerate(ids):
            rng = np.random.default_rng([seed, SPLIT_CODES[split], k])
            image = _draw_image(rng, image_id, first_labels[k], leaves, weights)
            buffer = io.BytesIO()
            Image.fromarray(image.pixels).save(buffer, format="JPEG", quality=JPEG_QUALITY,
                                               subsampling=JPEG_SUBSAMPLING)
            (out_dir / split / f"{image_id}.jpg").write_bytes(buffer.getvalue())
            bar.update()
            if split == "test":
                continue
            image_boxes, image_polygons = _box_rows(image, split, first_row=len(boxes))
            boxes += image_boxes
            polygons += image_polygons
            source = "verification," if split == "train" else ""
            for mid, confidence in _image_labels(rng, set(image.labels), hierarchy, class_order):
                labels.append(f"{image_id},{source}{mid},{confidence}")
        if split == "test":
            _write_text(out_dir / "sample_submission.csv",
                        "ImageId,PredictionString\n" + "".join(f"{i},\n" for i in ids))
            continue
        _write_text(out_dir / f"challenge-2019-{split}-detection-bbox.csv",
                    "\n".join([BOX_HEADER[split], *boxes]) + "\n")
        _write_text(out_dir / f"challenge-2019-{split}-detection-human-imagelabels.csv",
                    "\n".join([LABEL_HEADER[split], *labels]) + "\n")
        if masks:
            _write_text(out_dir / f"mini-{split}-polygons.csv", "\n".join([POLYGON_HEADER, *polygons]) + "\n")
    bar.close()
    _write_text(out_dir / "README.txt", _readme(seed, counts, masks, class_rows))
    _write_text(out_dir / DATASET_SETTINGS, json.dumps(DATASET_NEEDS, indent=2) + "\n")


def _readme(seed: int, counts: dict[str, int], masks: bool, class_rows: list[str]) -> str:
    """README.txt: what the data is, where its metadata comes from and under which licence."""
    names = dict(row.split(",", 1) for row in class_rows)
    drawn = ", ".join(names[mid] for mid in names if mid in LEAF_STYLES)
    rare = ", ".join(names[mid] for mid in names if mid in LEAF_STYLES and LEAF_STYLES[mid].train_weight < 1)
    not_drawn = ", ".join(names[mid] for mid in names if mid not in LEAF_STYLES)
    text = (
        f"{README_FIRST_LINE} (python -m data_prep.mini, seed {seed})\n\n"
        "Synthetic images annotated in the Open Images Challenge 2019 detection formats, for running the whole\n"
        "pipeline on a CPU in minutes. Images: " + ", ".join(f"{n} {split}" for split, n in counts.items()) + ".\n"
        "Each has a textured random background, 1-7 annotated shapes (one shape and colour per class; look-alike\n"
        "siblings share a colour or a shape), 8-64 px, some partly hidden by later shapes (IsOccluded=1) or cut\n"
        "by the border (IsTruncated=1), and 2-8 distractor shapes of no class; a third hold a cluster of tiny\n"
        "shapes of one class annotated as one group-of box (IsGroupOf=1); a quarter are blurred. Rare classes\n"
        f"({rare}) are drawn {RARE_WEIGHT:g} times as often as the others in train, all equally in validation\n"
        "and test.\n\n"
        f"Classes: {len(names)} real Challenge 2019 classes under their real MIDs. Drawn (leaf) classes: {drawn}.\n"
        f"Not drawn (non-leaf) classes: {not_drawn}; they are annotated only through hierarchy expansion\n"
        "and image-level labels, as the real boxes carry only leaf-most labels. The class rows and the label\n"
        "hierarchy come from the real Open Images files (annotations by Google, licensed CC BY 4.0,\n"
        "https://creativecommons.org/licenses/by/4.0/), restricted to these classes. The images are synthetic.\n"
    )
    if masks:
        text += ("\nmini-{train,validation}-polygons.csv (ImageID,BoxRow,Polygon): the whole outline of each drawn\n"
                 "non-group-of object; BoxRow is the 0-based data row in the split's box file, Polygon the\n"
                 "space-separated normalised x y pairs.\n")
    return text


def write_mini_dataset(out_dir: str | Path, seed: int = 0, masks: bool = True, n_train: int = 300,
                       n_validation: int = 60, n_test: int = 60, progress: bool = False) -> Path:
    """Generate the mini dataset into ``out_dir`` and return it.

    The dataset is built in a temporary sibling folder and then renamed into place; an existing ``out_dir`` is
    replaced only when it is empty or holds an earlier mini dataset (its README.txt says so)."""
    out_dir = Path(out_dir)
    counts = {"train": n_train, "validation": n_validation, "test": n_test}
    for split, n in counts.items():
        if n < 0 or (split != "test" and n < len(LEAF_STYLES)):
            raise ValueError(f"{split}: need at least {len(LEAF_STYLES)} images (one per drawn class), got {n}")
    if out_dir.exists():
        readme = out_dir / "README.txt"
        is_mini = readme.is_file() and readme.read_text(encoding="utf-8").startswith(README_FIRST_LINE)
        if not out_dir.is_dir() or not (is_mini or not any(out_dir.iterdir())):
            raise FileExistsError(f"{out_dir} exists and is not a mini dataset; refusing to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        _build(tmp, seed, masks, counts, progress)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.mini",
        description="Generate the bundled mini dataset: synthetic images with annotations in the exact Open Images "
                    "Challenge 2019 formats (13 real classes). The same seed gives byte-identical files.")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="output folder (replaced if it holds a mini dataset, refused otherwise)")
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default: 0)")
    parser.add_argument("--no-masks", dest="masks", action="store_false",
                        help="do not write mini-{train,validation}-polygons.csv")
    parser.add_argument("--train", type=int, default=300, metavar="N", help="number of train images (default: 300)")
    parser.add_argument("--validation", type=int, default=60, metavar="N",
                        help="number of validation images (default: 60)")
    parser.add_argument("--test", type=int, default=60, metavar="N", help="number of test images (default: 60)")
    args = parser.parse_args(argv)
    try:
        out = write_mini_dataset(args.out, seed=args.seed, masks=args.masks, n_train=args.train,
                                 n_validation=args.validation, n_test=args.test, progress=True)
    except (ValueError, FileExistsError) as e:
        parser.error(str(e))
    print(f"mini dataset written to {out}")


if __name__ == "__main__":
    main()
