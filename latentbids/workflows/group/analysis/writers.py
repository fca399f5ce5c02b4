"""Write the analysis sections' tables, maps and sidecars into ``group/<model>/``.

Maps follow the claims list: an LRCP map *without* an ``exploratory`` mark in its ``desc`` paints
only supported claims and is written only when there is one; the ranking of everything else goes to a
map whose ``desc`` ends in ``exploratory`` and whose sidecar says it is not a finding.  A SHAP map is
never a regional finding: with a supported surrogate it is model-level (``desc-<model>modellevel``,
``"Level": "model"``), otherwise exploratory (:func:`~latentbids.analysis.maps.shap_map_naming`).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from latentbids.analysis.claims import LRCP, SHAP
from latentbids.analysis.maps import paint_regions, shap_map_naming
from latentbids.analysis.projection_registry import PROJECTION_METHODS, join_names
from latentbids.bids.naming import entity_label
from latentbids.utils.atomic import save_nifti, write_json, write_tsv

EXPLORATORY_NOTE = ("Exploratory: not a finding. No supported claim stands behind these values (see "
                    "analysis.json, Claims); they are shown for orientation only.")


def _resolution(inp) -> str:
    return f"{inp.resolution:g} mm, the network's working grid"


def _write_map(inp, values: pd.Series, suffix: str, desc: str, description: str, exploratory: bool,
               extra: dict | None = None) -> str:
    """Paint one value per region into the atlas; the sidecar says whether it is a finding (and ``extra``)."""
    path = save_nifti(paint_regions(values, inp.atlas_image), inp.path(suffix, ".nii.gz", True, desc=desc))
    sidecar = {"Description": description, "Resolution": _resolution(inp), **(extra or {}),
               "Exploratory": bool(exploratory)}
    if exploratory:
        sidecar["Note"] = EXPLORATORY_NOTE
    write_json(path.with_name(path.name.replace(".nii.gz", ".json")), sidecar)
    return str(path)


def write_cohort(inp) -> dict:
    table = pd.concat([inp.ids(), inp.covariates[["gm_mean", "tiv"]],
                       pd.DataFrame(inp.G, columns=inp.regions["name"].tolist())], axis=1)
    return {"regional_gm": str(write_tsv(table, inp.path("stats", ".tsv", atlas=True, desc="gm")))}


def projections_description() -> str:
    """The projections sidecar's ``Description``: which registered methods run in every fold, which (the
    transductive ones) on the reference fold only, and that the latter's distances are not evidence."""
    per_fold = [m.label for m in PROJECTION_METHODS.values() if not m.transductive]
    pictures = [m.label for m in PROJECTION_METHODS.values() if m.transductive]
    parts = ([f"{join_names(per_fold)} fitted on the fold's training subjects (role train/validation) and applied "
              "to its held-out ones"] if per_fold else []) + (
        [f"{join_names(pictures)} only for the reference fold, on all its codes"] if pictures else [])
    text = "Latent projections per fold: " + "; ".join(parts)
    return text + (f". {'/'.join(pictures)} distances are not evidence: no statistic is computed on them"
                   if pictures else "")


def write_projections(inp, result, table: pd.DataFrame, seed: int) -> dict:
    path = write_tsv(table, inp.path("projections", ".tsv"))
    write_json(path.with_suffix(".json"), {
        "Description": projections_description(),
        "ReferenceFold": inp.reference_fold, "PLSContrast": result.pls_contrast, "RandomSeed": seed,
        "Methods": result.meta,
        "PC1Correlations": None if result.pc1 is None else jsonable(result.pc1.to_dict("records")),
    })
    return {"projections": str(path)}


