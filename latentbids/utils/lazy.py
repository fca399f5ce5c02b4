"""A package's public names imported on first use (PEP 562 module ``__getattr__``).

Why: ``from latentbids.analysis import LRCP`` should work without making ``import latentbids.analysis``
import torch, UMAP or SHAP for every caller that needs one estimator.
"""

from __future__ import annotations

import importlib


def lazy_exports(package: str, exports: dict[str, str]):
    """The ``__getattr__`` and ``__dir__`` of a package whose names live in its modules.

    Parameters
    ----------
    package : str
        The package's ``__name__`` (for the error message).
    exports : dict of str to str
        Public name -> the module that defines it.

    Returns
    -------
    (callable, callable)
        ``__getattr__(name)`` (imports the module, returns the object; AttributeError for another name)
        and ``__dir__()``.
    """

    def __getattr__(name: str):
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
