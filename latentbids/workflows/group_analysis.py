"""Group level, second half: interpret the latent space, write tables, maps and the group report.

:func:`run_group_analysis` runs after :func:`latentbids.workflows.group.run_group_level` has written
the model and the latents; it only reads what that step returns.  Order (METHOD.md sections 4-7):

1. the cohort: labels and contrasts, covariates (global mean GM, TIV, participants.tsv columns),
   regional mean GM of the very maps the network was trained on, optional confound residualisation;
2. projections (PCA and PLS in every fold, fitted on the fold's training subjects; t-SNE and UMAP on
   the reference fold's codes), and PC1 against global GM, TIV and age;
3. per contrast and per fold: LRCP and the full-latent-vector test; across folds: the consensus
   ranking and its stability; once per contrast: SAM on the voxels of every region;
4. SHAP explanations of the held-out reconstruction error from regional GM;
5. the verdicts in words, ``group/<model>/analysis.json`` and the HTML report.

Why within folds: in k-fold mode each fold trains its own network, whose latent units are not the
units of another fold, so latent statistics are computed per fold (every subject encoded by that
fold's model) and only their conclusions are pooled.  Each section is guarded: a failure is logged
with its traceback, named in the report, and turns the exit code to 1, while the other sections and
everything written before still stand.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import traceback
from pathlib import Path

import numpy as np
import pandas as pd

from latentbids.bids.naming import bids_name, entity_label, res_label
from latentbids.errors import UsageError
from latentbids.utils.atomic import save_nifti, write_json, write_text, write_tsv

LOGGER = logging.getLogger("latentbids.workflows.group_analysis")

#: ``--sloppy`` caps (seconds, not minutes, on 2 CPU cores)
SLOPPY = {"n_permutations": 50, "sam_permutations": 20, "shap_permutations": 5, "shap_n_estimators": 100, "sar_resamples": 5}


def effective_settings(config):
    """``config.analysis`` with the ``--sloppy`` caps applied (what is run and recorded)."""
    settings = dataclasses.replace(config.analysis)
    if config.execution.sloppy:
        for key, cap in SLOPPY.items():
            setattr(settings, key, min(int(getattr(settings, key)), cap))
    return settings


def validate_analysis_request(config, records: pd.DataFrame) -> None:
    """Refuse, before any training, an analysis the data cannot support (exit 64 with the fix)."""
    from latentbids.analysis.cohort import DERIVED_CONFOUNDS, plan_contrasts

    ac = config.analysis
    if not ac.enabled:
        return
    column = ac.label_column
    if column not in records.columns:
        if ac.contrasts or column != "group":
            known = ", ".join(c for c in records.columns if c not in ("gm_path", "qc_pass", "qc_fail_reasons"))
            raise UsageError(f"--label-column {column}: participants.tsv has no such column (columns: {known})")
        return
    plan_contrasts(records[column], ac.contrasts, ac.min_per_class)
    lower = {c.lower() for c in records.columns} | set(DERIVED_CONFOUNDS)
    for name in ac.confounds:
        if str(name).lower() not in lower:
            raise UsageError(f"--confounds {name}: not a participants.tsv column nor one of "
                             f"{', '.join(DERIVED_CONFOUNDS)}")
    if str(ac.bound).upper() not in ("G", "GZ", "VC"):
        raise UsageError(f"[analysis] bound = '{ac.bound}': use G, GZ or VC")
    if ac.correction not in ("fdr_bh", "bonferroni", "permutation"):
        raise UsageError(f"[analysis] correction = '{ac.correction}': use fdr_bh, bonferroni or permutation")
    if ac.region_correction not in ("none", "bonferroni"):
        raise UsageError(f"[analysis] region_correction = '{ac.region_correction}': use none or bonferroni")
    if ac.correlation not in ("pearson", "spearman"):
        raise UsageError(f"[analysis] correlation = '{ac.correlation}': use pearson or spearman")


def _read_tiv(records: pd.DataFrame) -> np.ndarray:
    """TIV (ml) from each map's participant-level ``_volumes.json`` (NaN when absent, e.g. ``-d``)."""
    out = []
    for rec in records.itertuples():
        sub = str(rec.participant_id)[4:]
        ses = None if rec.session_id == "n/a" else str(rec.session_id)[4:]
        path = Path(str(rec.gm_path)).parent / bids_name("volumes", ".json", sub=sub, ses=ses)
        try:
            out.append(float(json.loads(path.read_text())["TIV_ml"]))
        except (OSError, KeyError, ValueError, TypeError):
            out.append(np.nan)
    return np.asarray(out)


