"""Thin-plate splines (TPS): batched, differentiable, written from the math.

A thin-plate spline (Bookstein, "Principal Warps", TPAMI 1989) is the smoothest map
:math:`f: \\mathbb{R}^2 \\to \\mathbb{R}^2` that sends K control points ``src_k`` to ``dst_k``:

.. math::
    f(p) = a_0 + a_1 x + a_2 y + \\sum_{k=1}^{K} w_k\\, U(\\lVert p - \\mathrm{src}_k \\rVert),
    \\qquad U(r) = r^2 \\log r^2,\\; U(0) = 0.

The coefficients solve the linear system

.. math::
    \\begin{bmatrix} K + \\lambda I & P \\\\ P^\\top & 0 \\end{bmatrix}
    \\begin{bmatrix} w \\\\ a \\end{bmatrix} = \\begin{bmatrix} \\mathrm{dst} \\\\ 0 \\end{bmatrix},
    \\qquad K_{ij} = U(\\lVert \\mathrm{src}_i - \\mathrm{src}_j \\rVert),\\; P_i = [1, x_i, y_i],

with :math:`\\lambda = 0` for exact interpolation (``reg > 0`` gives a smoothing spline). CP-VTON's
geometric matching module (Wang et al., ECCV 2018, Sec. 3.1) regresses the TPS parameters from a
feature correlation; :class:`FixedGridTPS` is the fast path it needs, with :math:`L^{-1}` of the fixed
5x5 control grid computed once.

Conventions (see ``docs/architecture.md``): points are normalised ``(x, y)`` in [-1, 1] with
``align_corners=True``; x is the column (width) axis, y the row axis. :func:`warp_image` moves the
content at ``src`` to ``dst``, so its sampling grid is the TPS from ``dst`` to ``src`` evaluated on the
output pixel grid.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "TPSCoefficients",
    "tps_kernel",
    "pairwise_sq_dist",
    "system_matrix",
    "solve",
    "evaluate",
    "warp_points",
    "pixel_grid",
    "sampling_grid",
    "warp_image",
    "bending_energy",
    "control_grid",
    "FixedGridTPS",
    "affine_sampling_grid",
    "affine_warp_image",
    "BenchmarkResult",
    "benchmark",
]


@dataclass
class TPSCoefficients:
    """Coefficients of a batch of TPS maps ``f(p) = a^T [1, x, y] + sum_k w_k U(|p - c_k|)``.

    Attributes:
        weights: ``(B, K, 2)`` radial weights ``w`` (column 0 for f_x, column 1 for f_y).
        affine: ``(B, 3, 2)`` affine part ``a`` (rows: constant, x, y).
        centers: ``(B, K, 2)`` the kernel centres ``c`` (the ``src`` points of :func:`solve`).
    """

    weights: Tensor
    affine: Tensor
    centers: Tensor


def _check_points(name: str, points: Tensor, batch: int | None = None) -> None:
    if not isinstance(points, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, N, 2), got {type(points).__name__}")
    if points.ndim != 3 or points.shape[-1] != 2:
        raise ValueError(f"{name} must have shape (B, N, 2) with normalised (x, y), got {tuple(points.shape)}")
    if batch is not None and points.shape[0] not in (1, batch):
        raise ValueError(f"{name} has batch size {points.shape[0]}, expected 1 or {batch}")
    if not torch.is_floating_point(points):
        raise TypeError(f"{name} must be a floating-point tensor, got {points.dtype}")


def tps_kernel(r2: Tensor) -> Tensor:
    """The TPS radial basis function written in the squared distance: ``U = r^2 log r^2``, ``U(0) = 0``.

    Bookstein (1989), Eq. of the fundamental solution of the biharmonic equation. Working with
    ``r^2`` avoids the square root (and its infinite gradient at 0). Shape-preserving.
    """
    positive = r2 > 0
    safe = torch.where(positive, r2, torch.ones_like(r2))
    return torch.where(positive, r2 * torch.log(safe), torch.zeros_like(r2))


def pairwise_sq_dist(a: Tensor, b: Tensor) -> Tensor:
    """Squared Euclidean distances ``|a_i - b_j|^2``: a ``(B, N, 2)``, b ``(B, K, 2)`` -> ``(B, N, K)``.

    Written as ``(dx)^2 + (dy)^2`` on broadcast differences of each coordinate (exact, unlike the
    ``|a|^2 + |b|^2 - 2ab`` expansion, and it never materialises a ``(B, N, K, 2)`` tensor).
    """
    dx = a[..., :, None, 0] - b[..., None, :, 0]
    dy = a[..., :, None, 1] - b[..., None, :, 1]
    return dx * dx + dy * dy


def _poly(points: Tensor) -> Tensor:
    """``P = [1, x, y]``: ``(B, N, 2)`` -> ``(B, N, 3)``."""
    return torch.cat([torch.ones_like(points[..., :1]), points], dim=-1)


def system_matrix(ctrl: Tensor, reg: float = 0.0) -> Tensor:
    """The TPS system ``L = [[K + reg I, P], [P^T, 0]]`` for control points ``ctrl`` ``(B, K, 2)``.

    Bookstein (1989), the matrix ``L`` of the interpolation equations. Returns ``(B, K+3, K+3)``.
    """
    _check_points("ctrl", ctrl)
    batch, k, _ = ctrl.shape
    kmat = tps_kernel(pairwise_sq_dist(ctrl, ctrl))
    if reg:
        kmat = kmat + reg * torch.eye(k, dtype=ctrl.dtype, device=ctrl.device)
    p = _poly(ctrl)
    zeros = ctrl.new_zeros(batch, 3, 3)
    top = torch.cat([kmat, p], dim=2)
    bottom = torch.cat([p.transpose(1, 2), zeros], dim=2)
    return torch.cat([top, bottom], dim=1)


def _solve_dtype(dtype: torch.dtype) -> torch.dtype:
    # The system is solved in float64 (float32 loses ~4 digits on a 5x5 grid); autograd flows through the cast.
    return torch.float64 if dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64) else dtype


def solve(src: Tensor, dst: Tensor, reg: float = 0.0) -> TPSCoefficients:
    """Solve for the TPS ``f`` with ``f(src_k) = dst_k`` (exactly when ``reg == 0``).

    Bookstein (1989): ``L [w; a] = [dst; 0]`` with ``L`` from :func:`system_matrix`. The side
    conditions ``P^T w = 0`` make the bending energy finite and the solution unique.

    Args:
        src: ``(B, K, 2)`` control points in the domain (they become the kernel centres).
        dst: ``(B, K, 2)`` or ``(1, K, 2)`` their images.
        reg: ``lambda >= 0`` added to the diagonal of ``K`` (smoothing spline; 0 = interpolation).

    Returns:
        :class:`TPSCoefficients` with weights ``(B, K, 2)`` and affine ``(B, 3, 2)``.
    """
    _check_points("src", src)
    _check_points("dst", dst)
    if reg < 0:
        raise ValueError(f"reg must be >= 0, got {reg}")
    if src.shape[1] != dst.shape[1]:
        raise ValueError(f"src and dst must have the same number of points, got {src.shape[1]} and {dst.shape[1]}")
    if src.shape[1] < 3:
        raise ValueError(f"a TPS needs at least 3 non-collinear control points, got {src.shape[1]}")
    batch = max(src.shape[0], dst.shape[0])
    if src.shape[0] not in (1, batch) or dst.shape[0] not in (1, batch):
        raise ValueError(f"src and dst batch sizes must match or be 1, got {src.shape[0]} and {dst.shape[0]}")
    src = src.expand(batch, -1, -1)
    dst = dst.expand(batch, -1, -1)
    work = _solve_dtype(src.dtype)
    lmat = system_matrix(src.to(work), reg)
    rhs = torch.cat([dst.to(work), dst.new_zeros(batch, 3, 2, dtype=work)], dim=1)
    try:
        coef = torch.linalg.solve(lmat, rhs).to(src.dtype)
    except torch.linalg.LinAlgError as err:  # coincident or collinear control points
        raise ValueError(
            "the TPS system is singular: src control points coincide or are all collinear "
            "(use reg > 0 for a smoothing spline)"
        ) from err
    k = src.shape[1]
    return TPSCoefficients(weights=coef[:, :k], affine=coef[:, k:], centers=src)


def evaluate(points: Tensor, coeffs: TPSCoefficients) -> Tensor:
    """Evaluate the TPS at ``points`` ``(B, N, 2)`` (or ``(1, N, 2)``, shared) -> ``(B, N, 2)``.

    ``f(p) = a_0 + a_1 x + a_2 y + sum_k w_k U(|p - c_k|)`` (Bookstein 1989), as two matmuls.
    """
    _check_points("points", points)
    batch = coeffs.weights.shape[0]
    if points.shape[0] not in (1, batch):
        raise ValueError(f"points has batch size {points.shape[0]}, expected 1 or {batch}")
    basis = tps_kernel(pairwise_sq_dist(points, coeffs.centers))  # (B, N, K)
    return basis @ coeffs.weights + _poly(points) @ coeffs.affine


def warp_points(points: Tensor, src: Tensor, dst: Tensor, reg: float = 0.0) -> Tensor:
    """Map ``points`` ``(B, N, 2)`` through the TPS with ``f(src_k) = dst_k`` -> ``(B, N, 2)``."""
    return evaluate(points, solve(src, dst, reg))


def pixel_grid(size: tuple[int, int], *, device=None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Normalised pixel centres of an ``(H, W)`` image with ``align_corners=True`` -> ``(H, W, 2)``.

    ``[..., 0]`` is x = ``linspace(-1, 1, W)`` (columns), ``[..., 1]`` is y = ``linspace(-1, 1, H)`` (rows):
    the identity grid of ``F.grid_sample(..., align_corners=True)``.
    """
    h, w = _check_size(size)
    ys = torch.linspace(-1.0, 1.0, h, device=device, dtype=dtype)
    xs = torch.linspace(-1.0, 1.0, w, device=device, dtype=dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1)


