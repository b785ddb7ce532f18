"""Open Images detection dataset read straight from the prepared Parquet columns.

The training split has 1.74M images and 12.2M boxes: one Python dict per image (what mmengine's ``BaseDataset``
builds and pickles) costs gigabytes and minutes. This dataset keeps the prepared columns as numpy arrays
(ImageID as fixed-width bytes, boxes as one float32 array) and builds an image's annotation dict only when
``get_data_info(idx)`` is called, by slicing ``box_start:box_start + box_count``. Plain numpy arrays are shared
by forked dataloader workers without the copy-on-read that per-image Python objects suffer.

Boxes stay normalised to [0, 1] in the data info; ``LoadOpenImagesAnnotations`` turns them into pixels once the
image (and so its size) is loaded.
"""
from __future__ import annotations

import copy
import os.path as osp
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from mmdet.datasets import BaseDetDataset
from mmdet.registry import DATASETS

from contracts.classes import ClassList, read_classes
from contracts.files import image_files

GROUP_OF_MODES = ("ignore", "keep", "drop")


def _missing_prepared(path: Path) -> FileNotFoundError:
    return FileNotFoundError(f"prepared annotations not found: {path} (run `make prepare` first)")


def prepared_classes(prepared_dir: str | Path) -> ClassList:
    """The class list of a prepared directory (its ``classes.csv``)."""
    path = Path(prepared_dir) / "classes.csv"
    if not path.is_file():
        raise _missing_prepared(path)
    return read_classes(path)


def check_num_classes(prepared_dir: str | Path, num_classes: int) -> None:
    """Raise if a model's ``num_classes`` differs from the class count of the prepared ``classes.csv``."""
    names = prepared_classes(prepared_dir).names
    if num_classes != len(names):
        raise ValueError(
            f"class count mismatch: the config has num_classes={num_classes} but "
            f"{Path(prepared_dir) / 'classes.csv'} lists {len(names)} classes; set num_classes={len(names)} "
            f"in the model (and dataset) config or point prepared_dir at the matching prepared data")


