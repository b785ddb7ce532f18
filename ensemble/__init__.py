"""ensemble stage: box fusion over the boxes of several models and ``python -m ensemble``.

The fusion functions share ensemble-boxes' calling convention and are re-exported here:
``from ensemble import weighted_boxes_fusion, nms, soft_nms, nms_method, adj_nms``. (The package attribute
``ensemble.nms`` is therefore the function; the module's names are reached with ``from ensemble.nms import ...``.)
"""
from .nms import adj_nms, nms, nms_method, soft_nms
from .wbf import weighted_boxes_fusion

__all__ = ["adj_nms", "nms", "nms_method", "soft_nms", "weighted_boxes_fusion"]