def _grid_dtype(*tensors: Tensor) -> torch.dtype:
    """The dtype sampling grids are built in: float64 when an input is float64, else float32.

    Never half precision: in bfloat16 (8 significant bits) the identity grid of a 256x192 image is off
    by up to ~0.4 px, so grids are built in float32 even under ``torch.autocast`` (see :func:`_full_precision`).
    """
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _full_precision(device: torch.device):
    """Autocast switched off (for the matrix products that build a grid)."""
    return torch.autocast(device_type=device.type, enabled=False)


def _check_size(size) -> tuple[int, int]:
    try:
        h, w = (int(s) for s in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (H, W), got {size!r}") from None
    if h < 2 or w < 2:
        raise ValueError(f"size must be at least (2, 2) for an align_corners=True grid, got {(h, w)}")
    return h, w


def sampling_grid(src: Tensor, dst: Tensor, size: tuple[int, int], reg: float = 0.0) -> Tensor:
    """The ``grid_sample`` grid that moves the content at ``src`` to ``dst``: ``(B, H, W, 2)``.

    Backward mapping: output pixel ``p`` samples the input at ``g(p)`` where ``g`` is the TPS with
    ``g(dst_k) = src_k``. When ``dst`` is shared by the batch (``(1, K, 2)``), the kernel matrix of the
    output pixels is computed once (the CP-VTON case: fixed grid on the output side).

    The grid is float32 for half-precision inputs (float64 for float64 ones), autocast or not.
    """
    _check_points("src", src)
    _check_points("dst", dst)
    h, w = _check_size(size)
    dtype = _grid_dtype(src, dst)
    with _full_precision(src.device):
        return _sampling_grid(src.to(dtype), dst.to(dtype), h, w, reg)


def _sampling_grid(src: Tensor, dst: Tensor, h: int, w: int, reg: float) -> Tensor:
    coeffs = solve(dst, src, reg)  # kernel centres = dst
    pts = pixel_grid((h, w), device=src.device, dtype=src.dtype).reshape(1, h * w, 2)
    batch = coeffs.weights.shape[0]
    if dst.shape[0] == 1:
        # One (HW, K+3) basis for every sample: a single matmul against the stacked coefficients.
        basis = torch.cat([tps_kernel(pairwise_sq_dist(pts, dst.to(pts.dtype))), _poly(pts)], dim=-1)[0]
        coef = torch.cat([coeffs.weights, coeffs.affine], dim=1)  # (B, K+3, 2)
        m = coef.shape[1]
        grid = (basis @ coef.permute(1, 0, 2).reshape(m, batch * 2)).reshape(h * w, batch, 2)
        grid = grid.transpose(0, 1).contiguous()  # grid_sample is about 2x faster on a contiguous grid
    else:
        grid = evaluate(pts, coeffs)
    return grid.reshape(batch, h, w, 2)


def _check_image(image: Tensor) -> None:
    if not isinstance(image, Tensor) or image.ndim != 4:
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"image must be a (B, C, H, W) tensor, got {shape}")


