"""The name a model's outputs carry (``models/<name>/``, ``desc-<name>`` in file names), one rule.

A name must be a folder name and a BIDS entity value at once: letters, digits, ``.``, ``_`` and ``-``
(not first), at most 64 characters.  Training runs are named ``--model-name`` or ``ae-K<latent_dim>``;
``--model DIR`` runs take the name DIR's ``model.json`` records (else DIR's folder name).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from latentbids.errors import UsageError

_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


def safe_name(name: str, what: str) -> str:
    """``name`` when it can name a folder and a file entity; else a one-line usage error naming ``what``.

    Parameters
    ----------
    name : str
        The candidate name.
    what : str
        Where it came from, for the error (``model_name``, ``--model DIR: its name``).

    Returns
    -------
    str
        ``name``, unchanged.
    """
    name = str(name)
    if not _NAME.fullmatch(name) or name.startswith("."):
        raise UsageError(f"{what} '{name}' cannot name the model's outputs: use letters, digits, '_', '-' or '.' "
                         "(not first), e.g. ae-K32")
    return name


def expected_model_name(given_model: str | Path | None, model_name: str, latent_dim: int) -> str:
    """The name this run's outputs carry: ``--model``'s own name, else ``model_name`` or ``ae-K<latent_dim>``.

    Parameters
    ----------
    given_model : str, Path or None
        ``--model DIR`` (None: this run trains).
    model_name : str
        ``--model-name`` (empty: the default).
    latent_dim : int
        K, for the default name.

    Returns
    -------
    str
    """
    if given_model:
        try:
            meta = json.loads((Path(given_model) / "model.json").read_text(encoding="utf-8"))
            name = meta.get("name") or Path(given_model).name
        except (OSError, ValueError, AttributeError):
            name = Path(given_model).name  # verify_bundle names the problem later
        return safe_name(name, f"--model {given_model}: its name")
    return safe_name(model_name or f"ae-K{int(latent_dim)}", "model_name")


def bundle_name(bundle) -> str:
    """The name a model folder's outputs carry (``model.json``'s ``name``, else the folder's).

    Parameters
    ----------
    bundle : latentbids.model.bundle.ModelBundle
        A loaded model folder.

    Returns
    -------
    str
    """
    return safe_name(bundle.meta.get("name") or bundle.path.name, f"--model {bundle.path}: its name")
