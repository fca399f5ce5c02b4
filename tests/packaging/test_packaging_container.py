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
    for env in ("NIPYPE_NO_ET=1", "OMP_NUM_THREADS=1"):
        assert env in text
    assert f'ARG VERSION={__version__}' in text


def test_singularity_derives_from_the_image():
    text = (REPO / "singularity.def").read_text()
    assert re.search(r"^Bootstrap: docker", text, re.M)
    assert f"From: latentbids/latentbids:{__version__}" in text
    assert "/opt/venv/bin/latentbids" in text


# The Boutiques descriptors are generated from the parser and tested in tests/cli/test_cli_descriptors.py.
