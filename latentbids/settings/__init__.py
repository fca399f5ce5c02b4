"""Settings resolved once, per level: the config (what was asked) becomes what this run does.

* :mod:`~latentbids.settings.run`: the config resolved and its paths checked; :class:`RunSettings`
  (folders, threads, the device, templates and atlas), shared by both levels;
* :mod:`~latentbids.settings.participant`: :class:`ParticipantSettings` (anatomical workflow, QC);
* :mod:`~latentbids.settings.group`: :class:`GroupSettings` (training, folds, model, analysis).

Only the CLI and these modules read a :class:`~latentbids.config.RunConfig`; every workflow takes the
frozen objects built here (kept by ``tests/test_architecture.py``).
"""
from latentbids.settings.group import FoldPlan, GroupSettings, group_settings, train_settings
from latentbids.settings.participant import (
    QC_FIELDS,
    AnatSettings,
    ParticipantSettings,
    anat_settings,
    participant_settings,
    qc_thresholds,
)
from latentbids.settings.run import (
    DEFAULT_WORK_DIR,
    RunSettings,
    Selection,
    available_cpus,
    check_paths,
    resolve_config,
    resolve_run,
    selection_of,
)

__all__ = [
    "DEFAULT_WORK_DIR", "QC_FIELDS", "AnatSettings", "FoldPlan", "GroupSettings", "ParticipantSettings", "RunSettings",
    "Selection", "anat_settings", "available_cpus", "check_paths", "group_settings", "participant_settings",
    "qc_thresholds", "resolve_config", "resolve_run", "selection_of", "train_settings",
]
