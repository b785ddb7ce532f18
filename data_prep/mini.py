"""The bundled mini dataset: synthetic images annotated in the exact Open Images Challenge 2019 formats.

Thirteen real challenge classes (real MIDs, real hierarchy relations): nine leaf classes that are drawn, each as one
shape in one colour on a noisy, textured background, and four non-leaf classes that appear only through hierarchy
expansion, as in the real data where boxes carry the leaf-most label. The set holds a class with two parents
(Tomato: Vegetable and Fruit) and a three-level chain (Pumpkin -> Squash -> Vegetable).

Written files (see docs/artifacts.md for the layout)::

    challenge-2019-classes-description-500.csv     the 13 rows of the real file, in its order
    challenge-2019-label500-hierarchy.json          the real hierarchy restricted to those classes
    challenge-2019-{train,validation}-detection-bbox.csv              13 / 7 columns
    challenge-2019-{train,validation}-detection-human-imagelabels.csv  4 / 3 columns
    {train,validation,test}/<ImageID>.jpg          16-hex-digit ImageIDs, 128-192 px per side
    sample_submission.csv                           ImageId,PredictionString (empty strings)
    mini-{train,validation}-polygons.csv            ImageID,BoxRow,Polygon (unless masks=False)
    README.txt

Coordinates are normalised to [0, 1]. Each object is drawn from its polygon, so its box is the polygon's bounding
box and its mask is exactly the polygon; both are quantised to the number format of their split's box file first
(6 decimals for train, float32 for validation), so every written polygon lies inside its written box.
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
from PIL import Image, ImageDraw
from tqdm import tqdm

from contracts.hierarchy import Hierarchy

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

# Leaf classes: MID -> (display name, shape, RGB fill). Shapes and colours are pairwise distinct so that a small
# randomly initialised detector separates the classes within minutes of CPU training.
LEAF_STYLES: dict[str, tuple[str, str, tuple[int, int, int]]] = {
    "/m/07j87": ("Tomato", "disc", (215, 30, 30)),
    "/m/014j1m": ("Apple", "triangle", (40, 170, 50)),
    "/m/09qck": ("Banana", "crescent", (240, 215, 30)),
    "/m/09k_b": ("Lemon", "diamond", (30, 200, 215)),
    "/m/05zsy": ("Pumpkin", "hexagon", (245, 125, 15)),
    "/m/027pcv": ("Zucchini", "bar", (30, 60, 205)),
    "/m/0fj52s": ("Carrot", "star", (215, 40, 200)),
    "/m/05ctyq": ("Tennis ball", "cross", (245, 245, 245)),
    "/m/01226z": ("Football", "ellipse", (120, 40, 20)),
}
# Non-leaf classes: annotated only through expansion of their descendants (and by image-level labels).
NON_LEAF_MIDS = ("/m/02xwb", "/m/0f4s2w", "/m/0dv77", "/m/018xm")  # Fruit, Vegetable, Squash, Ball
MINI_MIDS = frozenset(LEAF_STYLES) | frozenset(NON_LEAF_MIDS)

SPLIT_CODES = {"train": 0, "validation": 1, "test": 2}
SIDE_RANGE = (128, 192)       # image width and height, pixels (inclusive)
OBJECT_SIZE = (14, 70)        # longest box side of a single object, pixels
MEMBER_SIZE = (7, 12)         # longest box side of one member of a group-of cluster, pixels
OBJECTS_PER_IMAGE = (1, 6)
GROUP_OF_PROB = 0.2           # share of images with one group-of cluster
TRUNCATED_PROB = 0.1          # share of objects placed partly outside the image
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
    if shape == "ellipse":
        return ring(32) * [1.0, 0.6]
    if shape == "triangle":
        return ring(3)
    if shape == "diamond":
        return ring(4) * [0.7, 1.0]
    if shape == "hexagon":
        return ring(6)
    if shape == "bar":
        return np.array([[-1.0, -0.3], [1.0, -0.3], [1.0, 0.3], [-1.0, 0.3]])
    if shape == "star":
        pts = ring(10)
        pts[1::2] *= 0.45
        return pts
    if shape == "cross":
        a = 0.33
        return np.array([[-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a],
                         [a, 1], [-a, 1], [-a, a], [-1, a], [-1, -a], [-a, -a]], dtype=float)
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
    raise ValueError(f"unknown shape {shape!r}")


UNIT_SHAPES = {shape: _unit_shape(shape) for _, shape, _ in LEAF_STYLES.values()}


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


class _Painter:
    """Draws non-overlapping polygons on one image and records their annotations."""

    def __init__(self, rng: np.random.Generator, image_id: str, width: int, height: int):
        self.rng = rng
        self.canvas = Image.fromarray(np.clip(_background(rng, width, height), 0, 255).astype(np.uint8))
        self.draw = ImageDraw.Draw(self.canvas)
        self.out = DrawnImage(image_id, width, height)
        self.taken: list[np.ndarray] = []   # boxes (x0, y0, x1, y1) already used

    def _paint(self, polys: list[np.ndarray], label: str) -> None:
        colour = np.clip(np.array(LEAF_STYLES[label][2]) + self.rng.integers(-20, 21, size=3), 0, 255)
        for poly in polys:
            # PIL puts pixel centres at integer coordinates; our frame puts them at i + 0.5.
            self.draw.polygon([(float(x), float(y)) for x, y in poly - 0.5], fill=tuple(int(v) for v in colour))

    def _record(self, label: str, poly: np.ndarray, truncated: bool, group_of: bool) -> None:
        self.out.labels.append(label)
        self.out.polygons.append(poly)
        self.out.truncated.append(int(truncated))
        self.out.group_of.append(int(group_of))
        self.taken.append(np.concatenate([poly.min(axis=0), poly.max(axis=0)]))

    def single(self, label: str, may_truncate: bool) -> None:
        """One object of OBJECT_SIZE pixels at a free random place, sometimes partly outside the image."""
        rng, width, height = self.rng, self.out.width, self.out.height
        size = OBJECT_SIZE[0] + (OBJECT_SIZE[1] - OBJECT_SIZE[0]) * rng.random() ** 1.5
        poly = _shape_polygon(LEAF_STYLES[label][1], size, rng.uniform(0, 2 * np.pi))
        half = (poly.max(axis=0) - poly.min(axis=0)) / 2
        may_cut = may_truncate and rng.random() < TRUNCATED_PROB
        reach = half * 0.5 if may_cut else -half   # how far the box may extend past the image border
        for _ in range(30):
            placed = poly + rng.uniform(-reach, np.array([width, height]) + reach)
            if may_cut:
                clipped = _clip_to_image(placed, width, height)
                if len(clipped) < 3 or _polygon_area(clipped) < 0.4 * _polygon_area(placed):
                    continue
                placed = clipped
            box = np.concatenate([placed.min(axis=0), placed.max(axis=0)])
            if not _overlaps(box, self.taken, 2.0):
                self._paint([placed], label)
                cut = bool((box[:2] <= 0).any() or box[2] >= width or box[3] >= height)
                self._record(label, placed, truncated=cut, group_of=False)
                return

    def cluster(self, label: str) -> None:
        """3-8 small objects of one class in a free square region, annotated as one group-of box."""
        rng, width, height = self.rng, self.out.width, self.out.height
        side = rng.uniform(36, 60)
        for _ in range(10):
            x0, y0 = rng.uniform(2, width - side - 2), rng.uniform(2, height - side - 2)
            if not _overlaps(np.array([x0, y0, x0 + side, y0 + side]), self.taken, 2.0):
                break
        else:
            return
        members: list[np.ndarray] = []
        boxes: list[np.ndarray] = []
        for _ in range(40):
            size = rng.uniform(*MEMBER_SIZE)
            poly = _shape_polygon(LEAF_STYLES[label][1], size, rng.uniform(0, 2 * np.pi))
            poly = poly + [x0 + rng.uniform(size / 2, side - size / 2), y0 + rng.uniform(size / 2, side - size / 2)]
            box = np.concatenate([poly.min(axis=0), poly.max(axis=0)])
            if not _overlaps(box, boxes, 1.0):
                members.append(poly)
                boxes.append(box)
                if len(members) == 8:
                    break
        if len(members) >= 3:
            self._paint(members, label)
            self._record(label, np.concatenate(members), truncated=False, group_of=True)

    def finish(self) -> DrawnImage:
        """The image with sensor-like noise over everything."""
        shape = (self.out.height, self.out.width, 3)
        pixels = np.asarray(self.canvas, dtype=np.float64) + self.rng.normal(0, 6, size=shape)
        self.out.pixels = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
        return self.out


def _draw_image(rng: np.random.Generator, image_id: str, first_label: str, leaves: list[str]) -> DrawnImage:
    """Draw one image: an object of ``first_label`` (always placed, so that each split covers every class),
    sometimes a group-of cluster, then up to 5 more objects; no two overlap."""
    width, height = (int(v) for v in rng.integers(SIDE_RANGE[0], SIDE_RANGE[1] + 1, size=2))
    while width == height:
        height = int(rng.integers(SIDE_RANGE[0], SIDE_RANGE[1] + 1))
    painter = _Painter(rng, image_id, width, height)
    painter.single(first_label, may_truncate=False)
    if rng.random() < GROUP_OF_PROB:
        painter.cluster(leaves[int(rng.integers(len(leaves)))])
    for _ in range(int(rng.integers(OBJECTS_PER_IMAGE[0], OBJECTS_PER_IMAGE[1] + 1)) - 1):
        painter.single(leaves[int(rng.integers(len(leaves)))], may_truncate=True)
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
    for label, poly, truncated, group_of in zip(image.labels, image.polygons, image.truncated, image.group_of):
        norm = _quantise(poly / scale, split)
        (x0, y0), (x1, y1) = norm.min(axis=0), norm.max(axis=0)
        coords = ",".join(_format(v, split) for v in (x0, x1, y0, y1))
        if split == "train":
            boxes.append(f"{image.image_id},xclick,{label},1,{coords},0,{truncated},{group_of},0,0")
        else:
            boxes.append(f"{image.image_id},{label},{coords},{group_of}")
        if not group_of:
            outline = " ".join(_format(v, split) for v in norm.ravel())
            polygons.append(f"{image.image_id},{first_row + len(boxes) - 1},{outline}")
    return boxes, polygons


def _image_labels(rng: np.random.Generator, present: set[str], hierarchy: Hierarchy,
                  class_order: list[str]) -> list[tuple[str, int]]:
    """Human-verified image labels of one image: (MID, Confidence) pairs in class order.

    Positives: every class with a box, plus sometimes an ancestor of one (a non-leaf positive). Negatives: 1-3
    classes verified absent (neither the class nor any descendant present), often including a non-leaf one."""
    positives = set(present)
    if present and rng.random() < 0.3:
        anchor = sorted(present)[int(rng.integers(len(present)))]
        ancestors = sorted(hierarchy.ancestors(anchor) & MINI_MIDS)
        if ancestors:
            positives.add(ancestors[int(rng.integers(len(ancestors)))])
    absent = [c for c in class_order
              if c not in present and not (hierarchy.descendants(c) & present)]
    non_leaf_absent = [c for c in absent if c in NON_LEAF_MIDS]
    negatives: set[str] = set()
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
        first_labels = [leaves[int(i)] for i in np.concatenate(
            [split_rng.permutation(len(leaves)) for _ in range(count // len(leaves) + 1)])]
        (out_dir / split).mkdir(parents=True)
        boxes, labels, polygons = [], [], []
        for k, image_id in enumerate(ids):
            rng = np.random.default_rng([seed, SPLIT_CODES[split], k])
            image = _draw_image(rng, image_id, first_labels[k], leaves)
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


def _readme(seed: int, counts: dict[str, int], masks: bool, class_rows: list[str]) -> str:
    """README.txt: what the data is, where its metadata comes from and under which licence."""
    names = dict(row.split(",", 1) for row in class_rows)
    drawn = ", ".join(names[mid] for mid in names if mid in LEAF_STYLES)
    not_drawn = ", ".join(names[mid] for mid in names if mid not in LEAF_STYLES)
    text = (
        f"{README_FIRST_LINE} (python -m data_prep.mini, seed {seed})\n\n"
        "Synthetic images annotated in the Open Images Challenge 2019 detection formats, for running the whole\n"
        "pipeline on a CPU in minutes. Images: " + ", ".join(f"{n} {split}" for split, n in counts.items()) + ".\n"
        "Each has a textured random background and 1-6 non-overlapping shapes, one shape and colour per class;\n"
        "some hold a cluster of small shapes of one class annotated as one group-of box (IsGroupOf=1).\n\n"
        f"Classes: {len(names)} real Challenge 2019 classes under their real MIDs. Drawn (leaf) classes: {drawn}.\n"
        f"Not drawn (non-leaf) classes: {not_drawn}; they are annotated only through hierarchy expansion\n"
        "and image-level labels, as the real boxes carry only leaf-most labels. The class rows and the label\n"
        "hierarchy come from the real Open Images files (annotations by Google, licensed CC BY 4.0,\n"
        "https://creativecommons.org/licenses/by/4.0/), restricted to these classes. The images are synthetic.\n"
    )
    if masks:
        text += ("\nmini-{train,validation}-polygons.csv (ImageID,BoxRow,Polygon): the exact outline of each drawn\n"
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
