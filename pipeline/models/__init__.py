"""The TSD heads, registered in ``mmdet.registry.MODELS`` on import."""
from .tsd_bbox_head import TSDShared2FCBBoxHead
from .tsd_roi_head import TSDCascadeRoIHead, TSDRoIHead

__all__ = ["TSDCascadeRoIHead", "TSDRoIHead", "TSDShared2FCBBoxHead"]
