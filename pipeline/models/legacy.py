"""mmdetection v1 box conventions, for models converted from the original TSD code (``configs/released/``).

mmdet v1 measured a box of corners (x1, y1, x2, y2) as ``x2 - x1 + 1`` pixels wide. mmdet 3 dropped the ``+1``
and offers legacy anchor generators, box coders and an NMS ``offset`` for it, but its RoI extractor has no such
option. The two classes here add the ``+1`` where the original TSD code had it, by growing the RoIs' far corners
by one pixel before the mmdet 3 / project computation:

- :class:`LegacySingleRoIExtractor`: RoIAlign ends at ``(x2 + 1) * scale`` (v1's ``aligned=False`` kernel) and the
  FPN level comes from ``sqrt((w + 1) (h + 1))``;
- :class:`LegacyTSDShared2FCBBoxHead`: the same FPN level for the DeltaC / DeltaR poolings, and
  ``P_r = P + trans_std * delta_r * (w + 1, h + 1)``.

RoIs are ``(batch_idx, x1, y1, x2, y2)`` in image pixels.
"""
from __future__ import annotations

from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
from mmdet.registry import MODELS
from torch import Tensor

from .tsd_bbox_head import TSDShared2FCBBoxHead

_FAR_CORNER = (0.0, 0.0, 0.0, 1.0, 1.0)


def _grown(rois: Tensor) -> Tensor:
    """(N, 5) the RoIs with x2 and y2 one pixel further: v1 sizes ``x2 - x1 + 1`` as mmdet 3 measures them."""
    return rois + rois.new_tensor(_FAR_CORNER)


@MODELS.register_module()
class LegacySingleRoIExtractor(SingleRoIExtractor):
    """SingleRoIExtractor with mmdet v1's ``+1``: in the FPN level rule and at the RoIAlign end.

    With ``roi_layer=dict(type='RoIAlign', aligned=False, sampling_ratio=2)`` this is v1's RoIAlign except for
    RoIs narrower than one feature pixel (mmcv widens them to 1, v1 did not).
    """

    def forward(self, feats: tuple[Tensor, ...], rois: Tensor, roi_scale_factor: float | None = None) -> Tensor:
        if roi_scale_factor is not None:
            raise NotImplementedError("LegacySingleRoIExtractor does not rescale RoIs (v1 rescaled with +1 sizes)")
        return super().forward(feats, _grown(rois))


@MODELS.register_module()
class LegacyTSDShared2FCBBoxHead(TSDShared2FCBBoxHead):
    """The TSD head with the original's ``+1`` sizes in its FPN level rule and in ``P_r``; pair it with
    :class:`LegacySingleRoIExtractor` so that both poolings of a RoI read the same level."""

    def map_roi_levels(self, rois: Tensor, num_levels: int) -> Tensor:
        return super().map_roi_levels(_grown(rois), num_levels)

    def translate_rois(self, rois: Tensor, delta_r: Tensor) -> Tensor:
        return super().translate_rois(_grown(rois), delta_r) - rois.new_tensor(_FAR_CORNER)