def write_contrast(inp, res, claims, settings) -> dict:
    """Tables of one contrast, its LRCP maps (finding and exploratory) and the LRCP sidecar (and the latent
    vector's tests, when ``res`` has them: a sensitivity atlas's contrast has not)."""
    m, d = res.lrcp, res.desc
    ent = {"desc": d}
    held = {k: v for k, v in (res.held_out or {}).items() if k not in ("splits",)}
    tests = [{"test": "latent vector, held-out balanced accuracy (ridge classifier, label permutation of the whole "
                      f"cross-validation over {(res.held_out or {}).get('splits') or 'the folds'})", "fold": "all",
              **_scalars(held)}] if held else []
    for fold, vec in res.vectors.items():
        tests.append({"test": f"latent vector (d = {vec.get('d')}), linear SVM", "fold": fold, **_scalars(vec)})
        tests.append({"test": "latent vector, RUB (PAC-Bayes on the Gibbs classifier)", "fold": fold,
                      **_scalars(vec.get("rub") or {})})
    files = {
        "lrcp_association": write_tsv(m.association_, inp.path("lrcpassociation", ".tsv", True, **ent)),
        "lrcp_units": write_tsv(m.units_, inp.path("lrcpunits", ".tsv", True, **ent)),
        "lrcp_regions": write_tsv(m.folds_, inp.path("lrcpregions", ".tsv", True, **ent)),
        "lrcp_consensus": write_tsv(m.consensus_, inp.path("lrcpconsensus", ".tsv", True, **ent)),
        "sam": write_tsv(res.sam, inp.path("sam", ".tsv", True, **ent)),
    }
    if tests:  # a sensitivity atlas re-reads the regions only: the latent vector's tests are the primary's
        files["tests"] = write_tsv(pd.DataFrame(tests), inp.path("agnostic", ".tsv", True, **ent))
    files = {k: str(v) for k, v in files.items()}
    scores = m.consensus_.set_index("region_index")["mean_score"]
    supported = set(claims.supported_items(LRCP, res.name))
    positive = m.consensus_.set_index("region_index")["region"].isin(supported)
    if positive.any():
        files["lrcp_map"] = _write_map(inp, scores.where(positive, 0.0), "lrcp", d,
                                       f"LRCP score S_j of the LRCP-positive regions of {res.name} (supported claims "
                                       "only; 0 elsewhere), mean over folds", exploratory=False)
    files["lrcp_map_exploratory"] = _write_map(
        inp, scores, "lrcp", f"{d}exploratory", f"LRCP score S_j of every region, {res.name}, mean over folds",
        exploratory=True)
    write_json(inp.path("lrcpassociation", ".json", True, **ent), {
        "Description": f"LRCP of {res.labels[0]} (0) vs {res.labels[1]} (1): latent unit vs regional GM "
                       "correlations per fold",
        "n": res.n, "n_per_class": res.n_per_class, "Confounds": list(inp.confound_names),
        "Summary": jsonable(m.summary_), "Stability": jsonable(m.stability_),
        "Parameters": {k: getattr(settings, k) for k in ("correlation", "correction", "family_correction",
                                                         "statistic", "alpha", "eta", "bound", "n_permutations",
                                                         "top_k", "sam_top_voxels", "sam_permutations")},
    })
    return {f"{d}_{k}": v for k, v in files.items()}


