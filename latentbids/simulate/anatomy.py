"""Anatomy: the template head model and each subject's shape (size, smooth deformation, pose).

Coordinates: ``template mm`` are world coordinates of the template grid; ``scanner mm`` are those
of the simulated T1w.  A subject is the template mapped forward by

    x_scanner = R @ (s * (x_t - c + u(x_t))) + t

with ``u`` a smooth random displacement (a low-frequency cosine series, so its Jacobian is exact),
``s`` the global scale that sets TIV, ``c`` the brain centre, and ``R``, ``t`` the head pose.  The
T1w is sampled through the inverse map, which is solved by fixed-point iteration on a coarse grid.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from latentbids.resources import get_template

#: voxels of padding around the template grid for skull and scalp (the bottom is replicated so the
#: brainstem continues into a neck-like column instead of ending in mid air)
PAD_MM = 26.0


@dataclass(frozen=True)
class HeadModel:
    """The template's tissues on its own grid and on a padded grid that holds the head shell."""

    resolution: float
    shape: tuple[int, int, int]  # template grid
    affine: np.ndarray  # template grid
    mask: np.ndarray  # bool, template grid
    gm: np.ndarray  # float32 tissue fractions on the template grid (zero outside the mask)
    wm: np.ndarray
    csf: np.ndarray
    pad: int  # voxels added on each side of the padded grid
    pad_affine: np.ndarray
    pad_mask: np.ndarray  # float32 brain mask on the padded grid
    pad_gm: np.ndarray
    pad_wm: np.ndarray
    pad_csf: np.ndarray
    hull_dist: np.ndarray  # mm outside a smooth hull of the brain (0 inside), padded grid
    center: np.ndarray  # brain centre of mass, template mm
    space: str
    source: str


@functools.lru_cache(maxsize=4)
def head_model(resolution: float = 2.0, space: str = "MNI152NLin2009aSym") -> HeadModel:
    """Build (once per process and resolution) the template head model."""
    tpl = get_template(space=space, resolution=resolution)
    mask = np.asarray(tpl.mask.dataobj) > 0
    gm = np.asarray(tpl.gm.dataobj, dtype=np.float32) * mask
    wm = np.asarray(tpl.wm.dataobj, dtype=np.float32) * mask
    csf = np.clip(mask - gm - wm, 0, 1).astype(np.float32)
    affine = np.asarray(tpl.affine, dtype=float)
    pad = int(np.ceil(PAD_MM / resolution))

    def padded(vol):
        out = np.pad(vol, pad, mode="constant")
        # replicate the lowest axial slice downwards: brainstem -> spinal cord / neck
        out[:, :, :pad] = out[:, :, pad : pad + 1]
        return out

    pad_mask = padded(mask.astype(np.float32))
    pad_affine = affine.copy()
    pad_affine[:3, 3] -= affine[:3, :3] @ np.full(3, pad)
    # smooth hull: blur the mask (sigma 6 mm) so sulci and notches are filled, then distance
    hull = ndimage.gaussian_filter(pad_mask, sigma=6.0 / resolution) > 0.25
    hull |= pad_mask > 0
    hull_dist = ndimage.distance_transform_edt(~hull, sampling=resolution).astype(np.float32)
    idx = np.argwhere(mask)
    center = (affine @ np.r_[idx.mean(axis=0), 1.0])[:3]
    return HeadModel(
        resolution=float(resolution),
        shape=tuple(int(s) for s in mask.shape),
        affine=affine,
        mask=mask,
        gm=gm,
        wm=wm,
        csf=csf,
        pad=pad,
        pad_affine=pad_affine,
        pad_mask=pad_mask,
        pad_gm=padded(gm),
        pad_wm=padded(wm),
        pad_csf=padded(csf),
        hull_dist=hull_dist,
        center=center,
        space=tpl.space,
        source=tpl.source,
    )


# --- smooth random fields: separable cosine (DCT-II) series --------------------------------------

def cosine_basis(n: int, order: int, points: np.ndarray | None = None, derivative: bool = False):
    """DCT-II basis over a grid of ``n`` voxels, at voxel ``points`` (default ``0..n-1``).

    Returns an array ``(len(points), order)``; with ``derivative`` the d/d(voxel) of each function.
    """
    p = np.arange(n, dtype=float) if points is None else np.asarray(points, dtype=float)
    k = np.arange(order, dtype=float)
    phase = np.pi * np.outer(p + 0.5, k) / n
    if derivative:
        return -np.sin(phase) * (np.pi * k / n)
    return np.cos(phase)


def eval_series(coef: np.ndarray, bx: np.ndarray, by: np.ndarray, bz: np.ndarray) -> np.ndarray:
    """A separable cosine series on a grid: sum_ijk coef[i,j,k] bx[:, i] by[:, j] bz[:, k]."""
    t = np.tensordot(bx, coef, axes=(1, 0))  # (nx, K, K)
    t = np.tensordot(t, by, axes=(1, 1))  # (nx, K, ny)
    t = np.tensordot(t, bz, axes=(1, 1))  # (nx, ny, nz)
    return t


