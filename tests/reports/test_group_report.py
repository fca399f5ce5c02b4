"""The group HTML report, rendered from a real (small) analysis run: every section, user text escaped,
figures embedded, verdicts only from the claims list, and missing or failing parts said in words."""

from __future__ import annotations

import base64
import dataclasses
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "model"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflows"))
from model_testdata import make_cohort, sloppy_config, toy_template  # noqa: E402
from test_group_analysis import octant_atlas  # noqa: E402

from latentbids.analysis.agnostic import sam_claims, sam_regions  # noqa: E402
from latentbids.analysis.claims import ClaimsList  # noqa: E402
from latentbids.reports.group import SECTIONS, GroupReport, build_group_report  # noqa: E402
from latentbids.reports.group import figures as report_figures  # noqa: E402
from latentbids.reports.group.figure_lrcp import (  # noqa: E402
    _r_tilde,
    _region_order,
    lrcp_bar_figure,
    lrcp_heatmap_figure,
)
from latentbids.reports.group.figure_projections import projection_figure  # noqa: E402
from latentbids.reports.group.figures import error_by_class_figure, shap_beeswarm_figure  # noqa: E402
from latentbids.reports.group.format import _table  # noqa: E402
from latentbids.settings import group_settings
from latentbids.workflows.group.analysis.run import run_group_analysis  # noqa: E402
from latentbids.workflows.group.training import train_and_encode  # noqa: E402

torch.set_num_threads(1)
EVIL = "<script>alert(1)</script>"
VOID = {"meta", "img", "br", "hr", "input", "link", "col", "area", "base", "source", "wbr"}


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


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A real analysis: 30 toy subjects, region 1 shrunk in the second class, whose label is hostile."""
    tmp = tmp_path_factory.mktemp("report")
    tpl = toy_template()
    atlas = octant_atlas(tpl)
    rec = make_cohort(tmp / "gm", tpl, n_subjects=30, seed=4, two_sessions=())
    rec["group"] = rec["group"].replace({"AD": EVIL})
    config = sloppy_config(tmp, latent_dim=6)
    result = train_and_encode(group_settings(config), rec, tpl, atlas)
    analysis = run_group_analysis(group_settings(config), result, atlas)
    report = GroupReport(analysis=analysis, participants=rec.drop(columns=["gm_path"]),
                         latents=result.latent_table, curves_png=str(result.curves_png), version="test",
                         run_id="r1")
    return analysis, report, atlas


@pytest.mark.slow
def test_full_report_from_a_real_run(run):
    analysis, report, _ = run
    assert analysis.failures == {}
    text = build_group_report(report)
    assert _check_html(text) >= 6  # curves, projections, heat map, bars, errors, beeswarms
    assert EVIL not in text and "&lt;script&gt;" in text
    sec = _sections(text)
    summary = sec["summary"]
    assert analysis.headline.replace("<", "&lt;").replace(">", "&gt;")[:40] in summary
    for v in analysis.verdicts:
        assert v.split(":")[0].replace("<", "&lt;").replace(">", "&gt;").replace("'", "&#x27;")[:20] in summary
    # the supported-claims table lists exactly the supported claims
    n_supported = len(analysis.claims.select(supported=True))
    if n_supported:
        table = summary.split("Supported claims</h3>", 1)[1].split("</table>", 1)[0]
        assert table.count("<tr>") == n_supported  # body rows (the header row carries a style)
    assert "Region1" in sec["lrcp"] and "Ranking stability across folds" in sec["lrcp"]
    assert "SAM per region" in sec["agnostic"] and "p_z" not in text
    assert "Calibration: measured false-positive rates" in sec["methods"]
    assert "latent units are not aligned across folds" in sec["methods"]
    assert "distances and clusters are not evidence" in sec["methods"]


@pytest.mark.slow
def test_report_decides_nothing_a_null_sam_table_shows_no_supported_region(run):
    """Replace the contrast's SAM by SAM on pure noise (whose bound alone passes most regions): the page
    calls no region supported, and the headline and verdicts name none."""
    analysis, report, atlas = run
    c = analysis.contrasts[0]
    rng = np.random.default_rng(0)
    labels = np.repeat(c.sam["region_index"].to_numpy(), 60)
    y = np.repeat([0, 1], c.n // 2 + 1)[: c.n]
    null = sam_regions(rng.normal(size=(c.n, len(labels))), labels, y, c.sam["region_index"], n_permutations=20)
    null.insert(1, "region", c.sam["region"].to_numpy())
    assert null["passes_bound"].sum() >= 3  # the bound alone is fooled...
    claims = ClaimsList([x for x in analysis.claims if x.family != "sam"] + sam_claims(null, c.name, 20))
    contrast = dataclasses.replace(c, sam=null)
    from latentbids.analysis.headline import headline
    from latentbids.analysis.verdicts import cohort_verdicts, contrast_verdicts

    verdicts = contrast_verdicts(claims, c.name, c.n, c.n_per_class, 0.05) + cohort_verdicts(claims)
    fake = dataclasses.replace(analysis, contrasts=(contrast,), claims=claims, verdicts=tuple(verdicts),
                               headline=headline(claims, [c.name], analysis.n_subjects))
    text = build_group_report(dataclasses.replace(report, analysis=fake))
    agn = _sections(text)["agnostic"]
    assert "SAM per region (0 supported" in agn
    sam_table = agn.split("SAM per region", 1)[1]
    assert "<td>supported</td>" not in sam_table and sam_table.count("<td>not supported</td>") == len(null)
    assert "SAM" not in fake.headline
    assert all("regions are supported by SAM" in v and ": 0 of" in v for v in verdicts if "by SAM" in v)


@pytest.mark.slow
def test_a_failing_figure_or_section_is_said_in_red(run, monkeypatch):
    analysis, report, _ = run

    def boom(*args, **kwargs):
        raise RuntimeError("planted failure")

    monkeypatch.setattr(report_figures, "error_by_class_figure", boom)
    import latentbids.reports.group.sections_data as sections_data

    monkeypatch.setattr(sections_data, "error_by_class_figure", boom)
    broken = dataclasses.replace(report, curves_png=str(Path("/nonexistent/curves.png")))
    text = build_group_report(broken)
    _check_html(text)
    sec = _sections(text)
    assert "planted failure" in sec["errors"] and "class='fail'" in sec["errors"]
    assert "Problems while building this report" in sec["summary"] and "planted failure" in sec["summary"]
    assert "Training curves not computed" in sec["training"]


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
    # the bars are green only for the regions named as supported claims, whatever the table says
    cons = pd.DataFrame({"region_index": [1, 2], "region": ["a", "b"], "mean_score": [0.5, 0.2], "rank": [1, 2],
                         "lrcp_positive": [True, True]})
    assert base64.b64decode(lrcp_bar_figure(cons, positive_names=set(), exploratory=True))[:4] == b"\x89PNG"
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