def warp_image(
    image: Tensor,
    src: Tensor,
    dst: Tensor,
    reg: float = 0.0,
    *,
    size: tuple[int, int] | None = None,
    padding_mode: str = "zeros",
    mode: str = "bilinear",
) -> Tensor:
    """Warp ``image`` ``(B, C, H, W)`` so that the content at ``src`` lands on ``dst`` (``align_corners=True``).

    Args:
        image: ``(B, C, H, W)`` (or ``(1, C, H, W)`` broadcast against the control points).
        src, dst: ``(B, K, 2)`` normalised (x, y); ``dst`` may be ``(1, K, 2)`` (shared, faster).
        size: output ``(H, W)``; defaults to the input size.
    Returns:
        ``(B, C, H_out, W_out)``.
    """
    _check_image(image)
    size = image.shape[-2:] if size is None else size
    dtype = _grid_dtype(image, src, dst)
    grid = sampling_grid(src.to(dtype), dst.to(dtype), size, reg)
    if image.shape[0] == 1 and grid.shape[0] > 1:
        image = image.expand(grid.shape[0], -1, -1, -1)
    elif grid.shape[0] == 1 and image.shape[0] > 1:
        grid = grid.expand(image.shape[0], -1, -1, -1)
    elif grid.shape[0] != image.shape[0]:
        raise ValueError(f"image batch {image.shape[0]} does not match control-point batch {grid.shape[0]}")
    return _grid_sample(image, grid, mode, padding_mode)


