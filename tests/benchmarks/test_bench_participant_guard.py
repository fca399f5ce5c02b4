"""The participant benchmark's CPU regression guard (the benchmark itself takes minutes: make bench)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_participant.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_participant", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(bench, times):
    return {"times": {**times, "total": sum(times.values())}, "ratios": bench.step_ratios(times, "n4")}


def test_ratios_to_n4_cancel_the_machine_speed(bench):
    times = {"reorient": 0.1, "n4": 6.0, "brain_extraction": 18.0, "register": 6.0}
    slow_machine = {k: 3 * v for k, v in times.items()}
    assert bench.step_ratios(times, "n4") == pytest.approx(bench.step_ratios(slow_machine, "n4"))
    assert bench.step_ratios(times, "n4")["brain_extraction"] == pytest.approx(3.0)
    assert "n4" not in bench.step_ratios(times, "n4")


def test_guard_flags_the_denormal_regression_not_the_noise(bench):
    ref = bench.REFERENCE_RATIOS[("default", 2.0)]
    n4 = 6.0
    usual = {"n4": n4, **{step: ratio * n4 * 1.3 for step, ratio in ref.items()}}  # 30 % noise everywhere
    assert bench.guard({("default", 2.0, "IXI012"): _run(bench, usual)}, "n4") == []
    # the Intel run: brain extraction 983 s where N4 took ~6 s (17x the usual share)
    intel = dict(usual, brain_extraction=17 * ref["brain_extraction"] * n4)
    flagged = bench.guard({("default", 2.0, "IXI012"): _run(bench, intel)}, "n4")
    assert len(flagged) == 1 and "brain_extraction" in flagged[0] and "sub-IXI012" in flagged[0]
    # ratios against another reference step are not compared with the N4 table
    assert bench.guard({("default", 2.0, "IXI012"): _run(bench, intel)}, "register") == []


def test_cpu_is_described(bench):
    info = bench.cpu_info()
    assert info["model"] and info["cpus_usable"] >= 1
    assert isinstance(info["flags"], list)
