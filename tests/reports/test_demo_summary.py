"""The demo's printed summary (scripts/demo_summary.py): the headline, then one line per claim family
that says how many items were tested and supported, so a reader sees every part of the report, the
silent ones included."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "demo_summary.py"


def _summary_module():
    spec = importlib.util.spec_from_file_location("demo_summary", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _claim(family, item, supported, contrast="CN vs AD", exploratory=False, fold=""):
    return {"contrast": contrast, "family": family, "item": item, "supported": supported,
            "exploratory": exploratory, "fold": fold}


def test_every_family_gets_a_line_with_its_count_and_exploratory_claims_are_not_counted(tmp_path):
    out = tmp_path / "derivatives"
    (out / "group" / "ae-K16").mkdir(parents=True)
    claims = [_claim("region", f"R{i}", i < 2) for i in range(5)]
    claims += [_claim("lrcp", "R0", True, exploratory=True), _claim("lrcp", "R1", False)]
    claims += [_claim("unit", f"z{i}", True, fold=str(f)) for f in (1, 2) for i in range(5)]
    claims += [_claim("pc1", "gm_mean", False, contrast="")]
    (out / "group" / "ae-K16" / "analysis.json").write_text(json.dumps({"Headline": "H.", "Claims": claims}))
    (out / "group_ae-K16.html").write_text("<html></html>")
    lines = _summary_module().summarize("planted", out)
    assert lines[0] == "planted: H."
    text = "\n".join(lines)
    assert "CN vs AD: regions whose mean GM separates the classes: 2 of 5 supported (R0, R1)" in text
    lrcp = "LRCP-positive regions (the latent space encodes them and they separate the classes)"
    assert f"{lrcp}: 0 of 2 supported" in text
    assert "10 of 10 supported (fold 1 z0, fold 1 z1, fold 1 z2, fold 1 z3, fold 1 z4, fold 2 z0 and 4 more)" in text
    assert "global measure: 0 of 1 supported" in text and "CN vs AD: the first" not in text
    assert lines[-1].endswith("group_ae-K16.html")


def test_a_run_without_analysis_says_so_and_a_bad_call_is_a_usage_error(tmp_path, capsys):
    module = _summary_module()
    assert "the group level did not finish" in module.summarize("null", tmp_path)[0]
    assert module.main(["only-one-argument"]) == 64
    assert "Usage" in capsys.readouterr().err
