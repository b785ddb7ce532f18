"""Pure-PyTorch ops of the TSD head (CPU and CUDA)."""
from .deform_roi_pool import DeformRoIPool, deform_roi_pool, deform_roi_pool_levels

__all__ = ["DeformRoIPool", "deform_roi_pool", "deform_roi_pool_levels"]
