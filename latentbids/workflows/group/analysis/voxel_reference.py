"""The atlas-free reference of one contrast: which voxels' GM tracks the relevant latent units.

Why: every regional claim averages GM over a parcel; this map does not.  The units the ``unit`` family
supports in the reference fold are correlated with the GM of every brain voxel of the network box
(confounds regressed out), family-wise over voxels and units by the max-statistic permutation
(:func:`latentbids.analysis.voxel_association.voxel_association`).  Each atlas's regions are then
summarised against it (share of supported voxels, strongest voxel), beside the atlas's own LRCP verdict:
an LRCP-positive region with no supported voxel, or supported voxels in regions no atlas calls positive,
show what a parcellation averages away.  It adds no claim family: it is a reference, and its map holds
supported voxels only.
"""
from __future__ import annotations

import logging

import nibabel as nib
import numpy as np
import pandas as pd

from latentbids.analysis.claims import LRCP, UNIT
from latentbids.analysis.results import SectionResult
from latentbids.analysis.voxel_association import regional_summary, voxel_association
from latentbids.bids.naming import latent_columns
from latentbids.utils.atomic import save_nifti, write_json, write_tsv
from latentbids.utils.progress import step

LOGGER = logging.getLogger("latentbids.workflows.group")


def relevant_units(claims, contrast: str, fold: str, K: int) -> list[int]:
    """The columns of the units the ``unit`` family supports for ``contrast`` in ``fold``."""
    names = latent_columns(K)
    return sorted({names.index(c.item) for c in claims.select(family=UNIT, contrast=contrast, supported=True)
                   if str(c.fold) == str(fold) and c.item in names})


def run_voxel_reference(inp, settings, seed: int, result, claims, atlas_inputs: dict) -> SectionResult:
    """The reference map of one contrast (``result``: its ContrastResult) and each atlas's regions against it.

    Returns a :class:`SectionResult` (``result``: the VoxelAssociation or None; ``tables``: ``regions`` per
    atlas; ``notes``: one line per atlas, or why nothing ran); no claims.
    """
    from latentbids.workflows.group.analysis.contrast import contrast_rows, voxel_matrix

    a, b = result.labels
    ref = inp.reference_fold
    Zall = inp.fold_Z[ref][0]
    units = relevant_units(claims, result.name, ref, Zall.shape[1])
    if not units:
        return SectionResult(None, notes=(f"{result.name}: no latent unit supported in fold {ref}, so no atlas-free "
                                          "reference map (it correlates the relevant units with every voxel)",))
    rows, _ = contrast_rows(inp, a, b)
    Z = inp.adjust(Zall, rows)[:, units]
    vox = np.flatnonzero(np.asarray(inp.mask_box).ravel() > 0)
    X = voxel_matrix(inp, rows, vox)
    with step(LOGGER, f"{result.name}: atlas-free reference, {len(units)} unit(s) x {len(vox)} voxels, "
                      f"{settings.n_permutations} permutations"):
        assoc = voxel_association(Z, X, n_permutations=settings.n_permutations, random_state=seed, eta=settings.eta)
    tables, notes = {}, []
    for name, one in atlas_inputs.items():
        labels = np.asarray(one.atlas_box).ravel()[vox]
        summary = regional_summary(assoc, labels, one.regions["index"].to_numpy())
        summary.insert(0, "region", one.regions["name"].to_numpy())
        positive = set(claims.supported_items(LRCP, result.name)) if name == inp.atlas_bids_name else None
        if positive is not None:
            summary["lrcp_supported"] = summary["region"].isin(positive).to_numpy()
        tables[name] = summary.reset_index()
        holds = summary[summary["fraction_supported"] >= 0.1]["region"].tolist()
        notes.append(f"{result.name}, atlas-free reference ({int(assoc.supported.sum())} of {len(vox)} voxels "
                     f"supported): regions of {name} with >= 10 % supported voxels: {', '.join(holds) or 'none'}")
    return SectionResult(assoc, tables=tables, notes=tuple(notes))


def write_voxel_reference(inp, result, section: SectionResult) -> dict:
    """The reference map (statistic where supported, 0 elsewhere) and each atlas's region table."""
    assoc = section.result
    if assoc is None:
        return {}
    d = result.desc
    box = np.zeros(np.asarray(inp.mask_box).shape, dtype=np.float32)
    flat = box.reshape(-1)
    vox = np.flatnonzero(np.asarray(inp.mask_box).ravel() > 0)
    flat[vox] = np.where(assoc.supported, assoc.statistic, 0.0)
    img = nib.Nifti1Image(inp.grid_fit.restore(box).astype(np.float32), inp.atlas_image.affine)
    path = save_nifti(img, inp.path("voxelassociation", ".nii.gz", desc=d))
    write_json(path.with_name(path.name.replace(".nii.gz", ".json")), {
        "Description": (f"Atlas-free reference of {result.name}: max |r| between a voxel's GM and the latent units "
                        "the unit family supports in the reference fold, where family-wise significant over voxels "
                        "and units (max-statistic permutation); 0 elsewhere"),
        "Threshold": float(assoc.threshold), "Permutations": int(assoc.n_permutations), "Eta": float(assoc.eta),
        "Exploratory": False,
    })
    files = {f"{d}_voxel_association": str(path)}
    for name, table in section.tables.items():
        target = inp.path("voxelregions", ".tsv", name, desc=d)
        files[f"{d}_voxel_regions_{name}"] = str(write_tsv(pd.DataFrame(table), target))
    return files
