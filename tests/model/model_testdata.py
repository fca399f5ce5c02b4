"""Synthetic cohorts for the model tests: a tiny template grid, a 4-region atlas, smooth GM blobs."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from latentbids.config import RunConfig
from latentbids.resources import Atlas, Template


def toy_template(shape=(20, 24, 20), resolution=4.0, space="MNI152NLin2009aSym") -> Template:
    affine = np.diag([resolution] * 3 + [1.0])
    affine[:3, 3] = [-(s - 1) * resolution / 2 for s in shape]
    grid = np.indices(shape).astype(np.float32)
    centre = (np.asarray(shape, dtype=np.float32) - 1)[:, None, None, None] / 2
    radius = np.asarray(shape, dtype=np.float32)[:, None, None, None] * 0.38
    inside = (((grid - centre) / radius) ** 2).sum(0) <= 1
    mask = inside.astype(np.uint8)
    gm = (mask * 0.5).astype(np.float32)
    img = lambda d: nib.Nifti1Image(np.asarray(d, dtype=np.float32), affine)  # noqa: E731
    return Template(
        space=space,
        resolution=float(resolution),
        t1w=img(mask),
        mask=nib.Nifti1Image(mask, affine),
        csf=img(mask * 0.1),
        gm=img(gm),
        wm=img(mask * 0.4),
        source="synthetic",
    )


def toy_atlas(template: Template) -> Atlas:
    mask = np.asarray(template.mask.dataobj) > 0
    shape = mask.shape
    lab = np.zeros(shape, dtype=np.int16)
    x, y = np.indices(shape)[:2]
    lab[mask & (x < shape[0] // 2) & (y < shape[1] // 2)] = 1
    lab[mask & (x >= shape[0] // 2) & (y < shape[1] // 2)] = 2
    lab[mask & (x < shape[0] // 2) & (y >= shape[1] // 2)] = 3
    lab[mask & (x >= shape[0] // 2) & (y >= shape[1] // 2)] = 4
    labels = pd.DataFrame(
        {"index": [1, 2, 3, 4], "name": ["LeftFront", "RightFront", "LeftBack", "RightBack"]}
    )
    return Atlas(
        name="toy", img=nib.Nifti1Image(lab, template.affine), labels=labels, source="synthetic"
    )


def smooth_blobs(shape, rng, n_blobs=6, sigma=2.5) -> np.ndarray:
    grid = np.indices(shape).astype(np.float32)
    out = np.zeros(shape, dtype=np.float32)
    for _ in range(n_blobs):
        c = rng.uniform(0.25, 0.75, size=3) * np.asarray(shape)
        d2 = sum((grid[i] - c[i]) ** 2 for i in range(3))
        out += rng.uniform(0.3, 1.0) * np.exp(-d2 / (2 * sigma**2))
    return out


def make_cohort(
    root: Path, template: Template, n_subjects=9, seed=0, two_sessions=("sub-01",)
) -> pd.DataFrame:
    """GM maps (probabilities in [0, 1], 0 outside the mask) and a records table."""
    rng = np.random.default_rng(seed)
    mask = np.asarray(template.mask.dataobj) > 0
    atlas = np.asarray(toy_atlas(template).img.dataobj)
    rows = []
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n_subjects):
        pid = f"sub-{i + 1:02d}"
        group = "AD" if i % 2 else "CN"
        sessions = ["ses-1", "ses-2"] if pid in two_sessions else ["n/a"]
        base = smooth_blobs(template.shape, rng)
        for ses in sessions:
            vol = base + 0.05 * smooth_blobs(template.shape, rng, n_blobs=2)
            vol = np.clip(0.2 + vol / (vol.max() + 1e-6) * 0.75, 0, 1) * mask
            if group == "AD":
                vol = np.where(atlas == 1, vol * 0.7, vol)
            name = f"{pid}" + ("" if ses == "n/a" else f"_{ses}") + "_gm.nii.gz"
            path = root / name
            nib.save(nib.Nifti1Image(vol.astype(np.float32), template.affine), str(path))
            rows.append(
                {
                    "participant_id": pid,
                    "session_id": ses,
                    "gm_path": str(path),
                    "group": group,
                    "age": 60 + i,
                }
            )
    return pd.DataFrame(rows)


def sloppy_config(tmp: Path, **model) -> RunConfig:
    config = RunConfig()
    ex = config.execution
    ex.output_dir = str(tmp / "out")
    ex.work_dir = str(tmp / "work")
    ex.sloppy = True
    ex.deterministic = True
    ex.device = "cpu"
    ex.omp_nthreads = 1
    ex.random_seed = 7
    mc = config.model
    mc.latent_dim = 4
    mc.batch_size = 4
    mc.n_folds = 3
    mc.max_epochs = 2
    mc.input_map = "probseg"
    for key, value in model.items():
        setattr(mc, key, value)
    return config