@DATASETS.register_module()
class OpenImagesPreparedDataset(BaseDetDataset):
    """One split of a ``make prepare`` output directory as an mmdet detection dataset.

    Args:
        prepared_dir: the prepared directory (``classes.csv``, ``{split}/images.parquet``, ``boxes.parquet``, ...).
        split: ``'train'`` or ``'validation'``.
        img_dir: folder of the images (``contracts.files.image_files``: ``{ImageID}.jpg``, ``.png``, ``.JPG``,
            ...); an image not in it (or a folder that does not exist) gets the path ``{img_dir}/{ImageID}.jpg``.
        group_of: what group-of boxes become: ``'ignore'`` (kept with mmdet's ``ignore_flag=1``: neither positive
            nor counted as background where the assigner has ``ignore_iof_thr``), ``'keep'`` (ordinary boxes) or
            ``'drop'`` (removed).
        num_classes: when given, must equal the number of rows of ``classes.csv``.
        filter_cfg: ``dict(filter_empty_gt=True)`` drops images without a non-ignored box (training only).
        **kwargs: ``BaseDetDataset`` arguments (``pipeline``, ``test_mode``, ``indices``, ``metainfo``, ...).

    ``get_data_info(idx)`` returns ``img_id``, ``img_path``, ``image_idx`` (row of ``images.parquet``) and
    ``instances`` with normalised ``bbox`` (x1, y1, x2, y2), ``bbox_label`` and ``ignore_flag``.
    """

    def __init__(self, prepared_dir: str, split: str = "train", img_dir: str = "", group_of: str = "ignore",
                 num_classes: int | None = None, **kwargs):
        if group_of not in GROUP_OF_MODES:
            raise ValueError(f"group_of must be one of {GROUP_OF_MODES}, got {group_of!r}")
        self.prepared_dir = Path(prepared_dir)
        self.split = split
        self.img_dir = str(img_dir)
        self.group_of = group_of
        classes = prepared_classes(self.prepared_dir)
        if num_classes is not None:
            check_num_classes(self.prepared_dir, num_classes)
        metainfo = {"classes": classes.names, "mids": classes.mids, **(kwargs.pop("metainfo", None) or {})}
        super().__init__(metainfo=metainfo, **kwargs)

    @property
    def split_dir(self) -> Path:
        return self.prepared_dir / self.split

    def full_init(self) -> None:
        """Load the columns, apply ``group_of``, ``filter_cfg`` and ``indices``; no per-image dict is built."""
        if self._fully_initialized:
            return
        self._load_columns()
        rows = self.filter_rows()
        if self._indices is not None:
            rows = _subset(rows, self._indices)
        self._rows = rows
        self._fully_initialized = True

    def load_data_list(self) -> list[dict]:
        """Unused: annotations are sliced from the column arrays on demand (see ``get_data_info``)."""
        return []

    def _load_columns(self) -> None:
        images_path = self.split_dir / "images.parquet"
        boxes_path = self.split_dir / "boxes.parquet"
        for path in (images_path, boxes_path):
            if not path.is_file():
                raise _missing_prepared(path)
        images = pq.read_table(images_path, columns=["ImageID", "box_start", "box_count"])
        boxes = pq.read_table(boxes_path, columns=["image_idx", "label", "XMin", "YMin", "XMax", "YMax",
                                                   "IsGroupOf"])
        self._image_ids = images["ImageID"].to_numpy().astype("S")
        box_start = images["box_start"].to_numpy().astype(np.int64)
        box_count = images["box_count"].to_numpy().astype(np.int64)
        if len(box_count) and (box_start + box_count).max(initial=0) > boxes.num_rows:
            raise ValueError(f"{images_path}: box_start + box_count exceeds the {boxes.num_rows} rows of "
                             f"{boxes_path}; rerun `make prepare`")
        labels = boxes["label"].to_numpy().astype(np.int16)
        bboxes = np.stack([boxes[c].to_numpy() for c in ("XMin", "YMin", "XMax", "YMax")], axis=1)
        bboxes = bboxes.astype(np.float32)
        group_of = boxes["IsGroupOf"].to_numpy() == 1  # -1 (unknown) counts as not group-of
        image_of_box = boxes["image_idx"].to_numpy().astype(np.int64)

        if self.group_of == "drop":
            keep = ~group_of
            labels, bboxes, image_of_box = labels[keep], bboxes[keep], image_of_box[keep]
            box_count = np.bincount(image_of_box, minlength=len(box_count)).astype(np.int64)
            box_start = np.concatenate([[0], np.cumsum(box_count)[:-1]]).astype(np.int64)
            ignore = np.zeros(len(labels), dtype=np.int8)
        elif self.group_of == "ignore":
            ignore = group_of.astype(np.int8)
        else:
            ignore = np.zeros(len(labels), dtype=np.int8)

        self._suffixes = self._image_suffixes()
        self._box_start, self._box_count = box_start, box_count
        self._labels, self._bboxes, self._ignore = labels, bboxes, ignore
        self._num_positive = np.bincount(image_of_box[ignore == 0], minlength=len(box_count))

    def _image_suffixes(self) -> np.ndarray:
        """The file suffix of each image in ``img_dir`` (one listing; bytes, '.jpg' where the folder lacks it)."""
        suffixes = np.full(len(self._image_ids), b".jpg", dtype="S5")
        if osp.isdir(self.img_dir):
            suffix = {image_id.encode(): path.name[len(image_id):].encode()
                      for image_id, path in image_files(self.img_dir).items()}
            suffixes[:] = [suffix.get(image_id, b".jpg") for image_id in self._image_ids.tolist()]
        return suffixes

    def filter_rows(self) -> np.ndarray:
        """Rows of ``images.parquet`` kept: all of them, or (training with ``filter_empty_gt``) those with a
        non-ignored box."""
        rows = np.arange(len(self._image_ids), dtype=np.int64)
        if self.test_mode or not (self.filter_cfg or {}).get("filter_empty_gt", False):
            return rows
        return rows[self._num_positive > 0]

    @property
    def image_rows(self) -> np.ndarray:
        """``image_idx`` (row of ``images.parquet``) of every dataset index, shape (len(self),)."""
        self.full_init()
        return self._rows

    def __len__(self) -> int:
        self.full_init()
        return len(self._rows)

    def _box_slice(self, idx: int) -> slice:
        row = self._rows[idx]
        start = int(self._box_start[row])
        return slice(start, start + int(self._box_count[row]))

    def get_data_info(self, idx: int) -> dict:
        """Annotation dict of dataset index ``idx``, built from the column arrays (boxes normalised)."""
        self.full_init()
        idx = int(idx)
        if not -len(self) <= idx < len(self):
            raise IndexError(f"index {idx} out of range for {len(self)} images")
        idx %= len(self)
        row = int(self._rows[idx])
        img_id = self._image_ids[row].decode()
        boxes = self._box_slice(idx)
        instances = [
            dict(bbox=bbox.tolist(), bbox_label=int(label), ignore_flag=int(ignore))
            for bbox, label, ignore in zip(self._bboxes[boxes], self._labels[boxes], self._ignore[boxes])
        ]
        img_path = osp.join(self.img_dir, img_id + self._suffixes[row].decode())
        return dict(img_id=img_id, img_path=img_path, image_idx=row,
                    instances=instances, sample_idx=idx)

    def get_cat_ids(self, idx: int) -> list[int]:
        """Sorted distinct class indices of the image's boxes."""
        self.full_init()
        return np.unique(self._labels[self._box_slice(int(idx))]).astype(int).tolist()

    def get_subset_(self, indices: int | Sequence[int]) -> None:
        """Restrict this dataset to ``indices`` (mmengine semantics: an int keeps the first/last few)."""
        self.full_init()
        self._rows = _subset(self._rows, indices)

    def get_subset(self, indices: int | Sequence[int]) -> OpenImagesPreparedDataset:
        """A copy restricted to ``indices``; the column arrays are shared, not copied."""
        self.full_init()
        sub = copy.copy(self)
        sub._rows = _subset(self._rows, indices)
        return sub


def _subset(rows: np.ndarray, indices: int | Sequence[int]) -> np.ndarray:
    if isinstance(indices, int):
        return rows[:indices] if indices >= 0 else rows[indices:]
    return rows[np.asarray(indices, dtype=np.int64)]
