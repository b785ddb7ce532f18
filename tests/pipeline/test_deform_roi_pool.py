"""DCN v1 deformable RoI pooling against a scalar loop written from the specification's formulas."""
import math

import pytest
import torch

from pipeline.ops import DeformRoIPool, deform_roi_pool, deform_roi_pool_levels

K, S = 7, 4


def _round(v):
    return math.copysign(math.floor(abs(v) + 0.5), v) if v != 0 else 0.0


def reference(feat, rois, offset, scale, grad_out, k=K, samples=S, gamma=0.1):
    """Forward, gradient to the features and gradient to the offsets, one sample at a time (float64)."""
    B, C, H, W = feat.shape
    F, G = feat.tolist(), grad_out.tolist()
    out = [[[[0.0] * k for _ in range(k)] for _ in range(C)] for _ in rois]
    g_feat = [[[[0.0] * W for _ in range(H)] for _ in range(C)] for _ in range(B)]
    g_off = [[[[0.0] * k for _ in range(k)] for _ in range(2)] for _ in rois]
    for n, (b, x1, y1, x2, y2) in enumerate(rois.tolist()):
        b = int(b)
        x_s = _round(x1) * scale - 0.5
        y_s = _round(y1) * scale - 0.5
        x_e = (_round(x2) + 1) * scale - 0.5
        y_e = (_round(y2) + 1) * scale - 0.5
        Rw, Rh = max(x_e - x_s, 0.1), max(y_e - y_s, 0.1)
        bw, bh = Rw / k, Rh / k
        for i in range(k):
            for j in range(k):
                tx = gamma * offset[n, 0, i, j].item()
                ty = gamma * offset[n, 1, i, j].item()
                w0 = j * bw + x_s + tx * Rw
                h0 = i * bh + y_s + ty * Rh
                kept = []
                for a in range(samples):
                    for bb in range(samples):
                        w = w0 + bb * bw / samples
                        h = h0 + a * bh / samples
                        if w < -0.5 or w > W - 0.5 or h < -0.5 or h > H - 0.5:
                            continue
                        kept.append((min(max(w, 0), W - 1), min(max(h, 0), H - 1)))
                for w, h in kept:
                    xl, xh, yl, yh = math.floor(w), math.ceil(w), math.floor(h), math.ceil(h)
                    dx, dy = w - xl, h - yl
                    for c in range(C):
                        f = F[b][c]
                        value = ((1 - dx) * (1 - dy) * f[yl][xl] + dx * (1 - dy) * f[yl][xh]
                                 + (1 - dx) * dy * f[yh][xl] + dx * dy * f[yh][xh])
                        out[n][c][i][j] += value / len(kept)
                        g = G[n][c][i][j] / len(kept)
                        g_feat[b][c][yl][xl] += (1 - dx) * (1 - dy) * g
                        g_feat[b][c][yl][xh] += dx * (1 - dy) * g
                        g_feat[b][c][yh][xl] += (1 - dx) * dy * g
                        g_feat[b][c][yh][xh] += dx * dy * g
                        d_w = (1 - dy) * (f[yl][xh] - f[yl][xl]) + dy * (f[yh][xh] - f[yh][xl])
                        d_h = (1 - dx) * (f[yh][xl] - f[yl][xl]) + dx * (f[yh][xh] - f[yl][xh])
                        g_off[n][0][i][j] += g * d_w * gamma * Rw
                        g_off[n][1][i][j] += g * d_h * gamma * Rh
    as_tensor = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    return as_tensor(out), as_tensor(g_feat), as_tensor(g_off)