def _grid_sample(image: Tensor, grid: Tensor, mode: str, padding_mode: str) -> Tensor:
    """``grid_sample`` in the grid's precision; the result has the image's dtype."""
    out = F.grid_sample(image.to(grid.dtype), grid, mode=mode, padding_mode=padding_mode, align_corners=True)
    return out.to(image.dtype)


def bending_energy(coeffs: TPSCoefficients) -> Tensor:
    """Bending energy ``integral of f_xx^2 + 2 f_xy^2 + f_yy^2`` over the plane, summed over x and y -> ``(B,)``.

    Bookstein (1989): the energy is proportional to ``w^T K w``. With ``U = r^2 log r^2`` (so that
    ``Delta^2 U = 16 pi delta``) the constant is ``16 pi``: ``E = 16 pi sum_c w_c^T K w_c``. Affine maps
    have zero energy. ``K`` is built without the smoothing term.
    """
    kmat = tps_kernel(pairwise_sq_dist(coeffs.centers, coeffs.centers)).to(coeffs.weights.dtype)
    return 16.0 * math.pi * (coeffs.weights * (kmat @ coeffs.weights)).sum(dim=(1, 2))


def control_grid(grid_size: int = 5, range: float = 1.0, *, device=None, dtype: torch.dtype = torch.float32) -> Tensor:
    """A ``grid_size x grid_size`` control grid in ``[-range, range]^2`` -> ``(K, 2)``, row-major (y outer, x inner).

    CP-VTON uses a 5x5 grid in [-1, 1]; LaDI-VTON keeps it in [-0.9, 0.9].
    """
    if int(grid_size) < 2:
        raise ValueError(f"grid_size must be >= 2, got {grid_size}")
    if not 0 < range <= 1:
        raise ValueError(f"range must be in (0, 1], got {range}")
    t = torch.linspace(-range, range, int(grid_size), device=device, dtype=dtype)
    gy, gx = torch.meshgrid(t, t, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1)


