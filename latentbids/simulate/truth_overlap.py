"""Where a planted loss truly is, in each atlas: the share of the lost GM that falls in every region.

A regional verdict is a statement about one parcellation.  To say, per planted shape, which regions
of AAL, AAL3 and HCPEx really carry the effect, ``simulation.json`` records for every planted effect
(``PlantedEffectsOverlap``) the fraction of its GM loss that lies in each region of each atlas:

    fraction(region) = sum over the region's voxels of GM * loss  /  sum over all voxels of GM * loss

with ``loss`` the effect alone at severity 1 on the template grid and ``GM`` the template's GM
fraction (the loss multiplies GM, so GM-free voxels of a blob carry none of it).  Regions holding at
least ``MIN_FRACTION`` of the loss are listed, largest first; the rest is summed as ``Unlisted``
(smaller regions) and ``OutsideAtlas`` (voxels the atlas leaves unlabelled), so listed fractions,
``Unlisted`` and ``OutsideAtlas`` add up to 1.
"""
from __future__ import annotations

import numpy as np

from latentbids.simulate.effects import AtlasGrid, effect_footprint, get_atlas_grid, loss_map
from latentbids.simulate.spec import Effect

#: the atlases every planted effect is described in (the effect atlas is added when it is another)
OVERLAP_ATLASES = ("AAL", "AAL3", "HCPEx")
#: regions carrying less than this share of an effect's loss are not listed by name
MIN_FRACTION = 0.05
DIGITS = 4

DESCRIPTION = (
    "For each planted effect (same order as PlantedEffects): the atlas it was planted in ('blob' for a "
    "sphere, with its centre in MNI mm and radius), and per atlas the regions holding at least MinFraction "
    "of its GM loss (template GM x loss of the effect alone at severity 1, summed over voxels), largest "
    "first; Unlisted is the share of smaller regions, OutsideAtlas the share in voxels the atlas leaves "
    "unlabelled (listed + Unlisted + OutsideAtlas = 1)."
)


def loss_overlap(loss: np.ndarray, atlas: AtlasGrid, weights: np.ndarray | None = None,
                 min_fraction: float = MIN_FRACTION) -> dict:
    """Share of a loss map that falls in each region of an atlas on the same grid.

    Parameters
    ----------
    loss : ndarray
        Loss per voxel (e.g. fraction of GM lost), on the grid of ``atlas.labels``.
    atlas : AtlasGrid
        Integer labels on the same grid and the region name of each label.
    weights : ndarray, optional
        Multiplies ``loss`` before summing (the template GM, so the shares are of GM lost).
    min_fraction : float
        Regions with a smaller share are not listed by name but summed into ``Unlisted``.

    Returns
    -------
    dict
        ``Regions``: ``[{"Name", "Index", "Fraction"}, ...]`` for regions with at least
        ``min_fraction`` of the loss, largest first (ties by name); ``Unlisted``: the share of the
        other regions; ``OutsideAtlas``: the share in unlabelled voxels (or labels the table lacks).
        All shares are 0 for a map without loss.
    """
    weighted = np.asarray(loss, dtype=np.float64)
    if weights is not None:
        weighted = weighted * np.asarray(weights, dtype=np.float64)
    if weighted.shape != atlas.labels.shape:
        raise ValueError(f"loss map {weighted.shape} and atlas {atlas.labels.shape} are not on one grid")
    total = float(weighted.sum())
    if not total > 0:
        return {"Regions": [], "Unlisted": 0.0, "OutsideAtlas": 0.0}
    labels = atlas.labels.astype(np.int64).ravel()
    sums = np.bincount(np.clip(labels, 0, None), weights=weighted.ravel())
    shares = {name: float(sums[idx]) / total for name, idx in atlas.index.items() if 0 < idx < len(sums)}
    listed = sorted(((-f, n) for n, f in shares.items() if f >= min_fraction and f > 0))
    regions = [{"Name": n, "Index": int(atlas.index[n]), "Fraction": round(-f, DIGITS)} for f, n in listed]
    in_regions = sum(shares.values())
    unlisted = in_regions - sum(-f for f, _ in listed)
    return {
        "Regions": regions,
        "Unlisted": round(max(unlisted, 0.0), DIGITS),
        "OutsideAtlas": round(max(1.0 - in_regions, 0.0), DIGITS),
    }


def _planted_as(effect: Effect, atlas_name: str) -> dict:
    if effect.is_blob:
        return {"Atlas": "blob", "Blob": {"CenterMM": list(effect.center_mm), "RadiusMM": effect.radius_mm}}
    return {"Atlas": atlas_name, "Regions": list(effect.regions)}


def planted_effects_overlap(effects: tuple[Effect, ...], effect_atlas: str, head) -> dict:
    """The ``PlantedEffectsOverlap`` record of ``simulation.json`` (see the module docstring).

    Parameters
    ----------
    effects : tuple of Effect
        The planted effects, checked against ``effect_atlas``.
    effect_atlas : str
        The atlas the region effects name (``SimulationSpec.atlas``).
    head : HeadModel
        The template head model: its grid and its GM fraction (the weights).

    Returns
    -------
    dict
        ``Description``, ``Atlases``, ``MinFraction``, ``Weights`` and ``Effects``: per effect
        ``Atlas`` (``blob`` for a sphere, with ``Blob``: ``CenterMM``, ``RadiusMM``; else ``Regions``),
        ``Percent``, ``Voxels`` (its footprint on the template grid) and ``Overlap``: atlas name ->
        :func:`loss_overlap`.
    """
    names = list(OVERLAP_ATLASES) + ([] if effect_atlas in OVERLAP_ATLASES else [effect_atlas])
    record = {
        "Description": DESCRIPTION,
        "Atlases": names,
        "MinFraction": MIN_FRACTION,
        "Weights": "template GM fraction",
        "Effects": [],
    }
    if not effects:
        return record
    planting = get_atlas_grid(head, effect_atlas)
    grids = {name: get_atlas_grid(head, name) for name in names}
    for effect in effects:
        footprint = effect_footprint(planting, effect)
        # the effect alone at severity 1; a 0 % effect is described by its footprint
        loss = loss_map(planting, (effect,), 1.0) if effect.percent > 0 else footprint.astype(np.float32)
        entry = _planted_as(effect, planting.name)
        entry.update(Percent=effect.percent, Voxels=int(footprint.sum()))
        entry["Overlap"] = {name: loss_overlap(loss, grid, weights=head.gm) for name, grid in grids.items()}
        record["Effects"].append(entry)
    return record
