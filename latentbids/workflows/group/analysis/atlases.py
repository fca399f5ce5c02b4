"""The atlas caution (issue 21): the same latent space read through the other ``--atlas`` parcellations.

Why: a regional verdict is a statement about one parcellation.  The primary atlas (the first ``--atlas``,
declared before the data are seen) carries the headline; every further atlas is a sensitivity analysis
of the very same latent codes and GM maps: its regional means, LRCP and SAM per contrast and SHAP on the
cohort, each with claims that name the atlas, written under file names that carry it (``atlas-<name>``).
Family-wise control accounts for the extra atlases: each sensitivity atlas is tested at ``eta / (number of
sensitivity atlases)``, so the chance that any of them adds a false claim stays at or below ``eta`` on top
of the primary's own ``eta``; its permutation counts are raised where needed so that it can reject
wherever the primary could (:func:`sensitivity_settings`).  The agreement table then says, for every
supported regional claim of any atlas, what the regions of each other atlas that overlap it (GM-weighted
voxel overlap) say, with one sentence per finding (:mod:`latentbids.analysis.atlas_agreement`).

The autoencoder, its latents and projections are computed once; the latent vector's tests do not depend on
the atlas and are made in the primary atlas only (:func:`~.contrast.run_contrast_regions` is what is re-read).
"""
from __future__ import annotations

import dataclasses
import logging
import traceback

import numpy as np
import pandas as pd

from latentbids.analysis.atlas_agreement import agreement_table
from latentbids.analysis.atlas_verdicts import dependence_summary, finding_verdicts, shap_atlas_verdicts
from latentbids.analysis.claims import CLAIM_FAMILIES, ClaimsList, with_atlas
from latentbids.analysis.cohort import regional_means
from latentbids.analysis.results import SectionResult

LOGGER = logging.getLogger("latentbids.workflows.group")


def contrast_regional_families() -> tuple[str, ...]:
    """The claim families whose items are regions and that each contrast makes (re-read per atlas)."""
    return tuple(n for n, f in CLAIM_FAMILIES.items() if f.regional and f.scope == "contrast")


def inputs_for_atlas(inp, atlas, group_result):
    """The analysis inputs of the primary atlas, re-read through ``atlas``: its labels on the working grid (one
    nearest-neighbour resampling) and on the network box the GM data lie in, its regional means."""
    from latentbids.resources import resample_atlas

    image = resample_atlas(atlas, group_result.atlas_image)
    box = group_result.grid_fit.crop(np.asarray(image.dataobj).astype(np.float32)).astype(np.int64)
    labels = atlas.labels
    G, _ = regional_means(group_result.data, box, labels["index"].to_numpy(), group_result.mask_box)
    present = np.isfinite(G).all(axis=0)
    return dataclasses.replace(inp, G=G[:, present], regions=labels[present].reset_index(drop=True), atlas_box=box,
                               atlas_image=image, atlas_bids_name=atlas.bids_name)


def regional_claims_frame(claims, inputs_by_atlas: dict) -> pd.DataFrame:
    """The regional claims of every atlas as :func:`~latentbids.analysis.atlas_agreement.agreement_table` reads
    them (atlas, contrast, family, region_index, region, supported)."""
    families = contrast_regional_families()
    rows = []
    for c in claims:
        if c.family not in families or not c.atlas or c.exploratory:
            continue
        regions = inputs_by_atlas[c.atlas].regions
        index = dict(zip(regions["name"].astype(str), regions["index"].astype(int)))
        if c.item not in index:
            continue
        rows.append({"atlas": c.atlas, "contrast": c.contrast, "family": c.family, "region_index": index[c.item],
                     "region": c.item, "supported": bool(c.supported)})
    return pd.DataFrame(rows, columns=["atlas", "contrast", "family", "region_index", "region", "supported"])


def _mean_map(data) -> np.ndarray:
    """The mean GM map of the cohort on the box, one map read at a time (``data`` may be memory-mapped)."""
    total = np.zeros(data.shape[1:], dtype=np.float64)
    for i in range(len(data)):
        total += np.asarray(data[i], dtype=np.float64)
    return (total / max(1, len(data))).astype(np.float32)


#: permutation counts of ``[analysis]`` -> how many tests share the smallest p (SHAP: Holm over <= 4 models)
PERMUTATION_TESTS = {"n_permutations": 1, "sam_permutations": 1, "shap_permutations": 4,
                     "shap_region_permutations": 1}


def sensitivity_settings(settings, n_atlases: int):
    """``[analysis]`` for each of ``n_atlases`` sensitivity atlases: ``eta / n_atlases``, and every permutation
    count raised so that a sensitivity atlas can reject wherever the primary could.

    A permutation p is at least ``1 / (B + 1)``; a test of ``m`` claims that Holm or max-statistic correct needs
    ``m / (B + 1) <= eta``.  The primary's ``B`` reaches ``min(B + 1, m / eta)`` of that headroom; the sensitivity
    atlas gets ``n_atlases`` times it, so a count the primary's ``eta`` needs is never a count the smaller
    ``eta`` cannot use (e.g. ``--sloppy``'s 20 SAM permutations reach p = 0.048 <= 0.05, but not 0.025: 39).
    Returns the settings and one note per raised count.
    """
    n = max(1, int(n_atlases))
    eta = float(settings.eta) / n
    changes, notes = {"eta": eta}, []
    for key, tests in PERMUTATION_TESTS.items():
        b = int(getattr(settings, key))
        need = int(np.ceil(min(b + 1, tests / float(settings.eta)) * n - 1e-9)) - 1
        if need > b:
            changes[key] = need
            notes.append(f"{key} {b} -> {need} (eta / {n} = {eta:.4g})")
    return dataclasses.replace(settings, **changes), notes


