"""ensemble stage: box fusion over the boxes of several models and ``python -m ensemble``.

The fusion functions share ensemble-boxes' calling convention and are re-exported here:
``from ensemble import weighted_boxes_fusion, nms, soft_nms, nms_method, adj_nms``; ``FUSION_METHODS`` maps each
method name a recipe (or ``pipeline.infer --merge``) may give to its function.
"""
from .suppression import adj_nms, nms, nms_method, soft_nms
from .recipe import METHODS as FUSION_METHODS
from .wbf import weighted_boxes_fusion

__all__ = ["FUSION_METHODS", "adj_nms", "nms", "nms_method", "soft_nms", "weighted_boxes_fusion"]
