"""Boutiques descriptors: generated from the parser (drift fails here), valid for ``bosh validate`` and its
``--bids`` check, both analysis levels run through ``bosh exec simulate`` and parsed by the real CLI, GPU options
reach Docker and Singularity."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import latentbids.errors as errors
from latentbids import __version__
from latentbids.cli.descriptors import build_descriptor
from latentbids.cli.descriptors import main as descriptors_main
from latentbids.cli.parser import OPTION_TO_CONFIG, build_parser, default_text, parse_args

REPO = Path(__file__).resolve().parents[2]
BOSH = Path(sys.executable).parent / "bosh"
NAMES = ("latentbids.json", "latentbids-gpu.json")
#: A valid value for every input of the descriptor (ids absent here get a generic one by type).
VALUES = {"contrast": ["CN:AD", "CN:MCI"], "device": "cpu", "output_spaces": ["MNI152NLin2009aSym:res-nilearn2"],
          "mem": "8GB", "derivatives": ["smriprep=/data/smriprep"], "participant_label": ["01", "02"],
          "session_label": ["1"], "confounds": ["age", "tiv"], "atlas": ["AAL", "AAL3"], "label_column": "dx",
          "random_seed": 7}


def simulate(descriptor: Path, invocation: dict, tmp_path: Path) -> list[str]:
    """The argv bosh would run (after the 'mkdir -p ...;' prefix), split as the shell would."""
    inv = tmp_path / "inv.json"
    inv.write_text(json.dumps(invocation))
    proc = subprocess.run([str(BOSH), "exec", "simulate", str(descriptor), "-i", str(inv)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    command = proc.stdout.strip().splitlines()[-1]
    mkdir, _, run = command.partition("; ")
    assert mkdir.startswith("mkdir -p")
    argv = shlex.split(run)
    assert argv[0] == "/opt/venv/bin/latentbids"
    return argv[1:]


def test_descriptors_are_what_the_parser_generates():
    assert descriptors_main(["--check"]) == 0, "run 'python -m latentbids.cli.descriptors' and commit the result"


@pytest.mark.parametrize("name", NAMES)
def test_descriptor_validates_and_describes_every_option(name):
    path = REPO / "descriptors" / name
    proc = subprocess.run([str(BOSH), "validate", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    desc = json.loads(path.read_text())
    gpu = "gpu" in name
    assert desc["tool-version"] == __version__
    assert desc["container-image"]["image"] == f"latentbids/latentbids:{__version__}" + ("-cuda" if gpu else "")
    assert desc["custom"]["BIDSAppSpecVersion"]
    codes = {c["code"] for c in desc["error-codes"]}
    assert codes == {v for k, v in vars(errors).items() if k.startswith("EXIT_") and v != 0}
    inputs = {i["id"]: i for i in desc["inputs"]}
    parser = build_parser()
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help", "version") or (gpu and action.dest == "device"):
            continue
        flag = next(s for s in action.option_strings if s.startswith("--"))
        entry = inputs[flag.lstrip("-").replace("-", "_")]
        assert entry["command-line-flag"] == flag and entry["type"] in ("Flag", "Number", "String", "File")
        if action.dest in OPTION_TO_CONFIG and default_text(action.dest):
            assert f"(default: {default_text(action.dest)})" in entry["description"], entry["id"]
        assert "default-value" not in entry  # bosh would pass it and override a --config-file
    assert inputs["latent_dim"]["integer"] and inputs["latent_dim"]["minimum"] == 1
    assert inputs["contrast"]["list"] and inputs["config_file"]["type"] == "File"


@pytest.mark.parametrize("name", NAMES)
def test_both_bids_app_routes_reach_the_real_cli(name, tmp_path):
    path = REPO / "descriptors" / name
    gpu = "gpu" in name
    argv = simulate(path, {"bids_dir": "/data", "output_dir_name": "/out", "analysis_level": "participant",
                           "participant_label": ["01", "02"], "skip_bids_validation": True, "nprocs": 2,
                           "mem_mb": "16000"}, tmp_path)
    args = parse_args(argv)
    assert (args.bids_dir, args.output_dir, args.analysis_level) == ("/data", "/out", "participant")
    assert args.participant_label == ["01", "02"] and args.nprocs == 2 and args.mem_gb == 16
    assert getattr(args, "device", None) == ("cuda" if gpu else None)
    # the group level names the participant-level folder, alone or with the same folder as a File (mounted)
    for extra in ({}, {"participant_level_analysis_dir": "/out"}):
        argv = simulate(path, {"bids_dir": "/data", "output_dir_name": "/out", "analysis_level": "group",
                               "contrast": ["CN:AD"], "label_column": "dx", **extra}, tmp_path)
        args = parse_args(argv)
        assert (args.bids_dir, args.output_dir, args.analysis_level) == ("/data", "/out", "group")
        assert args.contrasts == ["CN:AD"] and args.label_column == "dx"
    # the File input alone is refused by bosh, not turned into a command without output_dir (bosh 0.5.33 drops
    # the shared [OUTPUT_DIR] key when the input listed first on it is absent)
    inv = tmp_path / "alone.json"
    inv.write_text(json.dumps({"bids_dir": "/data", "participant_level_analysis_dir": "/out",
                               "analysis_level": "group"}))
    proc = subprocess.run([str(BOSH), "exec", "simulate", str(path), "-i", str(inv)], capture_output=True, text=True)
    assert proc.returncode != 0 and "'output_dir_name' is a required property" in proc.stdout + proc.stderr


@pytest.mark.parametrize("name", NAMES)
def test_descriptor_passes_the_bids_app_check(name):
    """``bosh validate --bids``: boutiques' BIDS-App template (command line, [OUTPUT_DIR] inputs, one output)."""
    proc = subprocess.run([str(BOSH), "validate", "--bids", str(REPO / "descriptors" / name)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "BIDS validation OK" in proc.stdout + proc.stderr


def test_every_input_is_parsed_by_the_cli(tmp_path):
    """All options at once: every flag bosh emits is one the CLI knows, with a value it accepts."""
    desc = build_descriptor(gpu=False)
    invocation = {"bids_dir": "/data", "output_dir_name": "/o u t", "analysis_level": "participant"}
    for entry in desc["inputs"]:
        key = entry["id"]
        if key in invocation or key in ("participant_level_analysis_dir", "mem_mb"):  # exclusive partners
            continue
        value = VALUES.get(key)
        if value is None:
            value = {"Flag": True, "Number": 2}.get(entry["type"], "/x")
            value = [value] if entry.get("list") else value
        invocation[key] = value
    argv = simulate(REPO / "descriptors" / "latentbids.json", invocation, tmp_path)
    given = vars(build_parser().parse_args(argv))
    expected = {a.dest for a in build_parser()._actions if a.option_strings and a.dest not in ("help", "version")}
    assert expected <= set(given), expected - set(given)
    assert given["output_dir"] == "/o u t" and given["contrasts"] == ["CN:AD", "CN:MCI"]


@pytest.mark.parametrize("engine", ["docker", "singularity"])
def test_gpu_descriptor_asks_each_engine_for_the_gpu(engine, tmp_path):
    """``bosh exec launch`` with stub engines on PATH: Docker gets --gpus all, Singularity --nv."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.log"
    for tool in ("docker", "singularity"):
        stub = bin_dir / tool
        stub.write_text(f'#!/bin/sh\necho "{tool} $*" >> {calls}\n'
                        'if [ "$1" = pull ]; then touch "$3"; fi\nexit 0\n')
        stub.chmod(0o755)
    (tmp_path / "inv.json").write_text(json.dumps({"bids_dir": str(tmp_path), "analysis_level": "group",
                                                   "output_dir_name": str(tmp_path),
                                                   "participant_level_analysis_dir": str(tmp_path)}))
    extra = ["--force-singularity", "--container-opts=--nv"] if engine == "singularity" else []
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    descriptor = REPO / "descriptors" / "latentbids-gpu.json"
    proc = subprocess.run([str(BOSH), "exec", "launch", "--skip-data-collection", *extra, str(descriptor),
                           str(tmp_path / "inv.json")], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=120)
    verb = "run" if engine == "docker" else "exec"
    run = [line for line in calls.read_text().splitlines() if line.startswith(f"{engine} {verb} ")]
    assert run, proc.stdout + proc.stderr
    assert ("--gpus all" if engine == "docker" else "--cleanenv") in run[0]
    assert engine == "docker" or " --nv " in run[0]
    image = f"latentbids/latentbids:{__version__}-cuda"  # the CUDA image; Singularity runs its pulled copy
    assert (image if engine == "docker" else image.replace("/", "-").replace(":", "-")) in run[0]
