"""Datasets, annotation loading and sampling for the prepared Open Images annotations.

Importing the package registers ``OpenImagesPreparedDataset`` (mmdet DATASETS), ``LoadOpenImagesAnnotations``
(mmdet TRANSFORMS) and ``OpenImagesClassAwareSampler`` (mmengine DATA_SAMPLERS).
"""
from .open_images import OpenImagesPreparedDataset, check_num_classes, prepared_classes
from .samplers import OpenImagesClassAwareSampler, class_aware_indices, class_members
from .transforms import LoadOpenImagesAnnotations

__all__ = [
    "OpenImagesPreparedDataset",
    "OpenImagesClassAwareSampler",
    "LoadOpenImagesAnnotations",
    "check_num_classes",
    "class_aware_indices",
    "class_members",
    "prepared_classes",
]
