"""Container recipe and Apptainer definition stay valid and consistent."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from latentbids import __version__

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_dockerfile_passes_hadolint():
    proc = subprocess.run([str(BIN / "hadolint"), str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_conventions():
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^USER 1000", text, re.M), "non-root user"
    assert 'ENTRYPOINT ["/opt/venv/bin/latentbids"]' in text
    for env in ("NIPYPE_NO_ET=1", "OMP_NUM_THREADS=1", "LATENTBIDS_CONTAINER=docker"):
        assert env in text
    assert f'ARG VERSION={__version__}' in text


def test_dockerfile_pins_its_base_and_picks_torch_by_argument():
    text = (REPO / "Dockerfile").read_text()
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.M)
    assert base and re.fullmatch(r"python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}", base.group(1)), "base by digest"
    assert re.findall(r"^FROM (\S+)", text, re.M)[0] == "${BASE_IMAGE}"
    assert re.search(r"^ARG TORCH_VARIANT=cpu$", text, re.M)
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/${TORCH_VARIANT}" in text
    assert "torch.version.cuda" in text, "the build checks that torch is the variant asked for"


def test_dockerignore_sends_only_what_the_build_copies():
    rules = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert rules[0] == "*", "an allowlist: a local .venv, demo_out/ or .cache/ never reaches the builder"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    copied = set(re.findall(r"^COPY (?!--from)(.+) \S+$", (REPO / "Dockerfile").read_text(), re.M))
    sources = {src.rstrip("/") for line in copied for src in line.split()}
    assert sources <= allowed, f"copied but ignored: {sources - allowed}"


def test_singularity_builds_from_a_saved_image_without_a_daemon():
    text = (REPO / "singularity.def").read_text()
    assert re.search(r"^Bootstrap: docker-archive$", text, re.M)
    assert re.search(r"^From: \{\{ ARCHIVE \}\}$", text, re.M)
    assert re.search(rf"^    ARCHIVE=latentbids-{re.escape(__version__)}\.tar$", text, re.M)
    assert "apptainer build --build-arg ARCHIVE=" in text and "apptainer run --nv --cleanenv" in text
    assert "exec /opt/venv/bin/latentbids" in text
    assert "export LATENTBIDS_CONTAINER=apptainer" in text


# The Boutiques descriptors are generated from the parser and tested in tests/cli/test_cli_descriptors.py.
