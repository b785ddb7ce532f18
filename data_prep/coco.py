"""COCO detection export of a prepared split (``coco/{split}.json``), for mmdet's own ``CocoDataset``.

- categories: ``id`` = class index + 1 (class-file order), ``name`` = display name, ``mid`` = the MID;
- images: ``id`` = image_idx + 1, ``file_name`` = ``<ImageID>.jpg`` (relative to the split's image folder),
  ``width``/``height`` read from the JPEG headers (PIL, no pixel decoding) in parallel with joblib;
- annotations: ``bbox`` = ``[x, y, w, h]`` in pixels, ``area`` = w * h, ``iscrowd`` = 1 for group-of boxes, in
  the order of ``boxes.parquet``; pixel values are rounded to 0.01. When the split has instance polygons (``mini-{split}-polygons.csv``), ``segmentation``
  holds them in pixels (ancestor copies share their box's polygon); a box without a polygon in such a split
  (group-of boxes) gets its rectangle, because mmdet's mask loading needs a mask on every instance. Without a
  polygon file there is no ``segmentation`` key.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from contracts.files import DataError

SIZE_CHUNK = 2000


def _header_sizes(paths: Sequence[str]) -> list[tuple[int, int]]:
    """(width, height) of each image from its header only."""
    out = []
    for p in paths:
        try:
            with Image.open(p) as im:
                out.append(im.size)
        except FileNotFoundError:
            raise DataError(f"image not found: {p}") from None
        except (UnidentifiedImageError, OSError) as e:
            raise DataError(f"{p}: not a readable image ({e})") from None
    return out


def image_sizes(image_dir: Path, image_ids: Sequence[str], workers: int | None = None,
                progress: bool = True) -> np.ndarray:
    """(width, height) per ImageID of ``image_dir/<ImageID>.jpg``, int64 array of shape (n, 2)."""
    if not image_dir.is_dir():
        raise DataError(f"COCO export needs the image sizes, but the image folder does not exist: {image_dir}")
    paths = [str(image_dir / f"{i}.jpg") for i in image_ids]
    chunks = [paths[i:i + SIZE_CHUNK] for i in range(0, len(paths), SIZE_CHUNK)]
    n_jobs = max(1, min(workers or os.cpu_count() or 1, len(chunks)))
    jobs = Parallel(n_jobs=n_jobs, return_as="generator")(delayed(_header_sizes)(c) for c in chunks)
    sizes: list[tuple[int, int]] = []
    for part in tqdm(jobs, total=len(chunks), desc=f"image sizes {image_dir.name}", unit="chunk",
                     disable=not progress, leave=False):
        sizes.extend(part)
    return np.asarray(sizes, np.int64).reshape(-1, 2)


def _pixels(numbers: Sequence[float]) -> str:
    """A JSON list of pixel values rounded to 0.01 (Python's correctly rounded ``round``)."""
    return "[" + ",".join(repr(round(v, 2)) for v in numbers) + "]"


def export_coco(data, class_rows: Sequence[tuple[str, str]], image_dir: Path, out_path: Path, *,
                workers: int | None = None, progress: bool = True) -> None:
    """Write the COCO JSON of one prepared split (:class:`data_prep.prepare.SplitData`) to ``out_path``."""
    image_ids = data.image_ids.to_pylist()
    sizes = image_sizes(image_dir, image_ids, workers, progress)
    boxes = data.boxes
    img = boxes["image_idx"]
    scale = np.stack([sizes[img, 0], sizes[img, 1], sizes[img, 0], sizes[img, 1]], axis=1).astype(np.float64)
    corners = np.stack([boxes[c] for c in ("XMin", "YMin", "XMax", "YMax")], axis=1).astype(np.float64) * scale
    crowd = (boxes["IsGroupOf"] == 1).astype(np.int64)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    categories = [{"id": i + 1, "name": name, "mid": mid} for i, (mid, name) in enumerate(class_rows)]
    with open(out_path, "w", encoding="utf-8") as f:
        f.write('{"info": {"description": "Open Images annotations, prepared by data_prep"}, "licenses": [],\n')
        f.write('"categories": ' + json.dumps(categories, ensure_ascii=False) + ',\n"images": [\n')
        f.write(",\n".join(json.dumps({"id": i + 1, "file_name": f"{image}.jpg", "width": int(w), "height": int(h)})
                           for i, (image, (w, h)) in enumerate(zip(image_ids, sizes.tolist()))))
        f.write('],\n"annotations": [\n')
        rows = zip((img + 1).tolist(), (boxes["label"] + 1).tolist(), corners.tolist(), crowd.tolist(),
                   data.box_row.tolist(), sizes[img].tolist())
        for k, (image_id, cat, (x0, y0, x1, y1), c, raw_row, size) in enumerate(
                tqdm(rows, total=len(img), desc=f"COCO {out_path.stem}", disable=not progress, leave=False)):
            w, h = round(x1 - x0, 2), round(y1 - y0, 2)
            seg = ""
            if data.polygons is not None:
                seg = ', "segmentation": ' + _segmentation(data.polygons.get(raw_row), (x0, y0, x1, y1), size)
            f.write(("" if k == 0 else ",\n") + f'{{"id": {k + 1}, "image_id": {image_id}, "category_id": {cat}, '
                    f'"bbox": {_pixels([x0, y0, w, h])}, "area": {round(w * h, 2)!r}, "iscrowd": {c}{seg}}}')
        f.write("]}\n")


def _segmentation(polygons: list[str] | None, corners: Sequence[float], size: Sequence[int]) -> str:
    """Polygons in pixels as JSON (``[[x, y, ...], ...]``), or the box rectangle when there is none."""
    if not polygons:
        x0, y0, x1, y1 = corners
        return "[" + _pixels([x0, y0, x1, y0, x1, y1, x0, y1]) + "]"
    w, h = size
    return "[" + ",".join(_pixels([float(v) * (w if i % 2 == 0 else h) for i, v in enumerate(poly.split())])
                          for poly in polygons) + "]"
