"""What the interfaces share: the config's defaults and choices, the node folder, the thread input."""
from __future__ import annotations

import os

from nipype.interfaces.base import BaseInterfaceInputSpec, isdefined, traits

from latentbids.config import AnatConfig, ExecutionConfig
from latentbids.config_checks import RULES

ANAT_DEFAULTS = AnatConfig()
SEED_DEFAULT = ExecutionConfig().random_seed


def config_enum(key: str, **kwargs):
    """A trait with the choices of ``[anat] key``, its config default first (the trait's default)."""
    default = getattr(ANAT_DEFAULTS, key)
    return traits.Enum(default, *(c for c in RULES[("anat", key)].choices if c != default), **kwargs)


def out_path(runtime, name: str) -> str:
    """``name`` inside the node's working folder."""
    return os.path.join(runtime.cwd, name)


def nthreads(inputs) -> int | None:
    """The ``omp_nthreads`` input, ``None`` when unset or 0 (the library's own default)."""
    return int(inputs.omp_nthreads) if isdefined(inputs.omp_nthreads) and inputs.omp_nthreads else None


class ThreadsInputSpec(BaseInterfaceInputSpec):
    omp_nthreads = traits.Int(1, usedefault=True, nohash=True, desc="threads for ITK/torch")
