"""Container recipe, Apptainer definition and Boutiques descriptors stay valid and consistent."""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from latentbids import __version__
from latentbids.cli.parser import build_parser

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_dockerfile_passes_hadolint():
    proc = subprocess.run([str(BIN / "hadolint"), str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_conventions():
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^USER 1000", text, re.M), "non-root user"
    assert 'ENTRYPOINT ["/opt/venv/bin/latentbids"]' in text
    for env in ("NIPYPE_NO_ET=1", "OMP_NUM_THREADS=1"):
        assert env in text
    assert f'ARG VERSION={__version__}' in text


def test_singularity_derives_from_the_image():
    text = (REPO / "singularity.def").read_text()
    assert re.search(r"^Bootstrap: docker", text, re.M)
    assert f"From: latentbids/latentbids:{__version__}" in text
    assert "/opt/venv/bin/latentbids" in text


@pytest.mark.parametrize("name", ["latentbids.json", "latentbids-gpu.json"])
def test_descriptor_validates_and_matches_cli(name, tmp_path):
    path = REPO / "descriptors" / name
    proc = subprocess.run([str(BIN / "bosh"), "validate", "--bids", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    desc = json.loads(path.read_text())
    assert desc["tool-version"] == __version__
    assert desc["container-image"]["image"].endswith(f":{__version__}")
    invocation = tmp_path / "inv.json"
    invocation.write_text(json.dumps({
        "bids_dir": "/data", "output_dir_name": "/out", "analysis_level": "participant",
        "participant_label": ["01", "02"], "skip_bids_validation": True, "nprocs": 2, "mem": "8GB",
    }))
    proc = subprocess.run([str(BIN / "bosh"), "exec", "simulate", str(path), "-i", str(invocation)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    command = proc.stdout.strip().splitlines()[-1].split(";", 1)[1]
    argv = shlex.split(command)
    assert argv[0] == "/opt/venv/bin/latentbids"
    args = build_parser().parse_args(argv[1:])  # every flag the descriptor emits is one the CLI knows
    assert args.participant_label == ["01", "02"] and args.nprocs == 2 and args.mem_gb == 8
    if "gpu" in name:
        assert args.device == "cuda"
    # the group-level analysis options too
    invocation.write_text(json.dumps({
        "bids_dir": "/data", "output_dir_name": "/out", "analysis_level": "group", "label_column": "dx",
        "contrast": ["CN:AD", "CN:MCI"], "confounds": ["age", "tiv"], "skip_analysis": False,
    }))
    proc = subprocess.run([str(BIN / "bosh"), "exec", "simulate", str(path), "-i", str(invocation)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    argv = shlex.split(proc.stdout.strip().splitlines()[-1].split(";", 1)[1])
    args = build_parser().parse_args(argv[1:])
    assert args.contrasts == ["CN:AD", "CN:MCI"] and args.confounds == ["age", "tiv"]
    assert args.label_column == "dx" and "analysis_enabled" not in vars(args)
