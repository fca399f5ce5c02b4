"""The group HTML report on synthetic analysis results: every section rendered, user text escaped,
figures embedded, and missing or failing parts said in words instead of raising."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd

from latentbids.reports.group import format as report_format
from latentbids.reports.group import page as report_page
from latentbids.reports.group import (
    SECTIONS,
    _r_tilde,
    _region_order,
    _table,
    build_group_report,
    error_by_class_figure,
    lrcp_bar_figure,
    lrcp_heatmap_figure,
    projection_figure,
    shap_beeswarm_figure,
)

EVIL = "<script>alert(1)</script>"
IMG = '<img src="data:image/png;base64,'
VOID = {"meta", "img", "br", "hr", "input", "link", "col", "area", "base", "source", "wbr"}
N, K, J = 40, 8, 20
LABELS = np.array(["CN"] * 16 + ["AD"] * 14 + [EVIL] * 10)
REGIONS = [f"Region_{j}" for j in range(J)]


class _Checker(HTMLParser):
    """Fails on mismatched or unclosed tags (html.parser itself never raises)."""

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.imgs = [], [], 0

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            src = dict(attrs).get("src", "")
            assert src.startswith("data:image/png;base64,")
            assert base64.b64decode(src.split(",", 1)[1])[:4] == b"\x89PNG"
            self.imgs += 1
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def _check_html(text: str) -> int:
    parser = _Checker()
    parser.feed(text)
    parser.close()
    assert parser.errors == [], parser.errors[:5]
    assert parser.stack == [], parser.stack
    return parser.imgs


def _sections(text: str) -> dict:
    found = dict(re.findall(r"<section id='(\w+)'>(.*?)</section>", text, flags=re.S))
    assert list(found) == [sid for sid, _ in SECTIONS]
    return found


def _contrast(rng, name, k=K, j=J):
    units = [f"z{i}" for i in range(k)]
    assoc = pd.DataFrame(
        [(jj, REGIONS[jj], u) for jj in range(j) for u in units],
        columns=["region_index", "region", "unit"],
    )
    assoc["r"] = rng.uniform(-0.6, 0.6, len(assoc))
    assoc["p"] = rng.uniform(0, 1, len(assoc))
    assoc["p_adj"] = np.minimum(assoc["p"] * 2, 1)
    assoc["significant"] = assoc["p_adj"] < 0.3
    score = rng.uniform(0, 1, j)
    rank = np.argsort(np.argsort(-score)) + 1
    regions = pd.DataFrame(
        {
            "region_index": range(j),
            "region": REGIONS[:j],
            "mean_score": score,
            "n_positive": rng.integers(0, 6, j),
            "positive_majority": score > 0.6,
            "rank": rank,
        }
    )
    acc = rng.uniform(0.55, 0.8, k)
    unit_df = pd.DataFrame(
        {
            "unit": units,
            "accuracy": acc,
            "delta": 0.215,
            "acc_star": acc - 0.215,
            "relevant": acc - 0.215 > 0.5,
            "auc": rng.uniform(0.4, 0.9, k),
            "cohens_d": rng.normal(0, 1, k),
            "cv_accuracy": rng.uniform(0.4, 0.8, k),
            "weight": np.full(k, 1 / k),
        }
    )
    sam_acc = rng.uniform(0.6, 0.8, j)
    sam = pd.DataFrame(
        {
            "region_index": range(j),
            "n_voxels": 50,
            "accuracy": sam_acc,
            "delta": 0.215,
            "acc_star": sam_acc - 0.215,
            "significant": sam_acc - 0.215 > 0.5,
            "z": rng.normal(0, 1, j),
            "p_z": rng.uniform(0, 1, j),
        }
    )
    return {
        "name": name,
        "lrcp_regions": regions,
        "lrcp_association": assoc,
        "units": unit_df,
        "summary": {
            "n": 30,
            "K": k,
            "J": j,
            "delta": 0.215,
            "weights_rule": "auc_fallback",
            "statement": f"No latent unit is clinically relevant for {name} at n = 30.",
        },
        "stability": {"kendall_tau": 0.41, "top_k_overlap": 0.6, "n_folds": 5},
        "sam": sam,
        "latent_vector": {
            "n": 30,
            "d": k,
            "accuracy": 0.9,
            "delta": 0.52,
            "acc_star": 0.38,
            "significant": False,
            "rub": {
                "n": 30,
                "d": k,
                "accuracy": 0.93,
                "delta": 0.2,
                "acc_star": 0.73,
                "significant": True,
                "p_perm": 0.0099,
            },
        },
        "verdicts": [f"{name}: the full latent vector is not significant."],
    }


def _full_ctx(tmp_path):
    rng = np.random.default_rng(1)
    pids = [f"sub-{i:03d}" for i in range(N)]
    participants = pd.DataFrame(
        {
            "participant_id": pids,
            "group": LABELS,
            "age": rng.uniform(55, 85, N).round(1),
            "sex": rng.choice(["F", "M"], N),
        }
    )
    latents = pd.DataFrame(
        {
            "participant_id": pids,
            "session_id": "n/a",
            "fold": [f"fold-{i % 5}" for i in range(N)],
            "in_training": [i < 4 for i in range(N)],
        }
    )
    for k in range(K):
        latents[f"z{k}"] = rng.normal(size=N)
    latents["error"] = rng.gamma(4, 0.003, N)
    proj = latents[["participant_id", "session_id", "fold"]].copy()
    for col in ("pca1", "pca2", "pca3", "tsne1", "tsne2", "umap1", "umap2", "pls1", "pls2"):
        proj[col] = rng.normal(size=N)
    curves = tmp_path / "curves.png"
    fig = report_format._new_figure(2, 2)
    fig.subplots().plot([3, 2, 1])
    curves.write_bytes(base64.b64decode(report_format._png(fig)))
    G = pd.DataFrame(rng.normal(0.5, 0.1, (N, J)), columns=range(J))
    cn_rows = np.nonzero(LABELS == "CN")[0]
    values = {
        "pooled": pd.DataFrame(rng.normal(0, 1e-3, (N, J)), columns=range(J)),
        "CN": pd.DataFrame(rng.normal(0, 1e-3, (len(cn_rows), J)), columns=range(J), index=cn_rows),
    }
    importance = pd.concat(
        [
            pd.DataFrame(
                {
                    "model": m,
                    "region_index": range(J),
                    "region": REGIONS,
                    "importance": v.abs().mean().to_numpy(),
                    "rank": v.abs().mean().rank(ascending=False).to_numpy(),
                }
            )
            for m, v in values.items()
        ],
        ignore_index=True,
    )
    fits = pd.DataFrame(
        {
            "model": ["pooled", "CN"],
            "n": [N, len(cn_rows)],
            "cv_r2": [0.31, -0.2],
            "cv_mae": [0.002, 0.003],
            "cv_r2_ridge": [0.2, -0.1],
            "cv_mae_ridge": [0.002, 0.003],
            "mae_mean_predictor": [0.003, 0.003],
            "p_perm": [0.01, 0.6],
            "supported": [True, False],
        }
    )
    return {
        "title": "latentbids group report: synthetic",
        "model_name": "ae-small",
        "mode": "kfold",
        "n_subjects": N,
        "label_column": "group",
        "version": "0.1.0",
        "run_id": "20250101-abc",
        "parameters": {"eta": 0.05, "bound": "G", "n_permutations": 1000, "random_state": 42},
        "participants": participants,
        "latents": latents,
        "curves_png": str(curves),
        "projections": proj,
        "projections_meta": {
            "pca": {"explained_variance_ratio": [0.31, 0.2, 0.1], "random_state": 42},
            "tsne": {"perplexity": 13, "random_state": 42},
        },
        "pc1_correlations": pd.DataFrame(
            {
                "covariate": ["global_gm", "tiv", "age"],
                "n": N,
                "r": [0.72, 0.1, -0.2],
                "p": [1.2e-7, 0.5, 0.2],
            }
        ),
        "contrasts": [_contrast(rng, "CN vs AD"), _contrast(rng, f"CN vs {EVIL}")],
        "shap": {
            "fits": fits,
            "importance": importance,
            "statements": {
                "pooled": "The pooled surrogate fits (CV R^2 = 0.31).",
                "CN": "No SHAP claim is supported for CN: the surrogate does not fit.",
            },
            "values": values,
            "features": G,
            "regions": pd.DataFrame({"index": range(J), "name": REGIONS}),
            "sar": {"n": N, "d": 5, "l_emp": 0.31, "delta": 0.2, "gamma": 0.62, "significant": True,
                    "power": 0.8, "p": 0.012},
        },
        "notes": ["3 maps failed QC and were left out."],
        "errors_by_class": pd.DataFrame({"label": LABELS, "error": latents["error"]}),
        "verdicts": [
            "No latent unit is clinically relevant at n = 40.",
            f"Group {EVIL} differs in error.",
        ],
    }


def test_full_report_has_every_section_escaped_and_all_figures(tmp_path):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    text = build_group_report(_full_ctx(tmp_path))
    assert plt.get_fignums() == before  # no figure left open
    assert (
        _check_html(text) == 9
    )  # curves, projections, 2x(heat map + bars), 2 beeswarms, error box plot
    assert text.count(IMG) == 9
    for _, name in SECTIONS:
        assert f"<h2>{name.replace('&', '&amp;')}</h2>" in text
    sec = _sections(text)
    # verdicts first, escaped
    assert text.index("No latent unit is clinically relevant at n = 40.") < text.index(
        "<h2>Data</h2>"
    )
    assert "Group &lt;script&gt;alert(1)&lt;/script&gt; differs in error." in sec["summary"]
    assert "<script>" not in text
    assert "CN vs &lt;script&gt;" in sec["lrcp"] and "CN vs &lt;script&gt;" in sec["agnostic"]
    assert text.count('alt="LRCP heat map') == 2 and text.count('alt="SHAP beeswarm') == 2
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in sec["data"]  # label in the cohort table
    # nothing missing in a full context, nothing failed
    assert "not computed" not in text and "failed to render" not in text
    # statements and warnings in words
    assert "weights fell back to |AUC - 0.5|" in sec["lrcp"]
    assert "PC1 tracks global_gm" in sec["projections"]
    assert "not a finding" in sec["shap"] and "No SHAP claim is supported for CN" in sec["shap"]
    assert "kendall_tau = 0.410" in sec["lrcp"]
    assert "3 maps failed QC and were left out." in sec["summary"]
    assert "<td>significant</td>" in sec["shap"]  # SAR verdict in words
    # agnostic tests: the latent vector fails the G bound, RUB passes, verdicts as words
    agn = sec["agnostic"]
    assert "full latent vector, bound G" in agn and "full latent vector, RUB (PAC-Bayes)" in agn
    assert "not significant at eta=0.05" in agn and "<td>significant</td>" in agn
    assert re.search(r"<th>acc\*</th>", agn) and "<th>Delta</th>" in agn
    assert (
        "<td>0.380</td>" in agn and "<td>0.0099</td>" in agn
    )  # 3 decimals; p-values 3 significant digits
    # long tables are cut with a note
    assert "Showing the first 20 of" not in sec["lrcp"]  # 20 regions fit exactly
    assert "latent units are not aligned across folds" in sec["methods"]
    assert "distances and clusters are not evidence" in sec["methods"]


def test_empty_context_says_not_computed_everywhere():
    text = build_group_report({"title": "Empty <run>"})
    assert _check_html(text) == 0
    assert "<h1>Empty &lt;run&gt;</h1>" in text
    for sid, body in _sections(text).items():
        assert "not computed" in body, sid
    assert build_group_report(None).startswith("<!DOCTYPE html>")
    assert "<h2>Summary</h2>" in build_group_report({})


def test_one_label_cohort_renders_without_pls_or_lrcp_and_says_why(tmp_path):
    ctx = _full_ctx(tmp_path)
    ctx["participants"]["group"] = "CN"
    for key in ("contrasts", "shap", "errors_by_class", "verdicts", "curves_png"):
        ctx.pop(key)
    ctx["projections"] = ctx["projections"].drop(columns=["pls1", "pls2"])
    ctx["projections_meta"]["pls"] = {"skipped": "fewer than 2 classes in column 'group'"}
    text = build_group_report(ctx)
    sec = _sections(text)
    assert _check_html(text) == 2  # projections + error by class derived from the latent table
    assert (
        "PLS not computed: fewer than 2 classes in column &#x27;group&#x27;" in sec["projections"]
    )
    assert "LRCP not computed: only one label (CN) in column &#x27;group&#x27;" in sec["lrcp"]
    assert "only one label (CN)" in sec["agnostic"]
    assert 'alt="LRCP' not in text and 'alt="latent projections"' in text
    assert "Derived from the latent table" in sec["errors"]
    # without a meta reason the PLS reason is inferred from the labels
    ctx["projections_meta"].pop("pls")
    sec = _sections(build_group_report(ctx))
    assert "PLS not computed: only one label (CN)" in sec["projections"]
    # the orchestrator's own reason wins
    ctx["skipped"] = {"lrcp": "label column has one value"}
    ctx.pop("projections")
    sec = _sections(build_group_report(ctx))
    assert "LRCP not computed: label column has one value" in sec["lrcp"]
    assert "lrcp: label column has one value" in sec["summary"]


def test_broken_inputs_are_flagged_not_raised(tmp_path, monkeypatch):
    ctx = _full_ctx(tmp_path)
    ctx["curves_png"] = str(tmp_path / "missing.png")
    ctx["projections"] = "not a table"
    ctx["latents"] = pd.DataFrame()
    ctx["contrasts"][0]["lrcp_association"] = pd.DataFrame({"x": [1, 2]})  # wrong columns
    ctx["contrasts"][1]["units"] = None
    ctx["shap"]["values"] = {"pooled": pd.DataFrame({"a": ["x", "y"]})}  # non-numeric
    ctx["pc1_correlations"] = pd.DataFrame()
    ctx["failures"] = {"projections": "ValueError: planted projection error"}
    ctx["shap"]["sar"] = None
    ctx["shap"]["sar_reason"] = "the pooled surrogate does not fit"

    def boom(*args, **kwargs):
        raise RuntimeError("planted failure")

    monkeypatch.setattr(report_page, "error_by_class_figure", boom)
    text = build_group_report(ctx)
    _check_html(text)
    sec = _sections(text)
    assert "training-curves file not found" in sec["training"]
    failed = "Projections not computed: the analysis failed (ValueError: planted"
    assert failed in sec["projections"]
    assert "Failed in this run" in sec["summary"] and "planted projection error" in sec["summary"]
    assert "SAR check not computed: the pooled surrogate does not fit" in sec["shap"]
    assert "PC1 correlations not computed" in sec["projections"]
    assert "Figure &#x27;LRCP heat map CN vs AD&#x27; not computed" in sec["lrcp"]
    assert "Figure &#x27;SHAP beeswarm pooled&#x27; not computed" in sec["shap"]
    # a failing figure is said in red, in its section and in the summary
    assert "planted failure" in sec["errors"] and "class='fail'" in sec["errors"]
    assert (
        "Problems while building this report" in sec["summary"]
        and "planted failure" in sec["summary"]
    )


def test_r_tilde_and_region_order():
    assoc = pd.DataFrame({"r": [0.5, -0.4, 0.2], "significant": [True, "True", False]})
    assert _r_tilde(assoc).tolist() == [0.5, -0.4, 0.0]
    regions = pd.DataFrame({"region_index": [7, 3.0, 5], "rank": [2, 1, 3]})
    assert _region_order(regions, "region_index") == ["3", "7", "5"]
    regions = pd.DataFrame({"region_index": [7, 3, 5], "score": [0.1, 0.3, 0.2]})
    assert _region_order(regions, "region_index") == ["3", "5", "7"]


def test_table_rounds_escapes_and_truncates():
    df = pd.DataFrame(
        {
            "name": [EVIL] + [f"r{i}" for i in range(34)],
            "acc": np.linspace(0.5, 1.0, 35),
            "p_adj": np.full(35, 1.23456e-5),
            "significant": True,
            "importance": 2.34e-4,
        }
    )
    out = _table(df)
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert "<td>0.500</td>" in out and "<td>1.23e-05</td>" in out and "<td>yes</td>" in out
    assert "<td>0.000234</td>" in out  # small values keep 3 significant digits, not 0.000
    assert out.count("<tr") == 21  # header + 20 rows
    assert "Showing the first 20 of 35 rows (15 more" in out


def test_figures_return_png_or_none():
    rng = np.random.default_rng(0)
    assert projection_figure(None) is None and projection_figure(pd.DataFrame({"x": [1]})) is None
    assert lrcp_heatmap_figure(pd.DataFrame()) is None and lrcp_bar_figure(None) is None
    assert (
        shap_beeswarm_figure(None) is None
        and error_by_class_figure(pd.DataFrame({"label": ["a"]})) is None
    )
    # one PLS component, age only, unknown labels: still a figure
    proj = pd.DataFrame(
        {
            "pls1": rng.normal(size=10),
            "age": np.r_[np.nan, rng.uniform(50, 80, 9)],
            "role": ["test"] * 5 + ["train"] * 5,
        }
    )
    png = projection_figure(proj, label_column="group")
    assert base64.b64decode(png)[:4] == b"\x89PNG"
    # all-zero r-tilde still draws (titled as such), beeswarm without features draws in grey
    assoc = pd.DataFrame(
        {
            "region": ["a", "a", "b", "b"],
            "unit": [0, 1, 0, 1],
            "r": [0.1, 0.2, 0.3, 0.4],
            "significant": False,
        }
    )
    assert base64.b64decode(lrcp_heatmap_figure(assoc))[:4] == b"\x89PNG"
    vals = pd.DataFrame(rng.normal(size=(12, 3)), columns=["a", "b", "c"])
    assert base64.b64decode(shap_beeswarm_figure(vals, None, top_n=2))[:4] == b"\x89PNG"
    assert shap_beeswarm_figure(vals.iloc[:0]) is None
