"""One constraints file pins every install: the image, ``make venv``/``make test`` and the docs.

The image test (test_container_image.py) checks the image's packages against the same file.
"""
from __future__ import annotations

import configparser
import re
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
PINS_FILE = "constraints/pins.txt"


def read_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / PINS_FILE).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and version and not re.search(r"[<>~!,;]", version), f"not an exact pin: {line!r}"
        assert canonicalize_name(name) not in pins, f"pinned twice: {name}"
        pins[canonicalize_name(name)] = version
    return pins


def declared_requirements() -> list[Requirement]:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    lines = cfg["options"]["install_requires"].splitlines() + cfg["options.extras_require"]["test"].splitlines()
    return [Requirement(line) for line in lines if line.strip()]


def test_every_declared_dependency_is_pinned_within_its_range():
    pins = read_pins()
    for req in declared_requirements():
        if req.marker is not None and not req.marker.evaluate():
            continue
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is in setup.cfg but not in {PINS_FILE}: add the version you tested"
        assert Version(pins[name]) in req.specifier, f"{PINS_FILE} pins {req.name}=={pins[name]}, outside {req}"


def test_torch_pin_has_no_local_label():
    """``torch==2.13.0`` matches the CPU and the CUDA builds; a ``+cpu`` pin would break the CUDA image."""
    assert read_pins()["torch"] == "2.13.0"


def test_this_environment_has_the_pinned_versions():
    """The environment the tests run in was installed with the pins (make venv)."""
    off = {}
    for name, version in read_pins().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # e.g. a test tool of another platform; the declared ones are checked above
        if Version(installed).public != Version(version).public:
            off[name] = (installed, version)
    assert not off, f"installed vs {PINS_FILE}: {off}; run make venv (or update the pins)"


def test_image_and_makefile_install_with_the_pins():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert dockerfile.count(f"-c {PINS_FILE}") >= 2  # pip, setuptools, wheel; then the dependencies
    assert "--no-deps" in dockerfile  # latentbids itself adds nothing unpinned
    makefile = (REPO / "Makefile").read_text()
    assert f"CONSTRAINTS := {PINS_FILE}" in makefile and "-c $(CONSTRAINTS)" in makefile
    assert "$(CONSTRAINTS)" in makefile.split("$(STAMP):", 1)[1].splitlines()[0], "pins changes rebuild .venv"
