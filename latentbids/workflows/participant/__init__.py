"""The participant level: each selected T1w -> GM segmentation, registration and BIDS-Derivatives.

Entry: :func:`run_participant_level` (``level.py``), fed a frozen
:class:`~latentbids.settings.participant.ParticipantSettings`.  Inside, in the order a run goes:

* ``level.py``: select the T1w jobs, run them, encode with ``--model``; the :class:`ParticipantOutcome`;
* ``run.py``: one Nipype workflow per job under the MultiProc plugin (``multiproc.py``: prompt cancellation);
* ``workflow.py``: the workflow factory of one T1w, built from ``anat.py`` (brain mask, N4, registration,
  segmentation, QC), ``spaces.py`` (each further output space), ``precomputed.py`` (GM maps reused with
  ``-d``) and ``template_files.py`` (the template and atlas written once as files for Nipype);
* ``reports.py``: ``--reports-only``.
"""
from latentbids.utils.lazy import lazy_exports

_EXPORTS = {
    "run_participant_level": "latentbids.workflows.participant.level",
    "ParticipantOutcome": "latentbids.workflows.participant.level",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
