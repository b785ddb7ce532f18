"""Deformable RoI pooling of DCN v1 (the TSD head's DeltaC / DeltaR pooling) in pure PyTorch.

Shape shorthand in this module:
    B: images in the batch          C: feature channels
    H, W: height and width of one feature map (one FPN level)
    N: RoIs                          k: output bins per side (``out_size``)
    S: samples per bin side (``sample_per_part``)
    R = N * k * k: output bins ("rows"), row r = n * k * k + i * k + j (bin row i, bin column j)
    M: rows of the channel-last feature table, sum over levels of B * H * W (row = pixel)

Coordinate frames: RoIs are ``(batch_idx, x1, y1, x2, y2)`` in image pixels; samples live in feature pixels
of one level (image pixels times ``spatial_scale``), pixel centres at integers.

The math is exactly that of the original CUDA kernel (DCN v1 ``deform_psroi_pooling`` with group size 1), kept
so that detectors trained with the original code and with this one see the same features:
    * RoI corners are rounded half away from zero in image pixels (not ``torch.round``, which rounds half to
      even), and the far corner gets +1 pixel: ``x_e = (round(x2) + 1) * s - 0.5``.
    * The -0.5 shift puts the RoI edge on a pixel border; the RoI is at least 0.1 feature pixels wide.
    * S x S samples per bin sit at 0, 1/S, .., (S-1)/S of the bin from its top-left edge (not centred).
    * A sample outside [-0.5, size - 0.5] on either axis is skipped; kept samples are clamped into the map and
      interpolated with ``x_lo = floor``, ``x_hi = ceil`` (equal at integers, so the derivative w.r.t. the
      position is zero there and at clamped positions); the bin is the mean of its kept samples (0 if none).
    * The offset of bin (i, j) moves the whole bin by ``trans_std * offset * (Rw, Rh)``.

Implementation: validity and clamping act on each axis separately, so the S x S samples of a bin form an outer
product of S x-samples and S y-samples; summing their bilinear weights per axis gives, for each bin, a small
window of per-column and per-row weights whose outer product is the bin's row of a sparse (R, M) matrix over a
channel-last table of all levels' pixels (typically ~15 entries per bin instead of 4 * S * S per-sample corners).
Pooling is a weighted ``embedding_bag`` over that table (one call for all RoIs and levels), the feature gradient
the same over the transposed entries, and the offset gradients weight the per-entry dot products
``<grad of the bin, table row>`` (``sampled_addmm``) with the interpolation slopes. Backward recomputes the
sampling from the saved RoIs and offsets rather than keeping it. Torch code only, so CPU and CUDA run the same path.
``F.grid_sample(align_corners=True, padding_mode='border')`` with a validity mask gives the same forward values,
but a one-sided position derivative at integer coordinates (the kernel's is zero) and it materialises all
4 * S * S samples per bin: it was about 4x slower on CPU than this form.
Everything is computed in float32 at least (float64 stays float64), also under autocast.
"""
from __future__ import annotations

import warnings
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DeformRoIPool", "deform_roi_pool", "deform_roi_pool_levels"]


def _round_half_away(v: Tensor) -> Tensor:
    """The CUDA kernel's ``round``: halves go away from zero (2.5 -> 3, -2.5 -> -3)."""
    return torch.sign(v) * torch.floor(v.abs() + 0.5)