class FixedGridTPS(nn.Module):
    """TPS on a fixed output-side control grid, with ``L^{-1}`` computed once (CP-VTON's TPS grid generator).

    The control points ``c`` (a ``grid_size x grid_size`` grid in ``[-range, range]``) are fixed in
    the *output*; per-sample offsets ``o`` say where each of them samples the input: ``src = c + o``.
    The sampling grid is the TPS ``g`` with ``g(c_k) = c_k + o_k``. Because a TPS reproduces affine
    maps exactly, ``g(p) = p + B(p) L^{-1}[:, :K] o`` where ``B(p) = [U(|p - c|), 1, x, y]``; the
    ``(H*W, K)`` matrix ``M = B L^{-1}[:, :K]`` is cached per output size, so a batch costs one matmul.

    Args:
        grid_size: control points per side (K = grid_size^2).
        range: half-width of the control grid (1.0 as CP-VTON, 0.9 as LaDI-VTON).
    """

    def __init__(self, grid_size: int = 5, range: float = 1.0) -> None:
        super().__init__()
        self.grid_size = int(grid_size)
        self.range = float(range)
        ctrl = control_grid(self.grid_size, self.range, dtype=torch.float64)
        # L^{-1} stays a float64 CPU tensor (not a buffer), so .to()/.half() on a network never degrade it.
        self._l_inv = torch.linalg.inv(system_matrix(ctrl[None])[0])  # (K+3, K+3)
        self._ctrl64 = ctrl
        self.register_buffer("control_points", ctrl.float(), persistent=False)
        self._cache: dict[tuple, Tensor] = {}

    @property
    def num_points(self) -> int:
        return self.grid_size**2

    def extra_repr(self) -> str:
        return f"grid_size={self.grid_size}, range={self.range}"

    def interpolation_matrix(self, size: tuple[int, int], *, device=None, dtype: torch.dtype = torch.float32) -> Tensor:
        """``M = B(p) L^{-1}[:, :K]`` on the ``(H, W)`` output pixel grid -> ``(H*W, K)`` (cached)."""
        h, w = _check_size(size)
        device = self.control_points.device if device is None else torch.device(device)
        key = (h, w, str(device), dtype)
        mat = self._cache.get(key)
        if mat is None:
            pts = pixel_grid((h, w), dtype=torch.float64).reshape(1, h * w, 2)
            basis = torch.cat([tps_kernel(pairwise_sq_dist(pts, self._ctrl64[None])), _poly(pts)], dim=-1)[0]
            mat = (basis @ self._l_inv[:, : self.num_points]).to(device=device, dtype=dtype)
            self._cache[key] = mat
        return mat

    def forward(self, offsets: Tensor, size: tuple[int, int]) -> Tensor:
        """Offsets ``(B, 2, K)`` (row 0: x, row 1: y, normalised units) -> sampling grid ``(B, H, W, 2)``.

        The grid is float32 for half-precision offsets (float64 for float64 ones), autocast or not.
        """
        if offsets.ndim == 2 and offsets.shape[1] == 2 * self.num_points:
            offsets = offsets.view(offsets.shape[0], 2, self.num_points)
        if offsets.ndim != 3 or offsets.shape[1:] != (2, self.num_points):
            raise ValueError(
                f"offsets must have shape (B, 2, {self.num_points}) or (B, {2 * self.num_points}), "
                f"got {tuple(offsets.shape)}"
            )
        h, w = _check_size(size)
        dtype = _grid_dtype(offsets)
        with _full_precision(offsets.device):
            mat = self.interpolation_matrix((h, w), device=offsets.device, dtype=dtype)
            base = pixel_grid((h, w), device=offsets.device, dtype=dtype).reshape(1, h * w, 2)
            grid = base + torch.matmul(mat, offsets.to(dtype).transpose(1, 2))  # (B, HW, 2)
        return grid.view(offsets.shape[0], h, w, 2)

    def source_points(self, offsets: Tensor) -> Tensor:
        """Where each control point samples the input: ``c + offsets`` -> ``(B, K, 2)``."""
        return self.control_points.to(offsets) + offsets.view(offsets.shape[0], 2, self.num_points).transpose(1, 2)

    def warp(self, image: Tensor, offsets: Tensor, *, padding_mode: str = "zeros", mode: str = "bilinear") -> Tensor:
        """Warp ``image`` ``(B, C, H, W)`` with the sampling grid of ``offsets`` ``(B, 2, K)``."""
        _check_image(image)
        grid = self(offsets.to(_grid_dtype(image, offsets)), image.shape[-2:])
        return _grid_sample(image, grid, mode, padding_mode)


