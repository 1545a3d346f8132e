"""Tests for vtonlab.tps: the hand-written TPS against scipy and kornia, exactness, gradients, speed path."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from kornia.geometry import transform as kt
from scipy.interpolate import RBFInterpolator

from vtonlab import tps


def _random_problem(batch=3, k=9, scale=0.2, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    src = torch.rand(batch, k, 2, generator=g, dtype=dtype) * 2 - 1
    dst = src + scale * torch.randn(batch, k, 2, generator=g, dtype=dtype)
    return src, dst, g


# ------------------------------------------------------------------ the interpolant


@pytest.mark.parametrize("reg", [0.0, 0.05])
@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-11), (torch.float32, 5e-5)])
def test_warp_points_matches_scipy_thin_plate_rbf(reg, dtype, atol):
    # scipy's kernel is r^2 log r = U / 2: same interpolant, weights x2, smoothing = reg / 2.
    # Measured differences: ~3e-14 in float64 (round-off of two float64 solvers), ~1e-5 in float32;
    # a float64 input solved or evaluated in float32 anywhere would miss 1e-11 by six orders.
    src, dst, g = _random_problem(k=12, seed=1)
    pts = torch.rand(3, 200, 2, generator=g, dtype=torch.float64) * 2.4 - 1.2
    ours = tps.warp_points(pts.to(dtype), src.to(dtype), dst.to(dtype), reg=reg).double()
    for b in range(3):
        ref = RBFInterpolator(src[b].numpy(), dst[b].numpy(), kernel="thin_plate_spline", degree=1,
                              smoothing=reg / 2)(pts[b].numpy())
        np.testing.assert_allclose(ours[b].numpy(), ref, atol=atol, rtol=0)


def test_interpolation_is_exact_and_smoothing_is_not():
    src, dst, _ = _random_problem(k=16, seed=2)
    assert torch.allclose(tps.warp_points(src, src, dst), dst, atol=1e-10, rtol=0)
    smooth = tps.warp_points(src, src, dst, reg=1.0)
    assert (smooth - dst).abs().max() > 1e-3  # a smoothing spline no longer passes through the points
    # float32 evaluation: radial weights here reach ~13, so cancellation leaves ~1e-5
    f32 = tps.warp_points(src.float(), src.float(), dst.float())
    assert torch.allclose(f32, dst.float(), atol=1e-4, rtol=0)


def test_affine_maps_are_reproduced_with_zero_radial_weights_and_energy():
    src, _, _ = _random_problem(k=10, seed=3)
    a = torch.tensor([[1.2, -0.3], [0.25, 0.8]], dtype=torch.float64)
    t = torch.tensor([0.1, -0.2], dtype=torch.float64)
    dst = src @ a.T + t
    coeffs = tps.solve(src, dst)
    assert coeffs.weights.abs().max() < 1e-10
    assert torch.allclose(coeffs.affine[:, 0], t.expand(3, 2), atol=1e-10)
    assert torch.allclose(coeffs.affine[:, 1:].transpose(1, 2), a.expand(3, 2, 2), atol=1e-10)
    assert tps.bending_energy(coeffs).abs().max() < 1e-12
    pts = torch.rand(3, 50, 2, dtype=torch.float64)
    assert torch.allclose(tps.warp_points(pts, src, dst), pts @ a.T + t, atol=1e-10)


def test_kernel_values_and_system_shape():
    r2 = torch.tensor([0.0, 1.0, 4.0, 0.25])
    expected = torch.tensor([0.0, 0.0, 4 * math.log(4), 0.25 * math.log(0.25)])
    assert torch.allclose(tps.tps_kernel(r2), expected)
    ctrl = tps.control_grid(4)[None]
    lmat = tps.system_matrix(ctrl)
    assert lmat.shape == (1, 19, 19)
    assert torch.allclose(lmat, lmat.transpose(1, 2))  # L is symmetric
    assert torch.all(lmat[0, 16:, 16:] == 0)
    lreg = tps.system_matrix(ctrl, reg=0.5)
    assert torch.allclose(torch.diagonal(lreg[0, :16, :16]), torch.full((16,), 0.5))


def test_bending_energy_is_the_integral_of_squared_second_derivatives():
    # E = 16 pi w^T K w, checked by integrating f_xx^2 + 2 f_xy^2 + f_yy^2 numerically (analytic derivatives).
    src, dst, _ = _random_problem(batch=1, k=6, seed=4)
    coeffs = tps.solve(src, dst)
    w, c = coeffs.weights[0], coeffs.centers[0]
    radius, n = 20.0, 1601
    xs = torch.linspace(-radius, radius, n, dtype=torch.float64)
    h = (xs[1] - xs[0]).item()
    total = 0.0
    for rows in torch.split(xs, 400):
        gx, gy = torch.meshgrid(rows, xs, indexing="ij")
        dx, dy = gx[..., None] - c[:, 0], gy[..., None] - c[:, 1]
        r2 = dx**2 + dy**2 + 1e-300
        fxx = 2 * (torch.log(r2) + 1) + 4 * dx**2 / r2  # second derivatives of U = r^2 log r^2
        fyy = 2 * (torch.log(r2) + 1) + 4 * dy**2 / r2
        fxy = 4 * dx * dy / r2
        for j in range(2):
            total += ((fxx @ w[:, j]) ** 2 + 2 * (fxy @ w[:, j]) ** 2 + (fyy @ w[:, j]) ** 2).sum().item() * h * h
    energy = tps.bending_energy(coeffs).item()
    assert energy > 0
    assert abs(total - energy) / energy < 0.02


def test_bending_energy_scales_quadratically_with_the_non_affine_displacement():
    src, dst, _ = _random_problem(k=9, seed=5)
    e1 = tps.bending_energy(tps.solve(src, src + 0.1 * (dst - src)))
    e2 = tps.bending_energy(tps.solve(src, src + 0.2 * (dst - src)))
    assert torch.allclose(e2, 4 * e1, rtol=1e-8)


# ------------------------------------------------------------------ images and grids


def test_pixel_grid_is_the_align_corners_identity():
    grid = tps.pixel_grid((5, 4))
    assert grid.shape == (5, 4, 2)
    assert torch.equal(grid[0, :, 0], torch.linspace(-1, 1, 4))
    assert torch.equal(grid[:, 0, 1], torch.linspace(-1, 1, 5))
    img = torch.rand(1, 3, 5, 4)
    assert torch.allclose(F.grid_sample(img, grid[None], align_corners=True), img, atol=1e-6)


def test_identity_control_points_leave_an_image_unchanged():
    img = torch.rand(2, 3, 24, 18)
    ctrl = tps.control_grid(5)[None].expand(2, -1, -1)
    assert torch.allclose(tps.warp_image(img, ctrl, ctrl), img, atol=1e-5)
    scattered = torch.rand(2, 7, 2) * 2 - 1
    assert torch.allclose(tps.warp_image(img, scattered, scattered), img, atol=1e-5)
    fixed = tps.FixedGridTPS(5)
    assert torch.equal(fixed.warp(img, torch.zeros(2, 2, 25)), F.grid_sample(
        img, tps.pixel_grid((24, 18))[None].expand(2, -1, -1, -1), align_corners=True))


def test_warp_image_moves_content_from_src_to_dst():
    h, w = 41, 31
    grid = tps.pixel_grid((h, w), dtype=torch.float64)
    ctrl = tps.control_grid(3, 0.8, dtype=torch.float64)[None]
    src = ctrl.clone()
    src[0, 4] = torch.tensor([0.1, -0.15], dtype=torch.float64)  # the centre point samples from here...
    blob_at = src[0, 4]
    img = torch.exp(-((grid - blob_at) ** 2).sum(-1) / (2 * 0.05**2))[None, None]  # a blob at src_4
    out = tps.warp_image(img, src, ctrl)[0, 0]
    wsum = out.sum()
    centroid = torch.stack([(out * grid[..., 0]).sum() / wsum, (out * grid[..., 1]).sum() / wsum])
    # ...so the blob now sits at dst_4 = (0, 0), within a fraction of a pixel
    px = torch.tensor([(w - 1) / 2, (h - 1) / 2], dtype=torch.float64)
    assert ((centroid - ctrl[0, 4]) * px).norm() < 0.3


def test_sampling_grid_maps_dst_to_src_and_shared_path_matches_batched_path():
    src, dst, _ = _random_problem(batch=2, k=9, scale=0.1, seed=6)
    shared_dst = dst[:1]
    g_shared = tps.sampling_grid(src, shared_dst, (12, 10))
    g_batched = tps.sampling_grid(src, shared_dst.expand(2, -1, -1), (12, 10))
    assert torch.allclose(g_shared, g_batched, atol=1e-12)
    assert g_shared.shape == (2, 12, 10, 2)
    # the grid is the TPS dst -> src
    assert torch.allclose(tps.warp_points(shared_dst.expand(2, -1, -1), shared_dst, src), src, atol=1e-10)


def test_fixed_grid_tps_matches_general_solver():
    fixed = tps.FixedGridTPS(grid_size=5, range=0.9)
    assert fixed.control_points.shape == (25, 2)
    assert float(fixed.control_points.abs().max()) == pytest.approx(0.9)
    offsets = 0.1 * torch.randn(3, 2, 25, generator=torch.Generator().manual_seed(7))
    grid = fixed(offsets, (20, 16))
    ref = tps.sampling_grid(fixed.source_points(offsets), fixed.control_points[None], (20, 16))
    assert grid.shape == (3, 20, 16, 2)
    assert torch.allclose(grid, ref, atol=1e-5)
    assert torch.allclose(fixed(offsets.reshape(3, 50), (20, 16)), grid)  # (B, 2K) accepted, x then y
    # the control points themselves sample exactly at c + o (grid 5 x 5 in [-1, 1] lands on pixels of 17 x 17)
    full = tps.FixedGridTPS(5, 1.0)
    g17 = full(offsets.double(), (17, 17))
    at_ctrl = g17[:, ::4, ::4].reshape(3, 25, 2)
    assert torch.allclose(at_ctrl, full.source_points(offsets.double()), atol=1e-10)


def test_fixed_grid_tps_cache_follows_dtype_and_size():
    fixed = tps.FixedGridTPS()
    m1 = fixed.interpolation_matrix((8, 6))
    assert m1.shape == (48, 25) and m1.dtype == torch.float32
    assert fixed.interpolation_matrix((8, 6)) is m1
    assert fixed.interpolation_matrix((8, 6), dtype=torch.float64).dtype == torch.float64
    # rows of M sum to 1: the TPS reproduces constants (its affine part), so a constant offset of every
    # control point moves every pixel by exactly that offset; likewise it reproduces linear maps, so
    # M applied to the control points' own coordinates gives each pixel's coordinates.
    assert torch.allclose(m1.sum(1), torch.ones(48), atol=1e-6, rtol=0)
    m64 = fixed.interpolation_matrix((8, 6), dtype=torch.float64)
    assert torch.allclose(m64.sum(1), torch.ones(48, dtype=torch.float64), atol=1e-12, rtol=0)
    pixels = tps.pixel_grid((8, 6), dtype=torch.float64).reshape(48, 2)
    assert torch.allclose(m64 @ fixed.control_points.double(), pixels, atol=1e-12, rtol=0)


def test_affine_sampling_grid_matches_torch_affine_grid():
    theta = torch.tensor([[[1.1, 0.1, 0.05], [-0.2, 0.9, 0.1]], [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    ours = tps.affine_sampling_grid(theta, (9, 7))
    ref = F.affine_grid(theta, (2, 1, 9, 7), align_corners=True)
    assert torch.allclose(ours, ref, atol=1e-6)
    img = torch.rand(2, 3, 9, 7)
    assert torch.allclose(tps.affine_warp_image(img, theta)[1], img[1], atol=1e-6)


# ------------------------------------------------------------------ gradients


def test_gradcheck_through_solve_and_evaluate():
    g = torch.Generator().manual_seed(8)
    src = (torch.rand(1, 5, 2, generator=g, dtype=torch.float64) * 2 - 1).requires_grad_()
    dst = (src.detach() + 0.1 * torch.randn(1, 5, 2, generator=g, dtype=torch.float64)).requires_grad_()
    pts = (torch.rand(1, 4, 2, generator=g, dtype=torch.float64) * 2 - 1).requires_grad_()
    assert torch.autograd.gradcheck(lambda p, s, d: tps.warp_points(p, s, d, reg=0.01), (pts, src, dst))
    assert torch.autograd.gradcheck(lambda s, d: tps.bending_energy(tps.solve(s, d)), (src, dst))


def test_gradcheck_fixed_grid_and_image_warp():
    g = torch.Generator().manual_seed(9)
    fixed = tps.FixedGridTPS(3)
    offsets = (0.05 * torch.randn(1, 2, 9, generator=g, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda o: fixed(o, (4, 3)), (offsets,))
    img = torch.rand(1, 1, 6, 5, generator=g, dtype=torch.float64).requires_grad_()
    ctrl = tps.control_grid(3, dtype=torch.float64)[None]
    src = (ctrl + 0.07 * torch.randn(1, 9, 2, generator=g, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda im, s: tps.warp_image(im, s, ctrl), (img, src))


# ------------------------------------------------------------------ kornia cross-check


def test_same_coefficients_through_kornia_give_the_same_image():
    # kornia's kernel is 0.5 r^2 log r^2 (= U / 2), so our weights enter it doubled; centres = dst.
    fixed = tps.FixedGridTPS()
    g = torch.Generator().manual_seed(10)
    ctrl = fixed.control_points[None].expand(4, -1, -1).double()
    offsets = 0.15 * (torch.rand(4, 2, 25, generator=g, dtype=torch.float64) * 2 - 1)
    src = fixed.source_points(offsets)
    img = torch.rand(4, 3, 32, 24, generator=g, dtype=torch.float64)
    coeffs = tps.solve(ctrl, src)
    ref = kt.warp_image_tps(img, coeffs.centers, 2 * coeffs.weights, coeffs.affine, align_corners=True)
    assert torch.allclose(tps.warp_image(img, src, ctrl), ref, atol=1e-10)
    assert torch.allclose(fixed.warp(img, offsets), ref, atol=1e-10)
    # float32 (the training dtype): the same up to round-off
    ref32 = ref.float()
    assert torch.allclose(tps.warp_image(img.float(), src.float(), ctrl.float()), ref32, atol=1e-4)
    assert torch.allclose(fixed.warp(img.float(), offsets.float()), ref32, atol=1e-4)


def test_kornia_solver_agrees_for_affine_maps_and_small_offsets():
    # kornia's get_tps_transform builds its kernel matrix from src-to-dst distances (not src-to-src),
    # and warp_image_tps puts the kernel centres at the other point set: its map also interpolates the
    # control points, is exact for affine maps, and otherwise differs from the TPS to second order.
    fixed = tps.FixedGridTPS()
    ctrl = fixed.control_points[None].expand(4, -1, -1).double()
    pix = tps.pixel_grid((32, 24), dtype=torch.float64).reshape(1, -1, 2).expand(4, -1, -1)

    def kornia_grid(src):
        kw, aw = kt.get_tps_transform(ctrl, src)  # called reversed: the sampling map dst -> src
        return kt.warp_points_tps(pix, src, kw, aw)

    a = torch.tensor([[1.1, 0.2], [-0.1, 0.9]], dtype=torch.float64)
    src_affine = ctrl @ a.T + torch.tensor([0.05, -0.1], dtype=torch.float64)
    ours = tps.sampling_grid(src_affine, ctrl, (32, 24)).reshape(4, -1, 2)
    assert torch.allclose(kornia_grid(src_affine), ours, atol=1e-10)

    g = torch.Generator().manual_seed(11)
    for magnitude, tol in ((0.02, 3e-3), (0.05, 2e-2)):
        offsets = magnitude * (torch.rand(4, 2, 25, generator=g, dtype=torch.float64) * 2 - 1)
        src = fixed.source_points(offsets).double()
        ours = tps.sampling_grid(src, ctrl, (32, 24)).reshape(4, -1, 2)
        theirs = kornia_grid(src)
        assert (theirs - ours).abs().max() < tol
        # both interpolate the control points exactly
        kw, aw = kt.get_tps_transform(ctrl, src)
        assert torch.allclose(kt.warp_points_tps(ctrl, src, kw, aw), src, atol=1e-10)


def test_benchmark_times_each_method_by_its_median(monkeypatch):
    # A fake clock: each warp advances it by a known duration (the first call of each, the untimed
    # warm-up, by a huge one; one timed kornia call is an outlier that a median ignores, a mean would not).
    now = [0.0]
    durations = {"kornia": iter([100.0, 6.0, 6.0, 60.0]), "warp_image": iter([100.0, 0.5, 0.5, 0.5]),
                 "fixed": iter([100.0, 0.25, 0.25, 0.25])}

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            now[0] += next(durations[name])
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(tps.time, "perf_counter", lambda: now[0])
    monkeypatch.setattr(kt, "warp_image_tps", timed("kornia", kt.warp_image_tps))
    monkeypatch.setattr(tps, "warp_image", timed("warp_image", tps.warp_image))
    monkeypatch.setattr(tps.FixedGridTPS, "warp", timed("fixed", tps.FixedGridTPS.warp))
    result = tps.benchmark(batch=2, size=(16, 12), repeats=3)
    assert (result.kornia_s, result.vtonlab_s, result.fixed_s) == (6.0, 0.5, 0.25)
    assert (result.speedup, result.speedup_fixed) == (12.0, 24.0)
    d = result.to_dict()
    assert (d["batch"], d["size"], d["repeats"], d["speedup"], d["speedup_fixed"]) == (2, [16, 12], 3, 12.0, 24.0)
    assert "12.0x faster" in str(result) and "24.0x faster" in str(result)
    assert all(next(it, None) is None for it in durations.values())  # one warm-up + 3 timed calls each


# ------------------------------------------------------------------ errors


def test_bad_inputs_raise_clear_errors():
    src = torch.rand(1, 5, 2)
    with pytest.raises(ValueError, match="same number of points"):
        tps.solve(src, torch.rand(1, 6, 2))
    with pytest.raises(ValueError, match=r"dst must have shape \(B, N, 2\)"):
        tps.solve(src, torch.rand(1, 5, 3))
    with pytest.raises(ValueError, match="batch sizes"):
        tps.solve(torch.rand(2, 5, 2), torch.rand(3, 5, 2))
    with pytest.raises(ValueError, match="reg must be >= 0"):
        tps.solve(src, src, reg=-1.0)
    coincident = torch.tensor([[[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    with pytest.raises(ValueError, match="singular"):
        tps.solve(coincident, coincident)
    with pytest.raises(ValueError, match="offsets must have shape"):
        tps.FixedGridTPS(5)(torch.zeros(1, 2, 16), (8, 8))
    with pytest.raises(ValueError, match="image must be a"):
        tps.warp_image(torch.rand(3, 8, 8), src, src)
    with pytest.raises(ValueError, match="size must be"):
        tps.pixel_grid((1, 5))
    with pytest.raises(ValueError, match="theta must have shape"):
        tps.affine_sampling_grid(torch.rand(1, 3, 3), (4, 4))
    with pytest.raises(ValueError, match="range must be"):
        tps.control_grid(5, 1.5)


# ------------------------------------------------------------------ the widget's render function (vtonlab.viz.tps)


def test_demo_garment():
    from vtonlab.viz.tps import demo_garment

    g = demo_garment((32, 24))
    assert g.shape == (3, 32, 24) and g.min() >= -1 and g.max() <= 1
    assert torch.allclose(g[:, 0, 0], torch.ones(3))  # white background
    with pytest.raises(ValueError, match="at least"):
        demo_garment((4, 4))


@pytest.mark.parametrize(
    "point, dx, dy",
    [(0, 0.0, 0.0), (12, 0.3, -0.2), (24, 1.0, 1.0), (0, -1.0, -1.0), (17, 0.5, 0.0), (12, -1.0, 1.0)],
)
def test_render_tps_warp_extreme_sliders(point, dx, dy):
    import matplotlib

    matplotlib.use("Agg")
    from vtonlab.viz.tps import demo_garment, render_tps_warp

    fig = render_tps_warp(demo_garment((32, 24)), point, dx, dy)
    assert len(fig.axes) == 2
    title = fig._suptitle.get_text()
    assert f"point {point}" in title and "bending energy" in title
    if (point, dx, dy) == (17, 0.5, 0.0):  # moved exactly onto point 18: the exact system is singular
        assert "smoothing" in title
    if dx == dy == 0:
        assert "energy 0" in title


def test_render_tps_warp_rejects_bad_arguments():
    from vtonlab.viz.tps import render_tps_warp

    with pytest.raises(IndexError, match=r"point must be in \[0, 24\]"):
        render_tps_warp(None, 25)
    with pytest.raises(ValueError, match="finite"):
        render_tps_warp(None, 0, float("nan"))
    with pytest.raises(ValueError, match="garment must be"):
        render_tps_warp(torch.zeros(3, 8), 0)
