"""The group level: every participant's GM map -> the autoencoder, its latents, their interpretation.

Entry: :func:`run_group` (``level.py``), fed a frozen :class:`~latentbids.settings.group.GroupSettings`.
Inside, in the order a run goes:

* ``inputs.py``: the GM maps the participant level wrote, gated by its QC, joined to participants.tsv;
* ``training.py`` (:func:`train_and_encode`): the stages of training and encoding, each a module:
  ``grid.py`` (working grid, GM cache), ``folds.py`` (splits, one model per fold), ``model_folder.py``
  (``--model``, reuse or refusal of an existing model folder), ``outputs.py`` (encoding, files, the model
  folder); ``result.py`` holds the typed results they hand on;
* ``analysis/``: the latent-space analysis, section by section (``run.py`` drives it).
"""
from latentbids.utils.lazy import lazy_exports

_EXPORTS = {
    "run_group": "latentbids.workflows.group.level",
    "GroupOutcome": "latentbids.workflows.group.level",
    "train_and_encode": "latentbids.workflows.group.training",
    "run_group_analysis": "latentbids.workflows.group.analysis.run",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