def _label_all(claims, atlas: str) -> list:
    """Every claim of a sensitivity atlas names it (its SHAP model claims too: they read that atlas's regions)."""
    return [dataclasses.replace(c, atlas=atlas) for c in claims]


def run_atlas_sensitivity(inp, atlases, group_result, settings, seed: int, primary_claims, *,
                          with_shap: bool = False, n_jobs: int = 1) -> SectionResult:
    """Every further atlas: LRCP and SAM per contrast and SHAP at ``eta / n``, their files, the agreement table.

    Parameters
    ----------
    inp : AnalysisInputs
        The primary atlas's inputs.
    atlases : sequence of latentbids.resources.Atlas
        The sensitivity atlases (the primary excluded), in ``--atlas`` order.
    group_result : GroupLevelResult
    settings : AnalysisConfig
        ``[analysis]``; :func:`sensitivity_settings` derives each sensitivity atlas's from it.
    seed : int
    primary_claims : ClaimsList
        The primary atlas's claims (its regional ones already carry its name).
    with_shap : bool, default=False
        Explain the reconstruction error from each atlas's regions too (the primary's SHAP ran).
    n_jobs : int, default=1
        SHAP's worker processes.

    Returns
    -------
    SectionResult
        ``result``: ``{atlas: [ContrastResult, ...]}``; ``tables``: ``agreement`` (one row per supported
        regional finding x other atlas), ``verdicts`` (one sentence per finding), ``summary`` (the primary's
        findings counted by their dependence on the atlas, a list of at most one sentence), ``shap`` (``{atlas:
        ShapSection}``) and ``shap_verdicts``, ``files`` and ``inputs`` (per atlas), ``failures`` (section name ->
        why, for an atlas whose SHAP failed: its other claims stand); ``claims``: the sensitivity
        atlases' claims, each naming its atlas (they never enter the primary's verdicts or headline); ``notes``.
    """
    from latentbids.workflows.group.analysis import writers
    from latentbids.workflows.group.analysis.contrast import run_contrast_regions
    from latentbids.workflows.group.analysis.shap_section import run_shap

    families = contrast_regional_families()
    sensitivity, raised = sensitivity_settings(settings, len(atlases))
    notes = [f"Sensitivity atlases ({len(atlases)}) tested at eta / {len(atlases)}; permutations raised for it: "
             + "; ".join(raised)] if raised else []
    inputs = {inp.atlas_bids_name: inp}
    results, made, files, shaps, failures = {}, [], {}, {}, {}
    for atlas in atlases:
        one = inputs_for_atlas(inp, atlas, group_result)
        inputs[atlas.bids_name] = one
        atlas_claims = ClaimsList()
        results[atlas.bids_name] = []
        for a, b in inp.contrasts:
            section = run_contrast_regions(one, sensitivity, seed, a, b)
            if section.result is None:
                continue
            regional = [c for c in with_atlas(section.claims, atlas.bids_name) if c.family in families]
            atlas_claims.extend(regional)
            results[atlas.bids_name].append(section.result)
            written = writers.write_contrast(one, section.result, atlas_claims, sensitivity)
            files.update({f"atlas-{atlas.bids_name}_{k}": v for k, v in written.items()})
        if with_shap:
            try:  # one atlas's SHAP failing costs its SHAP only, not the regional claims or the agreement table
                section = run_shap(one, sensitivity, seed, n_jobs)
                atlas_claims.extend(_label_all(section.claims, atlas.bids_name))
                shaps[atlas.bids_name] = section.result
                written = writers.write_shap(one, section.result, atlas_claims, sensitivity)
                files.update({f"atlas-{atlas.bids_name}_{k}": v for k, v in written.items()})
            except Exception as exc:  # noqa: BLE001 - logged, and a failure of the run (exit code 1)
                LOGGER.error("SHAP of atlas %s failed: %s\n%s", atlas.bids_name, exc, traceback.format_exc())
                failures[f"shap atlas-{atlas.bids_name}"] = f"{type(exc).__name__}: {exc}"
        written = writers.write_claims(one, atlas_claims, atlas=True)
        files.update({f"atlas-{atlas.bids_name}_{k}": v for k, v in written.items()})
        made.extend(atlas_claims)
        LOGGER.info("Atlas %s (sensitivity, eta %.4g): %d supported claim(s)", atlas.bids_name,
                    sensitivity.eta, sum(c.supported for c in atlas_claims))
    claims = regional_claims_frame(list(primary_claims) + made, inputs)
    labels = {name: one.atlas_box for name, one in inputs.items()}
    weights = _mean_map(group_result.data) * group_result.mask_box
    table = agreement_table(labels, claims, weights=weights) if len(claims) else pd.DataFrame()
    verdicts = finding_verdicts(table) if len(table) else pd.DataFrame(columns=["verdict"])
    shap_lines = shap_atlas_verdicts(list(primary_claims) + made, list(inputs)) if with_shap else []
    summary = dependence_summary(verdicts, inp.atlas_bids_name)
    return SectionResult(result=results, tables={"agreement": table, "verdicts": verdicts, "files": files,
                                                 "inputs": inputs, "shap": shaps, "shap_verdicts": shap_lines,
                                                 "summary": [summary] if summary else [], "failures": failures},
                         claims=made, notes=tuple(notes))