def random_case(seed, num_rois=10, batch=2, channels=3, height=9, width=11, scale=0.5, offset_std=1.5):
    """RoIs partly or wholly outside the map, a zero-size and a reversed RoI, several images."""
    g = torch.Generator().manual_seed(seed)
    feat = torch.randn(batch, channels, height, width, generator=g, dtype=torch.float64)
    img_w, img_h = width / scale, height / scale
    xy = torch.rand(num_rois, 2, generator=g, dtype=torch.float64) * torch.tensor([img_w * 1.2, img_h * 1.2]) - 3
    wh = torch.rand(num_rois, 2, generator=g, dtype=torch.float64) * torch.tensor([img_w, img_h]) * 0.8
    rois = torch.cat([torch.randint(0, batch, (num_rois, 1), generator=g).double(), xy, xy + wh], 1)
    rois[0, 3:] = rois[0, 1:3]  # zero-size
    rois[1, 3:] = rois[1, 1:3] - 4  # reversed corners
    rois[2, 1:] = torch.tensor([-40.0, -40.0, -10.0, -12.0])  # entirely outside: every bin empty
    offset = torch.randn(num_rois, 2, K, K, generator=g, dtype=torch.float64) * offset_std
    grad_out = torch.randn(num_rois, channels, K, K, generator=g, dtype=torch.float64)
    return feat, rois, offset, scale, grad_out


def integer_case():
    """Samples on exact pixel centres (zero offsets, x_s and y_s integers, bin step 1/4 pixel) and clamped ones."""
    g = torch.Generator().manual_seed(3)
    feat = torch.randn(1, 2, 10, 12, generator=g, dtype=torch.float64)
    rois = torch.tensor([[0, 3.0, 5.0, 16.0, 18.0],  # stride 2: x_s = 1, y_s = 2, Rw = Rh = 7
                         [0, 2.6, 4.6, 15.5, 17.5],  # the same after rounding half away from zero
                         [0, 9.0, 1.0, 40.0, 30.0]],  # overhangs the right edge: clamped samples
                        dtype=torch.float64)
    offset = torch.zeros(3, 2, K, K, dtype=torch.float64)
    offset[2] = torch.randn(2, K, K, generator=g, dtype=torch.float64)
    grad_out = torch.randn(3, 2, K, K, generator=g, dtype=torch.float64)
    return feat, rois, offset, 0.5, grad_out


def run_op(feat, rois, offset, scale, grad_out):
    feat = feat.detach().clone().requires_grad_()
    offset = offset.detach().clone().requires_grad_()
    out = deform_roi_pool(feat, rois, offset, scale, K, S, 0.1)
    out.backward(grad_out.to(out.dtype))
    return out.detach(), feat.grad, offset.grad


CASES = [random_case(0), random_case(1, batch=3, height=6, width=7, scale=0.25), integer_case()]


@pytest.mark.parametrize("case", CASES, ids=["random", "random-stride4", "integers"])
def test_matches_scalar_loop_float64(case):
    expected = reference(*case)
    for got, want in zip(run_op(*case), expected):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=["random", "random-stride4", "integers"])
def test_matches_scalar_loop_float32(case):
    feat, rois, offset, scale, grad_out = case
    expected = reference(*case)
    got = run_op(feat.float(), rois.float(), offset.float(), scale, grad_out.float())
    for g, want in zip(got, expected):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g.double(), want, rtol=1e-5, atol=1e-5)


def test_integer_samples_have_zero_position_derivative():
    feat, rois, offset, scale, grad_out = integer_case()
    # With one sample per bin, every sample of RoI 0 sits on a pixel centre: the derivative is zero there
    # (a one-sided difference, as grid_sample gives, would not be); with S = 4 only some samples do.
    first = offset[:1].clone().requires_grad_()
    (grad,) = torch.autograd.grad(deform_roi_pool(feat, rois[:1], first, scale, K, 1, 0.1).sum(), first)
    assert torch.count_nonzero(grad) == 0
    _, _, g_off = run_op(feat, rois, offset, scale, grad_out)
    assert torch.count_nonzero(g_off[0]) > 0


def test_delta_r_form_broadcasts_and_sums_gradient():
    feat, rois, _, scale, grad_out = random_case(2)
    g = torch.Generator().manual_seed(5)
    per_roi = torch.randn(len(rois), 2, generator=g, dtype=torch.float64)
    expanded = per_roi[:, :, None, None].expand(-1, -1, K, K).contiguous()
    out, g_feat, g_off = run_op(feat, rois, per_roi, scale, grad_out)
    ref_out, ref_feat, ref_off = reference(feat, rois, expanded, scale, grad_out)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-12)
    torch.testing.assert_close(g_feat, ref_feat, rtol=0, atol=1e-12)
    assert g_off.shape == (len(rois), 2)
    torch.testing.assert_close(g_off, ref_off.sum((2, 3)), rtol=0, atol=1e-11)


