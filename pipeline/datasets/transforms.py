"""Annotation loading for ``OpenImagesPreparedDataset``, whose boxes are normalised until the image is loaded."""
from __future__ import annotations

import numpy as np
from mmdet.datasets.transforms import LoadAnnotations
from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import BaseBoxes


@TRANSFORMS.register_module()
class LoadOpenImagesAnnotations(LoadAnnotations):
    """mmdet's ``LoadAnnotations`` for normalised boxes: scales them to pixels of the loaded image.

    Put it right after ``LoadImageFromFile``: x1, x2 are multiplied by the image width and y1, y2 by its height
    (``results['img_shape']``), the Open Images convention. Labels and ignore flags load as in mmdet.
    """

    def transform(self, results: dict) -> dict:
        if "img_shape" not in results:
            raise KeyError("LoadOpenImagesAnnotations needs the image size: put it after LoadImageFromFile")
        results = super().transform(results)
        if self.with_bbox:
            height, width = results["img_shape"][:2]
            boxes = results["gt_bboxes"]
            if isinstance(boxes, BaseBoxes):
                boxes.rescale_((width, height))
            else:
                boxes *= np.array([width, height, width, height], dtype=np.float32)
        return results