def write_shap(inp, section, claims, settings) -> dict:
    res = section.result
    files = {
        "shap_fits": write_tsv(res.fits, inp.path("shapfits", ".tsv", True)),
        "shap_importance": write_tsv(res.importance, inp.path("shapimportance", ".tsv", True)),
    }
    if res.comparison is not None and len(res.comparison):
        # no test compares the classes' importances: the table is exploratory, in its name and sidecar
        comparison = write_tsv(res.comparison, inp.path("shapcomparison", ".tsv", True, desc="exploratory"))
        write_json(comparison.with_suffix(".json"), {
            "Description": ("SHAP importances of the class surrogates compared (Spearman, top-k overlap, largest "
                            "changes)"),
            "Exploratory": True, "Note": ("Exploratory: not a finding. No test compares the classes' importances (it "
                                          "would need the labels permuted through both fits)")})
        files["shap_comparison_exploratory"] = comparison
    long = []
    for model, values in (res.values or {}).items():
        vals = values.copy()
        vals.columns = [str(c) for c in vals.columns]
        rows = np.flatnonzero(inp.usable)[np.asarray(vals.index, dtype=int)]
        frame = pd.concat([inp.ids(rows), vals.reset_index(drop=True)], axis=1)
        frame.insert(0, "model", model)
        long.append(frame)
    if long:
        files["shap_values"] = write_tsv(pd.concat(long, ignore_index=True), inp.path("shap", ".tsv", True))
    files = {k: str(v) for k, v in files.items()}
    supported = set(claims.supported_items(SHAP))
    for model in (res.values or {}):
        imp = res.importance[res.importance["model"] == model].set_index("region_index")["importance"]
        desc, extra = shap_map_naming(entity_label(model), model in supported)
        files[f"shap_map_{model}_" + ("modellevel" if model in supported else "exploratory")] = _write_map(
            inp, imp, "shap", desc, f"Mean |SHAP| of regional GM in the {model} surrogate of the reconstruction "
            "error, painted on the atlas", exploratory=extra.pop("Exploratory"), extra=extra)
    write_json(inp.path("shapfits", ".json", True), {
        "Description": ("Surrogate models of the held-out reconstruction error from regional GM; a supported model "
                        "(CV R^2 above shap_min_r2, Holm-adjusted permutation p at most eta) supports 'the error is "
                        "predictable from regional GM', and its SHAP map is model-level; the top regions are tested "
                        "on held-out subjects (TopRegions), with SAR beside it as the paper's check (see "
                        "analysis.json, Claims)"),
        "Statements": res.statement, "TopRegions": jsonable(res.regions), "SAR": jsonable(res.sar),
        "Parameters": {k: getattr(settings, k) for k in (
            "shap_n_estimators", "shap_max_depth", "shap_learning_rate", "shap_subsample", "shap_background",
            "shap_permutations", "shap_min_r2", "sar_top_m", "shap_region_permutations", "eta")},
    })
    return files


def write_claims(inp, claims, atlas: bool = False) -> dict:
    """The claims list (TSV + sidecar); ``atlas``: a sensitivity atlas's own list (``atlas-<name>`` in the name)."""
    path = write_tsv(claims.frame(), inp.path("claims", ".tsv", atlas))
    write_json(path.with_suffix(".json"), {
        "Description": ("Every statement of significance of this analysis, supported or not, with its test: the "
                        "report, its headline and the maps are generated from this list"),
        "contrast": {"Description": "the contrast 'A vs B', or empty for claims about the whole cohort"},
        "atlas": {"Description": "the atlas whose region the claim names (regional families), else empty"},
        "family": {"Description": "unit, region, lrcp, sam, latent_vector, rub, sar, shap, pc1 or shap_regions"},
        "p": {"Description": "the p-value the verdict used (family-wise adjusted where a correction applies)"},
        "bound": {"Description": "the worst-case value the verdict used (statistic minus its margin), if any"},
        "supported": {"Description": "true only when the claim passed its family-wise test"},
        "exploratory": {"Description": "true for orientation-only statements (never supported)"},
    })
    return {"claims": str(path)}


def write_agreement(inp, table: pd.DataFrame, verdicts: pd.DataFrame) -> dict:
    """The atlas agreement table and one verdict per finding (``desc-atlasagreement``, ``desc-atlasverdicts``)."""
    agreement = write_tsv(table, inp.path("atlases", ".tsv", desc="agreement"))
    write_json(agreement.with_suffix(".json"), {
        "Description": ("For every supported regional claim of every atlas (the primary first, then the sensitivity "
                        "atlases), the regions of each other atlas that overlap it (GM-weighted voxel overlap) and "
                        "whether they carry a supported claim of the same family and contrast"),
        "holds": {"Description": "true: an overlapping region of the other atlas is supported too; false: none is; "
                                 "empty: the other atlas cannot answer (not tested there, or no overlapping region)"},
    })
    summary = write_tsv(verdicts.reset_index(), inp.path("atlases", ".tsv", desc="verdicts"))
    return {"atlas_agreement": str(agreement), "atlas_verdicts": str(summary)}


def settings_dict(settings) -> dict:
    return dataclasses.asdict(settings)


def _scalars(result: dict) -> dict:
    """The scalar entries of a test result (one row of the tests table)."""
    return {k: v for k, v in (result or {}).items()
            if isinstance(v, (int, float, str, bool, np.generic)) or v is None}


def jsonable(value):
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
