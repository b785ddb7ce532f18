"""The TSD heads and the mmdet v1 pieces of converted models, registered in ``mmdet.registry.MODELS`` on import."""
from .legacy import LegacySingleRoIExtractor, LegacyTSDShared2FCBBoxHead
from .tsd_bbox_head import TSDShared2FCBBoxHead
from .tsd_roi_head import TSDCascadeRoIHead, TSDRoIHead

__all__ = ["LegacySingleRoIExtractor", "LegacyTSDShared2FCBBoxHead", "TSDCascadeRoIHead", "TSDRoIHead",
           "TSDShared2FCBBoxHead"]