def affine_sampling_grid(theta: Tensor, size: tuple[int, int]) -> Tensor:
    """Affine sampling grid: output pixel ``p = (x, y)`` samples ``theta @ [x, y, 1]`` -> ``(B, H, W, 2)``.

    The transformation family of the affine-only ablation (a spatial transformer, Jaderberg et al. 2015,
    Eq. 1), with ``align_corners=True`` like every grid in vtonlab; ``theta`` is ``(B, 2, 3)``. The grid is
    float32 for a half-precision ``theta`` (float64 for a float64 one), autocast or not.
    """
    if theta.ndim != 3 or theta.shape[1:] != (2, 3):
        raise ValueError(f"theta must have shape (B, 2, 3), got {tuple(theta.shape)}")
    h, w = _check_size(size)
    dtype = _grid_dtype(theta)
    with _full_precision(theta.device):
        pts = pixel_grid((h, w), device=theta.device, dtype=dtype).reshape(1, h * w, 2)
        homog = torch.cat([pts, torch.ones_like(pts[..., :1])], dim=-1)  # (1, HW, 3)
        return (homog @ theta.to(dtype).transpose(1, 2)).view(theta.shape[0], h, w, 2)


def affine_warp_image(image: Tensor, theta: Tensor, *, padding_mode: str = "zeros", mode: str = "bilinear") -> Tensor:
    """Warp ``image`` ``(B, C, H, W)`` with the affine sampling grid of ``theta`` ``(B, 2, 3)``."""
    _check_image(image)
    grid = affine_sampling_grid(theta.to(_grid_dtype(image, theta)), image.shape[-2:])
    return _grid_sample(image, grid, mode, padding_mode)


# --------------------------------------------------------------------------------------------------
# Benchmark against kornia
# --------------------------------------------------------------------------------------------------