class _Sections:
    """Runs each analysis section; a failure is logged, recorded and does not stop the others."""

    def __init__(self):
        self.failures: dict[str, str] = {}
        self.skipped: dict[str, str] = {}

    def run(self, name: str, func, *args, **kwargs):
        try:
            return func(*args, **kwargs)
        except UsageError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported, and the exit code becomes 1
            LOGGER.error("Analysis section '%s' failed: %s\n%s", name, exc, traceback.format_exc())
            self.failures[name] = f"{type(exc).__name__}: {exc}"
            return None


def _fold_matrices(fold_latents: pd.DataFrame, records: pd.DataFrame, folds) -> dict:
    """``{fold: (Z, role)}`` with rows in ``records`` order."""
    zcols = [c for c in fold_latents.columns if c.startswith("z") and c[1:].isdigit()]
    keys = list(zip(records["participant_id"], records["session_id"]))
    out = {}
    for fold in folds:
        part = fold_latents[fold_latents["fold"].astype(str) == str(fold)]
        part = part.set_index(["participant_id", "session_id"]).loc[keys]
        out[str(fold)] = (part[zcols].to_numpy(float), part["role"].to_numpy(object))
    return out


class GroupAnalysis:
    """One group-level analysis run: holds the cohort and writes each section's outputs.

    Parameters
    ----------
    config : RunConfig
    records : the group level's records (participant_id, session_id, gm_path, participants.tsv columns)
    group_result : what :func:`latentbids.workflows.group.run_group_level` returned
    atlas : :class:`latentbids.resources.Atlas` (labels table: ``index``, ``name``)
    """

    def __init__(self, config, records: pd.DataFrame, group_result: dict, atlas):
        from latentbids.analysis.cohort import clean_labels, covariate_table, regional_means

        # the group level's own (normalised: sub-/ses- prefixes) records when it returns them
        records = group_result.get("records", records)
        self.config, self.records, self.result, self.atlas = config, records.reset_index(drop=True), group_result, atlas
        self.settings = effective_settings(config)
        self.seed = int(config.execution.random_seed)
        self.sections = _Sections()
        self.model_name = group_result["model_name"]
        out = Path(config.execution.output_dir)
        self.out = out
        self.dir = out / "group" / self.model_name
        self.ent = {"space": group_result["space"], "res": res_label(group_result["resolution"])}
        self.atlas_ent = {"space": group_result["space"], "atlas": atlas.bids_name,
                          "res": res_label(group_result["resolution"])}
        labels_all = atlas.labels
        G, gm_mean = regional_means(group_result["data"], group_result["atlas_box"],
                                    labels_all["index"].to_numpy(), group_result["mask_box"])
        present = np.isfinite(G).all(axis=0)
        self.regions = labels_all[present].reset_index(drop=True)
        self.G = G[:, present]
        self.covariates = covariate_table(self.records, gm_mean, _read_tiv(self.records))
        col = self.settings.label_column
        self.labels = (clean_labels(self.records[col]) if col in self.records
                       else pd.Series([None] * len(self.records), dtype=object))
        self.mode = "fit_all" if config.model.fit_all else "kfold"
        self.folds = [str(f) for f in group_result["folds"]]
        self.reference_fold = self.folds[0]
        self.fold_Z = _fold_matrices(group_result["fold_latents"], self.records, self.folds)
        self.notes: list[str] = []
        self.verdicts: list[str] = []
        self.files: dict[str, str] = {}
        self.report: dict = {}

    # -- helpers -------------------------------------------------------------------------------
    def _path(self, suffix: str, ext: str, atlas: bool = False, **extra) -> Path:
        ent = dict(self.atlas_ent if atlas else self.ent)
        ent.update(extra)
        return self.dir / bids_name(suffix, ext, **ent)

    def _ids(self, rows=None) -> pd.DataFrame:
        ids = self.records[["participant_id", "session_id"]]
        return (ids if rows is None else ids.iloc[rows]).reset_index(drop=True)

    def _confounds(self):
        """(C, names, usable mask): the confound matrix and the rows where it is complete."""
        from latentbids.analysis.cohort import confound_matrix

        C, names = confound_matrix(self.covariates, self.settings.confounds)
        usable = np.isfinite(C).all(axis=1) if C.shape[1] else np.ones(len(self.records), bool)
        return C, names, usable

    def _adjust(self, X: np.ndarray, rows: np.ndarray, C: np.ndarray) -> np.ndarray:
        from latentbids.analysis.stats import residualize

        return residualize(X[rows], C[rows]) if C.shape[1] else X[rows]

    # -- sections --------------------------------------------------------------------------------
    def cohort(self) -> None:
        from latentbids.analysis.cohort import plan_contrasts

        s = self.settings
        self.C, self.confound_names, self.usable = self._confounds()
        if (~self.usable).any():
            self.notes.append(f"{int((~self.usable).sum())} map(s) lack a value of the confounds "
                              f"({', '.join(s.confounds)}) and are left out of the supervised analyses")
        # Subjects, not maps, are the units of every test: a second session would leak through every
        # cross-validation and inflate every n.  The latent tables keep all sessions.
        repeated = self.records["participant_id"].duplicated().to_numpy()
        if repeated.any():
            self.notes.append(
                f"{int(self.records.loc[repeated, 'participant_id'].nunique())} subject(s) have several sessions: "
                "the statistics use each subject's first session (the latent tables keep every session)")
        self.usable = self.usable & ~repeated
        if s.label_column not in self.records.columns:
            self.contrasts = []
            self.notes.append(f"participants.tsv has no '{s.label_column}' column: no contrast, so PLS, "
                              "LRCP, SAM and per-class SHAP are skipped")
        else:
            self.contrasts, notes = plan_contrasts(self.labels[self.usable], s.contrasts, s.min_per_class)
            self.notes += notes
        table = pd.concat([self._ids(), self.covariates[["gm_mean", "tiv"]],
                           pd.DataFrame(self.G, columns=self.regions["name"].tolist())], axis=1)
        self.files["regional_gm"] = str(write_tsv(table, self._path("stats", ".tsv", atlas=True, desc="gm")))

    def projections(self) -> None:
        from latentbids.analysis.projections import pc1_correlations, project_latents

        s = self.settings
        y = np.full(len(self.records), np.nan)
        primary = self.contrasts[0] if self.contrasts else None
        if primary:
            y[(self.labels == primary[0]).to_numpy()] = 0
            y[(self.labels == primary[1]).to_numpy()] = 1
        frames, metas = [], {}
        for fold in self.folds:
            Z, role = self.fold_Z[fold]
            fit_rows = role != "test"
            methods = ("pca", "tsne", "umap", "pls") if fold == self.reference_fold else ("pca", "pls")
            coords, meta = project_latents(
                Z, fit_rows, y, pca_components=s.pca_components, tsne_perplexity=s.tsne_perplexity,
                umap_n_neighbors=s.umap_n_neighbors, umap_min_dist=s.umap_min_dist,
                pls_components=s.pls_components, random_state=self.seed, methods=methods)
            frame = pd.concat([self._ids(), coords.reset_index(drop=True)], axis=1)
            frame.insert(0, "fold", fold)
            frame.insert(3, "role", role)
            frame.insert(4, "label", self.labels.fillna("n/a").to_numpy())
            frames.append(frame)
            metas[fold] = meta
        table = pd.concat(frames, ignore_index=True)
        path = write_tsv(table, self._path("projections", ".tsv"))
        ref = table[table["fold"] == self.reference_fold].reset_index(drop=True)
        cov = self.covariates
        wanted = {"gm_mean": cov["gm_mean"], "tiv": cov["tiv"]}
        for name in ("age", "Age", "AGE"):
            if name in cov.columns:
                wanted["age"] = pd.to_numeric(cov[name], errors="coerce")
                break
        pc1 = None
        if "pca1" in ref and np.isfinite(ref["pca1"]).any():
            pc1 = pc1_correlations(ref["pca1"].to_numpy(float), pd.DataFrame(wanted))
        write_json(path.with_suffix(".json"), {
            "Description": ("Latent projections per fold: PCA and PLS fitted on the fold's training "
                            "subjects (role train/validation) and applied to its held-out ones; t-SNE and "
                            "UMAP only for the reference fold, on all its codes. t-SNE/UMAP distances are "
                            "not evidence: no statistic is computed on them"),
            "ReferenceFold": self.reference_fold,
            "PLSContrast": f"{primary[0]} (0) vs {primary[1]} (1)" if primary else None,
            "RandomSeed": self.seed,
            "Methods": metas,
            "PC1Correlations": None if pc1 is None else pc1.to_dict("records"),
        })
        self.files["projections"] = str(path)
        self.report.update(projections=ref, projections_meta=metas.get(self.reference_fold),
                           pc1_correlations=pc1)
        if pc1 is not None:
            for row in pc1.itertuples():
                if not (np.isfinite(row.r) and abs(row.r) >= 0.5 and row.p < 0.05):
                    continue
                what = {"gm_mean": "global mean GM (overall atrophy)", "tiv": "TIV (head size)",
                        "age": "age"}.get(row.covariate, row.covariate)
                self.verdicts.append(
                    f"PC1 of the latent codes tracks {what} (r = {row.r:.2f}, r^2 = {row.r ** 2:.2f}, n = {row.n}): "
                    "an axis that mostly measures this is a finding about it, not a regional biomarker.")

    def contrast(self, a: str, b: str) -> dict:
        """LRCP and the latent-vector test in every fold, their consensus, and SAM on the voxels."""
        from latentbids.analysis.agnostic import latent_vector_test, sam_regions
        from latentbids.analysis.cohort import contrast_name
        from latentbids.analysis.lrcp import LRCP, consensus, ranking_stability
        from latentbids.analysis.maps import paint_regions

        s, name = self.settings, contrast_name(a, b)
        rows = np.flatnonzero(self.labels.isin([a, b]).to_numpy() & self.usable)
        y = (self.labels.iloc[rows] == b).to_numpy().astype(int)
        if min((y == 0).sum(), (y == 1).sum()) < 2:
            self.notes.append(f"contrast {a} vs {b} skipped: fewer than 2 usable subjects in a class")
            return None
        G = self._adjust(self.G, rows, self.C)
        index = self.regions["index"].to_numpy()
        names = self.regions["name"].tolist()
        assoc, units, regions, tests, summaries, vectors = [], [], [], [], {}, {}
        for fold in self.folds:
            Z = self._adjust(self.fold_Z[fold][0], rows, self.C)
            zcols = [f"z{k}" for k in range(Z.shape[1])]
            est = LRCP(correlation=s.correlation, correction=s.correction, alpha=s.alpha, eta=s.eta,
                       bound=s.bound, n_permutations=s.n_permutations, random_state=self.seed,
                       region_correction=s.region_correction)
            est.fit(Z, G, y, region_index=index, region_names=names, unit_names=zcols,
                    n_confounds=self.C.shape[1])
            score = est.regions_.set_index("region_index")["score"]
            a_df = est.association_.copy()
            a_df["score"] = a_df["region_index"].map(score)
            for df, bucket in ((a_df, assoc), (est.units_.copy(), units), (est.regions_.copy(), regions)):
                df.insert(0, "fold", fold)
                bucket.append(df)
            summaries[fold] = est.summary_
            vectors[fold] = vec = latent_vector_test(Z, y, eta=s.eta, bound=s.bound, n_permutations=s.n_permutations,
                                     random_state=self.seed)
            tests.append({"test": f"latent vector (d = {Z.shape[1]}), linear SVM", "fold": fold, **_scalars(vec)})
            rub = vec.get("rub") or {}
            tests.append({"test": "latent vector, RUB (PAC-Bayes)", "fold": fold, **_scalars(rub)})
        regions_df = pd.concat(regions, ignore_index=True)
        cons = consensus([r for _, r in regions_df.groupby("fold", sort=False)])
        stability = None
        if len(self.folds) > 1:
            stability = ranking_stability(
                {f: r.set_index("region_index")["score"] for f, r in regions_df.groupby("fold", sort=False)},
                top_k=s.top_k)
        # SAM on the voxels of each region (labels only; no latent involved, so no fold)
        data, atlas_box = self.result["data"], self.result["atlas_box"]
        vox = np.flatnonzero(atlas_box.ravel() > 0)
        X = np.stack([np.asarray(data[int(r)], dtype=np.float32).ravel()[vox] for r in rows])
        if self.C.shape[1]:
            X = self._adjust(X, np.arange(len(rows)), self.C[rows]).astype(np.float32, copy=False)
        sam = sam_regions(X, atlas_box.ravel()[vox], y, index, top_voxels=s.sam_top_voxels, eta=s.eta,
                          bound=s.bound, n_permutations=s.sam_permutations, random_state=self.seed)
        # SAM's bound is stated after choosing voxels with the labels; the permutation of that whole
        # pipeline keeps the selection honest, and its max statistic over regions controls the
        # family-wise error of "which regions": a region is confirmed only when both agree.
        sam["confirmed"] = sam["significant"].astype(bool) & (sam["p_fwer"] < s.alpha)
        sam.insert(1, "region", sam["region_index"].map(dict(zip(index, names))))
        # write
        ent = {"desc": name}
        files = {
            "lrcp": write_tsv(pd.concat(assoc, ignore_index=True), self._path("lrcp", ".tsv", True, **ent)),
            "lrcp_units": write_tsv(pd.concat(units, ignore_index=True), self._path("lrcpunits", ".tsv", True, **ent)),
            "lrcp_regions": write_tsv(regions_df, self._path("lrcpregions", ".tsv", True, **ent)),
            "lrcp_consensus": write_tsv(cons, self._path("lrcpconsensus", ".tsv", True, **ent)),
            "sam": write_tsv(sam, self._path("sam", ".tsv", True, **ent)),
            "tests": write_tsv(pd.DataFrame(tests), self._path("agnostic", ".tsv", True, **ent)),
        }
        lrcp_map = paint_regions(cons.set_index("region_index")["mean_score"], self.result["atlas_image"])
        files["lrcp_map"] = save_nifti(lrcp_map, self._path("lrcp", ".nii.gz", True, **ent))
        write_json(files["lrcp_map"].with_name(files["lrcp_map"].name.replace(".nii.gz", ".json")), {
            "Description": f"LRCP score S_j of {a} vs {b}, mean over folds, painted on the atlas",
            "Resolution": f"{self.result['resolution']:g} mm, the network's working grid",
        })
        write_json(files["lrcp"].with_suffix(".json"), {
            "Description": f"LRCP of {a} (0) vs {b} (1): latent unit vs regional GM correlations per fold",
            "n": int(len(rows)), "n_per_class": {a: int((y == 0).sum()), b: int((y == 1).sum())},
            "Confounds": self.confound_names, "Summaries": summaries, "Stability": stability,
            "Parameters": {k: getattr(s, k) for k in ("correlation", "correction", "alpha", "eta", "bound",
                                                       "n_permutations", "top_k", "sam_top_voxels")},
        })
        self.files.update({f"{name}_{k}": str(v) for k, v in files.items()})
        verdicts = _contrast_verdicts(a, b, len(rows), summaries, cons, vectors, sam, stability, s)
        self.verdicts += verdicts
        ref_assoc = assoc[0]
        return {"name": f"{a} vs {b}", "desc": name, "lrcp_regions": cons, "lrcp_association": ref_assoc,
                "units": units[0], "summary": summaries[self.reference_fold], "stability": stability,
                "sam": sam, "latent_vector": vectors[self.reference_fold], "verdicts": verdicts}

    def shap(self) -> None:
        from latentbids.analysis.maps import paint_regions
        from latentbids.analysis.shap_error import explain_error

        s = self.settings
        rows = np.flatnonzero(self.usable)
        latents = self.result["latent_table"]
        e = np.array(latents["error"], dtype=float)  # a copy: the fold offsets are removed in place
        if self.config.model.fit_all:
            self.notes.append("fit-all mode: SHAP explains each subject's training reconstruction error "
                              "(no held-out error exists without k-fold)")
        elif len(self.folds) > 1:
            # each fold is its own network with its own intensity scale: remove the fold offsets so
            # that the surrogate explains differences between subjects, not between networks
            fold = latents["fold"].astype(str).to_numpy()
            for f in np.unique(fold):
                e[fold == f] += e.mean() - e[fold == f].mean()
        target = e[rows, None]
        if self.C.shape[1]:
            from latentbids.analysis.stats import residualize

            target = residualize(target, self.C[rows]) + e[rows].mean()
        G = self._adjust(self.G, rows, self.C)
        classes = self.labels.iloc[rows].to_numpy(object)  # None: pooled model only
        res = explain_error(
            G, target[:, 0], classes, self.regions["index"].to_numpy(), self.regions["name"].tolist(),
            n_estimators=s.shap_n_estimators, max_depth=s.shap_max_depth, learning_rate=s.shap_learning_rate,
            subsample=s.shap_subsample, background=s.shap_background, n_permutations=s.shap_permutations,
            min_r2=s.shap_min_r2, top_k=s.top_k, random_state=self.seed, eta=s.eta, bound=s.bound,
            sar_resamples=s.sar_resamples, n_jobs=max(1, int(self.config.execution.nprocs or 1)))
        ids = self._ids(rows)
        files = {
            "shap_fits": write_tsv(res.fits, self._path("shapfits", ".tsv", True)),
            "shap_importance": write_tsv(res.importance, self._path("shapimportance", ".tsv", True)),
        }
        if res.comparison is not None and len(res.comparison):
            files["shap_comparison"] = write_tsv(res.comparison, self._path("shapcomparison", ".tsv", True))
        long = []
        for model, values in (res.values or {}).items():
            vals = values.copy()
            vals.columns = [str(c) for c in vals.columns]
            pos = np.asarray(vals.index, dtype=int)
            frame = pd.concat([ids.iloc[pos].reset_index(drop=True), vals.reset_index(drop=True)], axis=1)
            frame.insert(0, "model", model)
            long.append(frame)
        if long:
            files["shap_values"] = write_tsv(pd.concat(long, ignore_index=True), self._path("shap", ".tsv", True))
        supported = res.fits[res.fits["supported"].astype(bool)] if len(res.fits) else res.fits
        for model in supported["model"] if len(supported) else []:
            imp = res.importance[res.importance["model"] == model].set_index("region_index")["importance"]
            img = paint_regions(imp, self.result["atlas_image"])
            files[f"shap_map_{model}"] = save_nifti(
                img, self._path("shap", ".nii.gz", True, desc=entity_label(model)))
        write_json(files["shap_fits"].with_suffix(".json"), {
            "Description": ("Surrogate models of the held-out reconstruction error from regional GM; a SHAP map "
                            "is written only for a model whose cross-validated R^2 exceeds shap_min_r2 and its "
                            "permutation null"),
            "Statements": res.statement, "SAR": _jsonable(res.sar),
            "Parameters": {k: getattr(s, k) for k in ("shap_n_estimators", "shap_max_depth", "shap_learning_rate",
                                                       "shap_subsample", "shap_background", "shap_permutations",
                                                       "shap_min_r2")},
        })
        self.files.update({k: str(v) for k, v in files.items()})
        for model, sentence in (res.statement or {}).items():
            self.verdicts.append(f"SHAP ({model}): {sentence}")
        features = pd.DataFrame(G, columns=self.regions["index"].to_numpy())
        self.report["shap"] = {"fits": res.fits, "importance": res.importance, "statements": res.statement,
                               "values": res.values, "features": features, "regions": self.regions,
                               "comparison": res.comparison, "sar": res.sar}

    # -- driver ----------------------------------------------------------------------------------
    def run(self) -> dict:
        sec = self.sections
        self.cohort()
        self.dir.mkdir(parents=True, exist_ok=True)
        sec.run("projections", self.projections)
        contrasts = []
        for a, b in self.contrasts:
            LOGGER.info("Analysis: %s vs %s", a, b)
            got = sec.run(f"contrast {a} vs {b}", self.contrast, a, b)
            if got:
                contrasts.append(got)
        if not self.contrasts:
            sec.skipped["lrcp"] = "no contrast: " + ("; ".join(self.notes) or "fewer than two labels")
        if len(self.records) >= 10:
            sec.run("shap", self.shap)
        else:
            sec.skipped["shap"] = f"{len(self.records)} maps: SHAP needs at least 10"
        for name, why in sec.failures.items():
            self.verdicts.append(f"The {name} analysis failed ({why}); see the log. Nothing it would have "
                                 "written is presented.")
        summary_path = write_json(self.dir / "analysis.json", {
            "Model": self.model_name, "Mode": self.mode,
            "Folds": self.folds, "ReferenceFold": self.reference_fold,
            "LabelColumn": self.settings.label_column,
            "Contrasts": [f"{a}:{b}" for a, b in self.contrasts],
            "Confounds": self.confound_names, "Parameters": dataclasses.asdict(self.settings),
            "RandomSeed": self.seed, "Notes": self.notes, "Skipped": sec.skipped, "Failures": sec.failures,
            "Verdicts": self.verdicts, "Files": {k: _relative(v, self.out) for k, v in self.files.items()},
        })
        report_path = self.out / f"group_{self.model_name}.html"
        sec.run("report", self._write_report, report_path, contrasts)
        return {"analysis_json": summary_path, "report": report_path, "verdicts": self.verdicts,
                "failures": dict(sec.failures), "files": self.files, "contrasts": contrasts}

    def _write_report(self, path: Path, contrasts: list) -> None:
        from latentbids import __version__
        from latentbids.reports.group import build_group_report

        latents = self.result["latent_table"]
        participants = self.records.drop(columns=[c for c in ("gm_path", "qc_fail_reasons") if c in self.records])
        errors = pd.DataFrame({"label": self.labels.fillna("n/a").to_numpy(), "error": latents["error"].to_numpy()})
        ctx = {
            "title": f"latentbids group report: {self.model_name}",
            "model_name": self.model_name, "mode": self.mode,
            "n_subjects": int(self.records["participant_id"].nunique()), "label_column": self.settings.label_column,
            "version": __version__, "run_id": self.config.execution.run_id, "participants": participants,
            "latents": latents, "curves_png": str(self.result.get("curves_png") or ""),
            "contrasts": contrasts, "errors_by_class": errors, "verdicts": self.verdicts,
            "notes": self.notes, "skipped": self.sections.skipped, "failures": self.sections.failures,
            "parameters": dataclasses.asdict(self.settings), **self.report,
        }
        write_text(path, build_group_report(ctx))