def eval_series_points(coef: np.ndarray, bx: np.ndarray, by: np.ndarray,
                       bz: np.ndarray) -> np.ndarray:
    """Series at scattered points (row ``p`` of each basis is point ``p``).

    ``coef`` is ``(K, K, K)`` or ``(C, K, K, K)`` for C series at once; returns ``(P,)`` or
    ``(P, C)``.
    """
    single = coef.ndim == 3
    coef = coef[None] if single else coef
    n_series, order = coef.shape[0], coef.shape[1]
    flat = np.moveaxis(coef, 0, 1).reshape(order, n_series, order * order)  # (K, C, K*K)
    t = np.tensordot(bx, flat, axes=(1, 0))  # (P, C, K*K)
    yz = (by[:, :, None] * bz[:, None, :]).reshape(len(by), order * order)
    out = np.einsum("pcq,pq->pc", t, yz)
    return out[:, 0] if single else out


def random_coefficients(rng: np.random.Generator, order: int, decay: float = 1.0) -> np.ndarray:
    """Gaussian coefficients whose SD falls with frequency; the constant term is zero."""
    i, j, k = np.meshgrid(*(np.arange(order),) * 3, indexing="ij")
    sd = 1.0 / (1.0 + decay * (i**2 + j**2 + k**2))
    coef = rng.standard_normal((order,) * 3) * sd
    coef[0, 0, 0] = 0.0
    return coef


def smooth_field(rng: np.random.Generator, shape, order: int, sd: float, within=None) -> np.ndarray:
    """A smooth random field on ``shape`` with mean 0 and SD ``sd`` (inside ``within``)."""
    coef = random_coefficients(rng, order)
    field = eval_series(coef, *(cosine_basis(n, order) for n in shape))
    sample = field[within] if within is not None else field
    field -= sample.mean()
    scale = sample.std()
    return (field * (sd / scale if scale > 0 else 0.0)).astype(np.float32)


# --- one subject's shape --------------------------------------------------------------------------

DEFORM_ORDER = 5


@dataclass
class Deformation:
    """A subject's forward map template -> scanner (see the module docstring)."""

    scale: float
    rotation: np.ndarray  # 3x3
    translation: np.ndarray  # scanner mm
    coef: np.ndarray  # (3, K, K, K) displacement series, mm
    center: np.ndarray
    shape: tuple[int, int, int]
    affine: np.ndarray  # template grid

    def displacement_at(self, xyz_mm: np.ndarray) -> np.ndarray:
        """u at template-mm points ``(P, 3)``."""
        vox = (np.linalg.inv(self.affine) @ np.c_[xyz_mm, np.ones(len(xyz_mm))].T)[:3].T
        order = self.coef.shape[1]
        bases = [cosine_basis(n, order, vox[:, a]) for a, n in enumerate(self.shape)]
        return eval_series_points(self.coef, *bases)

    def jacobian(self) -> np.ndarray:
        """Volume change of the forward map at every template voxel: s^3 det(I + grad u)."""
        order = self.coef.shape[1]
        basis = [cosine_basis(n, order) for n in self.shape]
        dbasis = [cosine_basis(n, order, derivative=True) for n in self.shape]
        vox = np.abs(np.diag(self.affine)[:3])
        grad = np.empty((3, 3) + self.shape, dtype=np.float64)
        for c in range(3):
            for a in range(3):
                b = list(basis)
                b[a] = dbasis[a]
                grad[c, a] = eval_series(self.coef[c], *b) / vox[a]
            grad[c, c] += 1.0
        det = (
            grad[0, 0] * (grad[1, 1] * grad[2, 2] - grad[1, 2] * grad[2, 1])
            - grad[0, 1] * (grad[1, 0] * grad[2, 2] - grad[1, 2] * grad[2, 0])
            + grad[0, 2] * (grad[1, 0] * grad[2, 1] - grad[1, 1] * grad[2, 0])
        )
        return (det * self.scale**3).astype(np.float32)

    def inverse(self, xyz_scanner: np.ndarray, iterations: int = 6) -> np.ndarray:
        """Template mm of scanner-mm points ``(P, 3)``: solve x + u(x) = y by fixed point."""
        y = ((xyz_scanner - self.translation) @ self.rotation) / self.scale + self.center
        x = y.copy()
        for _ in range(iterations):
            x = y - self.displacement_at(x)
        return x


def random_rotation(rng: np.random.Generator, sd_deg=(6.0, 3.0, 3.0)) -> np.ndarray:
    """Head pose: pitch (about x), roll (about y), yaw (about z) with the given SDs in degrees."""
    ax, ay, az = np.deg2rad(rng.normal(0.0, sd_deg))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def random_deformation(
    rng: np.random.Generator, head: HeadModel, scale: float, amplitude_mm: float
) -> Deformation:
    """Draw a smooth displacement (RMS ``amplitude_mm`` * U(0.6, 1.4) in the brain) and a pose."""
    coef = np.stack([random_coefficients(rng, DEFORM_ORDER) for _ in range(3)])
    amp = amplitude_mm * rng.uniform(0.6, 1.4)
    rotation = random_rotation(rng)
    translation = rng.normal(0.0, 4.0, 3) + np.array([0.0, 0.0, 10.0])
    deform = Deformation(scale, rotation, translation, coef, head.center, head.shape, head.affine)
    # normalise the displacement RMS on a coarse sample of brain voxels
    idx = np.argwhere(head.mask)[::97]
    pts = (head.affine @ np.c_[idx, np.ones(len(idx))].T)[:3].T
    rms = float(np.sqrt(np.mean(np.sum(deform.displacement_at(pts) ** 2, axis=1))))
    deform.coef = coef * (amp / rms if rms > 0 else 0.0)
    return deform