def test_gradcheck():
    feat, rois, offset, scale, _ = random_case(4, num_rois=5, channels=2, height=7, width=8)
    feat.requires_grad_()
    offset.requires_grad_()
    assert torch.autograd.gradcheck(lambda f, o: deform_roi_pool(f, rois, o, scale, K, S, 0.1), (feat, offset),
                                    eps=1e-7, atol=1e-6, fast_mode=True)


def test_levels_match_single_level_calls_and_touch_every_map():
    g = torch.Generator().manual_seed(6)
    feats = [torch.randn(2, 3, 16 // 2 ** i, 20 // 2 ** i, generator=g, dtype=torch.float64, requires_grad=True)
             for i in range(3)]
    scales = [1 / 4, 1 / 8, 1 / 16]
    rois = torch.tensor([[0, 4.0, 6.0, 30.0, 40.0], [1, 10.0, 3.0, 70.0, 50.0], [1, 0.0, 0.0, 20.0, 20.0]],
                        dtype=torch.float64)
    levels = torch.tensor([1, 0, 1])
    offset = torch.randn(3, 2, K, K, generator=g, dtype=torch.float64)
    out = deform_roi_pool_levels(feats, rois, offset, levels, scales)
    for n, level in enumerate(levels.tolist()):
        single = deform_roi_pool(feats[level], rois[n:n + 1], offset[n:n + 1], scales[level])
        torch.testing.assert_close(out[n:n + 1], single, rtol=0, atol=1e-14)
    out.sum().backward()
    assert feats[2].grad is not None and torch.count_nonzero(feats[2].grad) == 0
    assert torch.count_nonzero(feats[0].grad) > 0 and torch.count_nonzero(feats[1].grad) > 0


def test_reduced_precision_computes_in_float32():
    feat, rois, offset, scale, _ = random_case(7)
    half = feat.to(torch.bfloat16)
    want = deform_roi_pool(half.float(), rois.float(), offset.float(), scale)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = DeformRoIPool(scale)(half, rois.float(), offset.float())
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got, want.to(torch.bfloat16), rtol=0, atol=0)


def test_empty_rois_and_bad_inputs():
    feat = torch.randn(1, 3, 5, 5, requires_grad=True)
    offset = torch.zeros(0, 2, K, K, requires_grad=True)
    out = deform_roi_pool(feat, torch.zeros(0, 5), offset, 1.0)
    assert out.shape == (0, 3, K, K)
    out.sum().backward()
    assert torch.count_nonzero(feat.grad) == 0
    with pytest.raises(ValueError, match=r"offset must be \(N, 2, 7, 7\)"):
        deform_roi_pool(feat, torch.zeros(2, 5), torch.zeros(2, 2, 3, 3), 1.0)
    with pytest.raises(ValueError, match=r"batch indices must lie in \[0, 1\), got \[0, 1\]"):
        deform_roi_pool(feat, torch.tensor([[0, 1.0, 1, 3, 3], [1, 1, 1, 3, 3]]), torch.zeros(2, 2), 1.0)
    with pytest.raises(FloatingPointError, match="NaN or infinity"):
        deform_roi_pool(feat, torch.tensor([[0, 1.0, 1, 3, 3]]), torch.tensor([[float("nan"), 0.0]]), 1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    feat, rois, offset, scale, grad_out = random_case(8)
    cpu = run_op(feat.float(), rois.float(), offset.float(), scale, grad_out.float())
    gpu = run_op(*(t.cuda() if torch.is_tensor(t) else t for t in (feat.float(), rois.float(), offset.float(),
                                                                   scale, grad_out.float())))
    for c, g in zip(cpu, gpu):
        torch.testing.assert_close(g.cpu(), c, rtol=1e-5, atol=1e-5)