def _scalars(result: dict) -> dict:
    """The scalar entries of a test result (what goes in one row of the tests table)."""
    return {k: v for k, v in (result or {}).items() if isinstance(v, (int, float, str, bool, np.generic)) or v is None}


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _relative(path, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _span(values, fmt: str) -> str:
    """``"0.87-0.95"``, or one number when every fold gave the same."""
    lo, hi = format(min(values), fmt), format(max(values), fmt)
    return lo if lo == hi else f"{lo}-{hi}"


def _contrast_verdicts(a, b, n, summaries: dict, cons, vectors: dict, sam, stability, settings) -> list[str]:
    """The statistical verdicts of one contrast, in words, pooled over folds where they differ by fold."""
    out = []
    folds = list(summaries)
    n_folds = len(folds)
    ref = summaries[folds[0]] if folds else {}
    K, J = ref.get("K", 0), ref.get("J", 0)
    chance = ref.get("chance", 0.5)
    eta = settings.eta
    # latent units
    relevant = [summaries[f].get("n_units_relevant", 0) for f in folds]
    relevant_fw = [summaries[f].get("n_units_relevant_fwer", 0) for f in folds]
    per_fold = ", ".join(str(v) for v in relevant)
    out.append(
        f"{a} vs {b} (n = {n}, chance {chance:.2f}): latent units whose worst-case accuracy beats chance, per "
        f"fold: {per_fold} of {K} (each unit tested at eta = {eta:g}, about {eta * K:.1f} per fold expected by "
        f"chance); with Bonferroni over the units: {', '.join(str(v) for v in relevant_fw)}."
        + (" LRCP weights fell back to |AUC - 0.5| in a fold where no unit passed."
           if any(summaries[f].get("weights_rule") == "auc_fallback" for f in folds) else ""))
    # regions
    positive = cons[cons["positive_majority"].astype(bool)] if "positive_majority" in cons else cons.iloc[:0]
    fw = cons[cons["positive_fwer_majority"].astype(bool)] if "positive_fwer_majority" in cons else cons.iloc[:0]
    if len(positive):
        names = ", ".join(positive.sort_values("rank")["region"].astype(str).head(10))
        fw_names = ", ".join(fw.sort_values("rank")["region"].astype(str).head(10)) or "none"
        out.append(
            f"{a} vs {b}: LRCP-positive regions (METHOD's rule, in most of {n_folds} fold(s)): {names}. Each "
            f"region is tested at eta = {eta:g} on its own, so about {eta * J:.1f} of {J} regions pass by chance; "
            f"the family-wise reading (eta / {J}) keeps: {fw_names}.")
    else:
        out.append(f"{a} vs {b}: no region is LRCP-positive in most folds; no regional claim is supported.")
    # the whole latent vector
    vec = [vectors[f] for f in folds if vectors.get(f) and np.isfinite(vectors[f].get("accuracy", np.nan))]
    if vec:
        n_sig = sum(bool(v.get("significant")) for v in vec)
        accs = [v["accuracy"] for v in vec]
        delta = vec[0].get("delta", np.nan)
        rub_p = [((v.get("rub") or {}).get("p_perm")) for v in vec]
        rub_p = [p for p in rub_p if p is not None and np.isfinite(p)]
        rub = f"; RUB permutation p {_span(rub_p, '.3g')}" if rub_p else ""
        out.append(
            f"{a} vs {b}: the whole {vec[0].get('d', K)}-unit latent vector reaches in-sample accuracy "
            f"{_span(accs, '.2f')} across folds; its bound at n = {n} is {delta:.2f}, so it is "
            f"significant (worst case above chance {chance:.2f}) in {n_sig} of {len(vec)} fold(s){rub}.")
    # SAM
    if sam is not None and len(sam) and "significant" in sam:
        k = int(sam["significant"].fillna(False).astype(bool).sum())
        if "p_fwer" not in sam or not np.isfinite(sam["p_fwer"].to_numpy(float)).any():
            out.append(f"{a} vs {b}: SAM passes the bound in {k} of {len(sam)} regions (no permutation null was "
                       "run, and the bound alone is optimistic after choosing voxels with the labels).")
        else:
            confirmed = sam[sam["confirmed"].astype(bool)] if "confirmed" in sam else sam.iloc[:0]
            names = ", ".join(confirmed.sort_values("acc_star", ascending=False)["region"].astype(str).head(8))
            out.append(f"{a} vs {b}: SAM passes the bound in {k} of {len(sam)} regions; {len(confirmed)} of them "
                       "also beat the family-wise permutation null of the voxel selection"
                       + (f" ({names})." if names else "."))
    # stability
    if stability and stability.get("reason") is None:
        tau, overlap = stability.get("kendall_tau"), stability.get("top_k_overlap")
        if tau is not None and np.isfinite(tau):
            out.append(f"{a} vs {b}: LRCP scores across folds agree with Kendall tau {tau:.2f} and top-"
                       f"{stability.get('top_k')} overlap {overlap:.2f} (over regions scoring above 0).")
    return out


def run_group_analysis(config, records: pd.DataFrame, group_result: dict, atlas) -> dict:
    """Interpret the latent space of a finished group-level training (see the module docstring)."""
    if not config.analysis.enabled:
        LOGGER.info("Latent-space analysis skipped (--skip-analysis)")
        return {"skipped": True, "failures": {}}
    return GroupAnalysis(config, records, group_result, atlas).run()