@dataclass
class BenchmarkResult:
    """Median wall-clock seconds per batch warp, and the speed-up over kornia."""

    batch: int
    size: tuple[int, int]
    grid_size: int
    repeats: int
    threads: int
    device: str
    vtonlab_s: float  # vtonlab.tps.warp_image (general API, control grid shared by the batch)
    fixed_s: float  # FixedGridTPS.warp (cached interpolation matrix)
    kornia_s: float  # kornia get_tps_transform + warp_image_tps

    @property
    def speedup(self) -> float:
        """kornia time / vtonlab.tps.warp_image time."""
        return self.kornia_s / self.vtonlab_s

    @property
    def speedup_fixed(self) -> float:
        """kornia time / FixedGridTPS time."""
        return self.kornia_s / self.fixed_s

    def __str__(self) -> str:
        h, w = self.size
        return (
            f"TPS warp of {self.batch} images of {h}x{w} ({self.grid_size}x{self.grid_size} control grid, "
            f"median of {self.repeats}, {self.threads} threads, {self.device}):\n"
            f"  kornia get_tps_transform + warp_image_tps : {self.kornia_s * 1e3:9.1f} ms\n"
            f"  vtonlab.tps.warp_image                     : {self.vtonlab_s * 1e3:9.1f} ms  "
            f"({self.speedup:.1f}x faster)\n"
            f"  vtonlab.tps.FixedGridTPS.warp (cached)     : {self.fixed_s * 1e3:9.1f} ms  "
            f"({self.speedup_fixed:.1f}x faster)"
        )

    def to_dict(self) -> dict:
        return {
            "batch": self.batch, "size": list(self.size), "grid_size": self.grid_size, "repeats": self.repeats,
            "threads": self.threads, "device": self.device, "vtonlab_s": self.vtonlab_s, "fixed_s": self.fixed_s,
            "kornia_s": self.kornia_s, "speedup": self.speedup, "speedup_fixed": self.speedup_fixed,
        }


def _median_time(fn, repeats: int, sync) -> float:
    fn()  # warm-up (allocations, caches)
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def benchmark(
    batch: int = 64,
    size: tuple[int, int] = (256, 192),
    grid_size: int = 5,
    repeats: int = 5,
    magnitude: float = 0.1,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> BenchmarkResult:
    """Time a TPS warp of ``batch`` RGB images of ``size`` with a fixed control grid (median of ``repeats``).

    Each method warps the same images with the same random offsets (uniform in ``+-magnitude``) and
    includes solving the system: kornia (``get_tps_transform`` called reversed + ``warp_image_tps``
    with ``align_corners=True``), :func:`warp_image` (general API, the fixed grid passed once as
    ``(1, K, 2)``), and :class:`FixedGridTPS` (interpolation matrix cached after the warm-up call).
    Ours agree to float32 round-off; kornia's own solver gives a slightly different map (its kernel
    matrix uses src-to-dst distances; the difference grows with the square of the offsets, see
    ``tests/test_tps.py`` and notebook 03). Timings on a shared machine vary with its load.
    """
    from kornia.geometry.transform import get_tps_transform, warp_image_tps

    h, w = _check_size(size)
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, h, w, generator=gen).to(device)
    tps = FixedGridTPS(grid_size).to(device)
    ctrl = tps.control_points[None]  # (1, K, 2): output-side (dst) control points
    offsets = ((torch.rand(batch, 2, grid_size**2, generator=gen) * 2 - 1) * magnitude).to(device)
    src = tps.source_points(offsets)
    dst_b = ctrl.expand(batch, -1, -1).contiguous()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def run_kornia():
        kw, aw = get_tps_transform(dst_b, src)
        return warp_image_tps(images, src, kw, aw, align_corners=True)

    with torch.no_grad():
        t_kornia = _median_time(run_kornia, repeats, sync)
        t_ours = _median_time(lambda: warp_image(images, src, ctrl), repeats, sync)
        t_fixed = _median_time(lambda: tps.warp(images, offsets), repeats, sync)
    return BenchmarkResult(
        batch=batch, size=(h, w), grid_size=grid_size, repeats=repeats, threads=torch.get_num_threads(),
        device=str(device), vtonlab_s=t_ours, fixed_s=t_fixed, kornia_s=t_kornia,
    )


if __name__ == "__main__":  # python -m vtonlab.tps [batch H W repeats]
    import sys

    args = [int(a) for a in sys.argv[1:]]
    b = args[0] if len(args) > 0 else 64
    hw = (args[1], args[2]) if len(args) > 2 else (256, 192)
    r = args[3] if len(args) > 3 else 5
    print(benchmark(batch=b, size=hw, repeats=r))
