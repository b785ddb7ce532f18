"""Class-aware sampling from the prepared class index: pick a class uniformly, then one of its images.

Open Images is long-tailed (a few classes hold most boxes); the Challenge 2019 winners sampled classes uniformly.
The class -> images index comes from ``{split}/class_index.parquet`` so nothing is scanned per image.
"""
from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pyarrow.parquet as pq
from mmengine.dist import get_dist_info, sync_random_seed
from mmengine.registry import DATA_SAMPLERS
from torch.utils.data import Sampler


def class_members(labels: np.ndarray, image_rows: np.ndarray, dataset_rows: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group dataset indices by class.

    Args:
        labels, image_rows: the class index, (K,) each: image ``image_rows[k]`` holds a box of class ``labels[k]``,
            sorted by label.
        dataset_rows: (N,) ``image_idx`` of each dataset index (images filtered out of the dataset are absent).

    Returns:
        (classes, starts, members): the C classes with at least one image in the dataset, and for class
        ``classes[c]`` its dataset indices ``members[starts[c]:starts[c + 1]]``.
    """
    size = int(max(image_rows.max(initial=-1), dataset_rows.max(initial=-1))) + 1
    position = np.full(size, -1, dtype=np.int64)
    position[dataset_rows] = np.arange(len(dataset_rows), dtype=np.int64)
    members = position[image_rows]
    present = members >= 0
    labels, members = labels[present], members[present]
    classes, starts = np.unique(labels, return_index=True)
    return classes, np.append(starts, len(members)).astype(np.int64), members


def class_aware_indices(starts: np.ndarray, members: np.ndarray, num: int, rng: np.random.Generator
                        ) -> np.ndarray:
    """``num`` dataset indices: each draws a class uniformly, then one of that class's images uniformly.

    Draw ``k`` takes the ``k``-th pair of uniform numbers of ``rng``, so the first ``n`` indices are the same for
    any ``num >= n``: ranks splitting a draw padded to a multiple of their count see what one process sees."""
    if len(starts) < 2:
        raise ValueError("class-aware sampling needs at least one class with an image")
    uniform = rng.random((num, 2))
    num_classes = len(starts) - 1
    cls = np.minimum((uniform[:, 0] * num_classes).astype(np.int64), num_classes - 1)
    sizes = starts[cls + 1] - starts[cls]
    return members[starts[cls] + np.minimum((uniform[:, 1] * sizes).astype(np.int64), sizes - 1)]


@DATA_SAMPLERS.register_module()
class OpenImagesClassAwareSampler(Sampler):
    """Class-aware sampler for ``OpenImagesPreparedDataset`` (reads its split's ``class_index.parquet``).

    Args:
        dataset: an ``OpenImagesPreparedDataset`` (its ``filter_empty_gt``/``indices`` selection is honoured).
        seed: random seed shared by all ranks (a synchronised random one when None).
        num_samples: indices per rank and epoch; default ``ceil(len(dataset) / world_size)``.

    Epoch ``e`` draws ``num_samples * world_size`` indices from ``seed + e``; rank ``r`` takes every
    ``world_size``-th one starting at ``r``, so ranks see disjoint draws, together the draws of one process with
    the same seed, and a run is reproducible.
    """

    def __init__(self, dataset, seed: int | None = None, num_samples: int | None = None):
        if not hasattr(dataset, "image_rows") or not hasattr(dataset, "split_dir"):
            raise TypeError(f"OpenImagesClassAwareSampler needs an OpenImagesPreparedDataset, "
                            f"got {type(dataset).__name__}")
        self.rank, self.world_size = get_dist_info()
        self.seed = sync_random_seed() if seed is None else seed
        self.epoch = 0
        self.num_samples = num_samples or math.ceil(len(dataset) / self.world_size)
        index_path = dataset.split_dir / "class_index.parquet"
        if not index_path.is_file():
            raise FileNotFoundError(f"class index not found: {index_path} (run `make prepare` first)")
        table = pq.read_table(index_path, columns=["label", "image_idx"])
        self.classes, self.starts, self.members = class_members(
            table["label"].to_numpy(), table["image_idx"].to_numpy().astype(np.int64), dataset.image_rows)
        if len(self.classes) == 0:
            raise ValueError(f"{index_path}: no class has an image in the dataset")

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng(self.seed + self.epoch)
        indices = class_aware_indices(self.starts, self.members, self.num_samples * self.world_size, rng)
        return iter(indices[self.rank::self.world_size].tolist())

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Draw a different sequence each epoch (the runner calls this)."""
        self.epoch = epoch