def _axis_weights(positions: Tensor, length: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Summed bilinear weights of the S samples of each bin along one axis, on a window of K pixels.

    Args:
        positions: (2, R, S) sample coordinates (x then y), non-decreasing along S.
        length: (2, R, 1) the map's size along the axis (W for x, H for y).
    Returns:
        first (2, R) long, the window's first pixel; weight (2, R, K), the interpolation weights of the kept
        samples divided by their count; slope (2, R, K), the derivative of those w.r.t. a shift of the bin.
    """
    kept = (positions >= -0.5) & (positions <= length - 0.5)
    clamped = torch.minimum(positions.clamp(min=0), length - 1)
    low = clamped.floor()
    high = clamped.ceil()
    frac = clamped - low
    first = low[..., :1]
    low_slot = (low - first).long()
    high_slot = (high - first).long()
    size = int(high_slot[..., -1].max()) + 1
    keep = kept.to(positions.dtype) / kept.sum(-1, keepdim=True).clamp(min=1)
    weight = positions.new_zeros(*positions.shape[:-1], size)
    weight.scatter_add_(-1, low_slot, (1 - frac) * keep).scatter_add_(-1, high_slot, frac * keep)
    moving = keep * (high != low)  # zero derivative at integers and at clamped positions
    slope = positions.new_zeros(weight.shape)
    slope.scatter_add_(-1, low_slot, -moving).scatter_add_(-1, high_slot, moving)
    return first[..., 0].long(), weight, slope


class _Sampling(NamedTuple):
    """The pooling as a sparse (R, M) matrix in CSR form: bin r is ``sum_e pool[e] * table[col[e]]`` over
    ``crow[r] <= e < crow[r + 1]``; ``slope_x`` / ``slope_y`` hold, on the same entries, the derivative of the
    bin w.r.t. its x / y offset."""

    crow: Tensor  # (R + 1,) long
    row: Tensor  # (E,) long
    col: Tensor  # (E,) long, increasing within a row
    pool: Tensor  # (E,)
    slope_x: Tensor  # (E,)
    slope_y: Tensor  # (E,)


def _sampling(rois: Tensor, offset: Tensor, geometry: Tensor, out_size: int, samples: int,
              trans_std: float) -> _Sampling:
    """The sampling of every bin as table entries and weights (x and y handled together, axis first).

    Args:
        rois: (N, 5) ``(batch_idx, x1, y1, x2, y2)`` in image pixels.
        offset: (N, 2, k, k) raw offsets, x then y.
        geometry: (N, 4) per RoI ``(table_start, height, width, spatial_scale)`` of its level, where
            ``table_start`` is the table row of pixel (0, 0) of its image on that level.
    """
    if not torch.isfinite(offset).all():  # a diverged offset net would otherwise ask for a map-sized window
        raise FloatingPointError("deform_roi_pool: the offsets contain NaN or infinity")
    dtype, device = offset.dtype, offset.device
    num_rois, k, bins = len(rois), out_size, out_size * out_size
    num_bins = num_rois * bins
    corners = _round_half_away(rois[:, 1:5].to(dtype))
    scale = geometry[:, 3:].to(dtype)
    start = corners[:, :2] * scale - 0.5  # (N, 2): x_s, y_s in feature pixels
    extent = ((corners[:, 2:] + 1) * scale - 0.5 - start).clamp(min=0.1)  # (N, 2): Rw, Rh
    bin_size = extent / k
    index = torch.arange(k, dtype=dtype, device=device)
    bin_index = torch.stack([index.expand(k, k), index[:, None].expand(k, k)])  # (2, k, k): column j, row i
    # Sample b of bin (i, j): j * bw + x_s + tx * Rw + b * bw / S, in the kernel's operation order so that
    # samples landing on integers are found identically.
    first = (bin_index * bin_size[:, :, None, None] + start[:, :, None, None]
             + trans_std * offset * extent[:, :, None, None])
    step = torch.arange(samples, dtype=dtype, device=device) * bin_size[:, :, None] / samples
    positions = (first.view(num_rois, 2, bins, 1) + step[:, :, None, :]).transpose(0, 1)
    positions = positions.reshape(2, num_bins, samples)  # (2, R, S)

    per_bin = lambda v: v.t().repeat_interleave(bins, dim=1)  # noqa: E731  (N, 2) -> (2, R)
    sizes = per_bin(geometry[:, [2, 1]].long())  # W, H
    window_first, weight, slope = _axis_weights(positions, sizes[..., None].to(dtype))
    # d position / d offset = trans_std * RoI extent, the same for every sample of the RoI.
    slope = slope * per_bin(trans_std * extent)[..., None]

    # Entries: the window pixels where a weight or a slope is non-zero (each axis' used slots first), y-major so
    # that columns increase within a row. Table row of pixel (y, x) = table_start + y * W + x.
    used = (weight != 0) | (slope != 0)
    order = torch.argsort((~used).to(torch.uint8), dim=-1, stable=True)
    count = used.sum(-1)  # (2, R)
    pixel_step = torch.stack([torch.ones_like(sizes[0]), sizes[0]])  # 1 along x, W along y
    base = window_first * pixel_step
    base[0] += per_bin(geometry[:, :1].long())[0]
    table_offset = (base[..., None] + order * pixel_step[..., None]).reshape(-1)
    values = torch.stack([weight.gather(-1, order), slope.gather(-1, order)], dim=-1).reshape(-1, 2)

    width = weight.shape[-1]
    crow = torch.zeros(num_bins + 1, dtype=torch.long, device=device)
    torch.cumsum(count[0] * count[1], 0, out=crow[1:])
    num_entries = int(crow[-1])
    row = torch.repeat_interleave(torch.arange(num_bins, device=device), count[0] * count[1],
                                  output_size=num_entries)
    rank = torch.arange(num_entries, device=device) - crow.index_select(0, row)
    row_nx = count[0].index_select(0, row)
    y_rank = rank // row_nx
    ix = row * width + rank - y_rank * row_nx
    iy = row * width + y_rank + num_bins * width
    (xw, xs), (yw, ys) = values.index_select(0, ix).unbind(1), values.index_select(0, iy).unbind(1)
    col = table_offset.index_select(0, ix) + table_offset.index_select(0, iy)
    return _Sampling(crow, row, col, yw * xw, yw * xs, ys * xw)


def _channel_last_table(feats: Sequence[Tensor], dtype: torch.dtype) -> Tensor:
    """(M, C): the pixels of every level and image, one row each (level by level, image, y, x)."""
    table = feats[0].new_empty(sum(f.shape[0] * f.shape[2] * f.shape[3] for f in feats), feats[0].shape[1],
                               dtype=dtype)
    start = 0
    for f in feats:
        stop = start + f.shape[0] * f.shape[2] * f.shape[3]
        table[start:stop].view(f.shape[0], f.shape[2], f.shape[3], -1).copy_(f.permute(0, 2, 3, 1))
        start = stop
    return table


def _channel_first_grads(grad_table: Tensor, layout: Sequence[tuple[torch.Size, torch.dtype]]) -> list[Tensor]:
    """The table's gradient as one contiguous (B, C, H, W) gradient per level."""
    grads, start = [], 0
    for shape, dtype in layout:
        grad = grad_table.new_empty(shape, dtype=dtype)
        pixels = shape[2] * shape[3]
        for image in range(shape[0]):
            # A 2-D transposed copy: much faster on CPU than copying a permuted 4-D view.
            grad[image].view(shape[1], pixels).copy_(grad_table[start:start + pixels].t())
            start += pixels
        grads.append(grad)
    return grads


def _bag_sum(index: Tensor, bounds: Tensor, weights: Tensor, source: Tensor) -> Tensor:
    """Row r of the result is ``sum_e weights[e] * source[index[e]]`` over ``bounds[r] <= e < bounds[r + 1]``."""
    return F.embedding_bag(index, source, bounds[:-1], mode="sum", per_sample_weights=weights)


class _DeformRoIPoolFunction(torch.autograd.Function):
    """``rois`` (N, 5), ``offset`` (N, 2, k, k), ``geometry`` (N, 4), ``*feats`` L maps -> (N, C, k, k).

    The feature table is kept for backward; the sampling is recomputed. RoIs and geometry get no gradient.
    """

    @staticmethod
    def forward(ctx, rois: Tensor, offset: Tensor, geometry: Tensor, settings: tuple[int, int, float],
                *feats: Tensor) -> Tensor:
        table = _channel_last_table(feats, offset.dtype)
        ctx.save_for_backward(rois, offset, geometry, table)
        ctx.settings = settings
        ctx.feat_layout = [(f.shape, f.dtype) for f in feats]
        k = settings[0]
        out = table.new_empty(len(rois), table.shape[1], k, k)
        if len(rois):
            s = _sampling(rois, offset, geometry, *settings)
            out.permute(0, 2, 3, 1).copy_(_bag_sum(s.col, s.crow, s.pool, table).view(len(rois), k, k, -1))
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        rois, offset, geometry, table = ctx.saved_tensors
        k = ctx.settings[0]
        needs_offset, needs_feats = ctx.needs_input_grad[1], any(ctx.needs_input_grad[4:])
        grad_offset = grad_table = None
        if len(rois) == 0:
            grad_offset = torch.zeros_like(offset) if needs_offset else None
            grad_table = torch.zeros_like(table) if needs_feats else None
        else:
            s = _sampling(rois, offset, geometry, *ctx.settings)
            channels = grad.shape[1]
            grad = grad.new_empty(len(rois), k, k, channels).copy_(grad.permute(0, 2, 3, 1)).view(-1, channels)
            if needs_feats:  # table row m gathers the bins that sample it: the transposed matrix
                order = torch.argsort(s.col)
                bounds = torch.zeros(len(table) + 1, dtype=torch.long, device=table.device)
                bounds[1:] = torch.bincount(s.col, minlength=len(table)).cumsum(0)
                grad_table = _bag_sum(s.row.index_select(0, order), bounds, s.pool.index_select(0, order), grad)
            if needs_offset:  # per entry: <grad of its bin, its table row>, weighted by the slopes
                with warnings.catch_warnings():  # "sparse CSR support is in beta": sampled_addmm is stable
                    warnings.simplefilter("ignore", UserWarning)
                    pattern = torch.sparse_csr_tensor(s.crow, s.col, s.pool, (len(grad), len(table)),
                                                      check_invariants=False)
                dots = torch.sparse.sampled_addmm(pattern, grad, table.t(), beta=0.0).values()
                grad_x = grad.new_zeros(len(grad)).index_add_(0, s.row, s.slope_x * dots)
                grad_y = grad.new_zeros(len(grad)).index_add_(0, s.row, s.slope_y * dots)
                grad_offset = torch.stack([grad_x, grad_y]).view(2, len(rois), k, k).transpose(0, 1)
        grad_feats = [None] * len(ctx.feat_layout)
        if needs_feats:
            grad_feats = _channel_first_grads(grad_table, ctx.feat_layout)
        return (None, grad_offset, None, None, *grad_feats)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _full_offset(offset: Tensor, num_rois: int, out_size: int) -> Tensor:
    """(N, 2, k, k) offsets; the DeltaR form (N, 2) is broadcast over the bins (its gradient sums over them)."""
    if offset.dim() == 2:
        offset = offset[:, :, None, None].expand(-1, -1, out_size, out_size)
    if offset.shape != (num_rois, 2, out_size, out_size):
        raise ValueError(f"offset must be (N, 2, {out_size}, {out_size}) or (N, 2) with N = {num_rois} RoIs, "
                         f"got {tuple(offset.shape)}")
    return offset


def deform_roi_pool_levels(feats: Sequence[Tensor], rois: Tensor, offset: Tensor, levels: Tensor,
                           spatial_scales: Sequence[float], out_size: int = 7, sample_per_part: int = 4,
                           trans_std: float = 0.1) -> Tensor:
    """Deformable RoI pooling of each RoI from its own feature level, all levels in one pass.

    Args:
        feats: L maps (B, C, H_l, W_l).
        rois: (N, 5) ``(batch_idx, x1, y1, x2, y2)`` in image pixels (never differentiated).
        offset: (N, 2, k, k) per-bin offsets (x then y, bins row-major), or (N, 2) one offset per RoI.
        levels: (N,) the level index of each RoI.
        spatial_scales: L scales, 1 / stride.
    Returns:
        (N, C, k, k) pooled features in the dtype of ``feats``. Every level is part of the graph, so maps that
        received no RoI still get a (zero) gradient.
    """
    if len(feats) != len(spatial_scales):
        raise ValueError(f"{len(feats)} feature maps but {len(spatial_scales)} spatial scales")
    if len({(f.shape[0], f.shape[1]) for f in feats}) != 1:
        raise ValueError(f"feature maps differ in batch size or channels: {[tuple(f.shape) for f in feats]}")
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise ValueError(f"rois must be (N, 5) (batch_idx, x1, y1, x2, y2), got {tuple(rois.shape)}")
    batch = rois[:, 0].long()
    if len(rois) and not 0 <= int(batch.min()) <= int(batch.max()) < feats[0].shape[0]:
        raise ValueError(f"RoI batch indices must lie in [0, {feats[0].shape[0]}), got {batch.unique().tolist()}")
    offset = _full_offset(offset, len(rois), out_size)
    out_dtype = feats[0].dtype
    dtype = _compute_dtype(out_dtype)
    with torch.autocast(device_type=feats[0].device.type, enabled=False):
        level_rows = [f.shape[0] * f.shape[2] * f.shape[3] for f in feats]
        level_starts = [sum(level_rows[:i]) for i in range(len(feats))]
        geometry = torch.tensor([[start, f.shape[2], f.shape[3], scale]
                                 for start, f, scale in zip(level_starts, feats, spatial_scales)],
                                dtype=torch.float64, device=rois.device)[levels.long()]
        geometry[:, 0] += batch * geometry[:, 1] * geometry[:, 2]  # the RoI's image within its level
        out = _DeformRoIPoolFunction.apply(rois.detach().to(dtype), offset.to(dtype), geometry,
                                           (out_size, sample_per_part, trans_std), *feats)
    return out.to(out_dtype)


def deform_roi_pool(feat: Tensor, rois: Tensor, offset: Tensor, spatial_scale: float, out_size: int = 7,
                    sample_per_part: int = 4, trans_std: float = 0.1) -> Tensor:
    """DCN v1 deformable RoI pooling on one feature map.

    Args:
        feat: (B, C, H, W) feature map with ``spatial_scale`` = 1 / stride.
        rois: (N, 5) ``(batch_idx, x1, y1, x2, y2)`` in image pixels (never differentiated).
        offset: (N, 2, k, k) per-bin offsets (DeltaC), or (N, 2) one offset per RoI (DeltaR).
    Returns:
        (N, C, k, k), bin (i, j) the mean of its S x S samples shifted by ``trans_std * offset * (Rw, Rh)``.
    """
    levels = torch.zeros(len(rois), dtype=torch.long, device=rois.device)
    return deform_roi_pool_levels([feat], rois, offset, levels, [spatial_scale], out_size, sample_per_part,
                                  trans_std)


class DeformRoIPool(nn.Module):
    """Module form of :func:`deform_roi_pool` for one feature map."""

    def __init__(self, spatial_scale: float, out_size: int = 7, sample_per_part: int = 4, trans_std: float = 0.1):
        super().__init__()
        self.spatial_scale = spatial_scale
        self.out_size = out_size
        self.sample_per_part = sample_per_part
        self.trans_std = trans_std

    def forward(self, feat: Tensor, rois: Tensor, offset: Tensor) -> Tensor:
        return deform_roi_pool(feat, rois, offset, self.spatial_scale, self.out_size, self.sample_per_part,
                               self.trans_std)

    def extra_repr(self) -> str:
        return (f"spatial_scale={self.spatial_scale}, out_size={self.out_size}, "
                f"sample_per_part={self.sample_per_part}, trans_std={self.trans_std}")
