"""Running the participant workflow: locks, the Nipype plugin, progress lines and per-job results.

:func:`run_participant_wf` builds the workflow (:mod:`latentbids.workflows.participant.workflow`) for the jobs
this process may take, runs it, and reports ``{job.label: "ok" | "failed: <reason>"}``.  A subject
another latentbids process is processing in the same work dir is skipped (:data:`LOCKED`); a failed
subject does not stop the others unless ``--stop-on-first-crash``; crash files go to
``sub-<l>/log/<run_id>/`` and the result names the exception they record.
"""
from __future__ import annotations

import logging
import re
import time
from collections import defaultdict
from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from latentbids.bids.derivatives import crash_dir
from latentbids.bids.jobs import T1wJob
from latentbids.errors import UsageError
from latentbids.settings import ParticipantSettings
from latentbids.workflows.participant.multiproc import CancellableMultiProcPlugin
from latentbids.workflows.participant.precomputed import check_reuse_spaces, precomputed_for
from latentbids.workflows.participant.template_files import write_template_files
from latentbids.workflows.participant.workflow import init_participant_wf, subject_wf_name

LOGGER = logging.getLogger("latentbids")

#: The result of a job whose subject another running latentbids process holds (exit 75 if nothing worse).
LOCKED = "failed: another latentbids job is processing it right now; rerun when it ends"
#: Plugins that report each node to a ``status_callback`` (the progress lines and results need it).
_CALLBACK_PLUGINS = ("MultiProc", "Linear", "LegacyMultiProc")


def load_plugin(use_plugin: str, multiproc_args: dict) -> tuple[str, dict]:
    """Nipype plugin name and arguments: a ``--use-plugin`` YAML file, or MultiProc.

    ``--nprocs 1`` is MultiProc with one worker too, not Linear: a node running in the main process
    (C++ code holding the interpreter) would delay a cancellation until it returns.

    Parameters
    ----------
    use_plugin : str
        The ``--use-plugin`` file, or ``""``.
    multiproc_args : dict
        MultiProc's arguments from ``--nprocs``/``--mem`` (:attr:`RunSettings.multiproc_args`); a
        MultiProc plugin file's own ``plugin_args`` override them.

    Returns
    -------
    tuple of (str, dict)
        The plugin's name and its arguments.
    """
    if not use_plugin:
        return "MultiProc", dict(multiproc_args)
    import yaml

    from latentbids.bids.tables import read_text_file

    try:
        data = yaml.safe_load(read_text_file(use_plugin, "--use-plugin", UsageError)) or {}
    except yaml.YAMLError as exc:
        raise UsageError(f"--use-plugin {use_plugin} is not valid YAML ({exc}): fix it") from None
    if not isinstance(data, dict) or "plugin" not in data:
        raise UsageError(f"--use-plugin {use_plugin} must contain 'plugin: NAME' (e.g. MultiProc, SLURM)")
    args = data.get("plugin_args") or {}
    if data["plugin"] in ("MultiProc", "LegacyMultiProc"):
        args = {**multiproc_args, **args}
    return str(data["plugin"]), args


def run_participant_wf(*, jobs: list[T1wJob], settings: ParticipantSettings, plugin: str | None = None,
                       plugin_args: dict | None = None) -> dict[str, str]:
    """Run the participant level on ``jobs``; return ``{job.label: "ok" | "failed: <reason>"}``.

    Parameters
    ----------
    jobs : list of T1wJob
        The checked T1w jobs (reused GM maps attached).
    settings : ParticipantSettings
        The resolved run (:func:`latentbids.settings.participant_settings`).
    plugin, plugin_args : optional
        A Nipype plugin and its arguments (:func:`load_plugin`); default MultiProc with the run's
        processes, as :class:`~latentbids.workflows.participant.multiproc.CancellableMultiProcPlugin`.

    Returns
    -------
    dict of str
        One result per job, :data:`LOCKED` for a job another process holds.
    """
    run = settings.run
    precomputed = precomputed_for(jobs, [t.space for t in run.templates], settings.derivatives)
    check_reuse_spaces(precomputed)
    held, results = _lock_jobs(run.work_dir, jobs)
    jobs = [job for job in jobs if job.label in held]
    if not jobs:
        return results
    try:
        grids = [write_template_files(template, run.atlas, run.work_dir) for template in run.templates]
        wf = init_participant_wf(jobs=jobs, grids=grids, settings=settings, precomputed=precomputed)
        results.update(_run(wf, jobs, settings, plugin or "MultiProc", plugin_args))
    finally:
        for handle in held.values():
            handle.close()
    return results


def _lock_jobs(work_dir: Path, jobs: list[T1wJob]) -> tuple[dict, dict[str, str]]:
    """One job per subject/session at a time in a work dir (overlapping SLURM array tasks, resubmits).

    Returns the held lock handles by job label and a failure result for each job already locked by
    another running latentbids process.
    """
    from latentbids.utils.locks import try_lock

    held, busy = {}, {}
    for job in jobs:
        lock = work_dir / "locks" / f"{subject_wf_name(job)}.lock"
        handle = try_lock(lock)
        if handle is None:
            LOGGER.error("%s: another latentbids job is processing it in this work dir (%s); skipped",
                         job.label, lock)
            busy[job.label] = LOCKED
        else:
            held[job.label] = handle
    return held, busy


def _run(wf: pe.Workflow, jobs: list[T1wJob], settings: ParticipantSettings, plugin: str,
         plugin_args: dict | None) -> dict[str, str]:
    progress = _Progress(jobs, wf)
    args = dict(plugin_args or {})
    if plugin in ("MultiProc", "LegacyMultiProc"):
        args = {**settings.run.multiproc_args, **args}
    if plugin in _CALLBACK_PLUGINS:
        args.setdefault("status_callback", progress)
    since = time.time()
    error: Exception | None = None
    LOGGER.info("Participant level: %d job(s), plugin %s", len(jobs), plugin)
    # MultiProc runs as latentbids' cancellable variant (workers a SIGTERM ends at once)
    runner = _Runner(args, settings.run.work_dir) if plugin == "MultiProc" else plugin
    try:
        wf.run(plugin=runner, plugin_args=args)
    except Exception as exc:  # nipype raises RuntimeError listing failed nodes at the end
        error = exc
    results: dict[str, str] = {}
    for job in jobs:
        reason = progress.failed.get(job.label)
        folder = crash_dir(settings.run.output_dir, job.subject, settings.run.run_id or "run")
        crash = (crash_reason(folder, since, subject_wf_name(job))
                 or crash_reason(fallback_crash_dir(settings.run.work_dir, job.subject), since, subject_wf_name(job)))
        if crash is not None:  # the crash file names the exception; the callback only the step
            reason = crash
        if reason is None and error is not None and progress.done.get(job.label, 0) < progress.total[job.label] \
                and plugin in _CALLBACK_PLUGINS:
            reason = f"did not finish ({_describe(error)})"
        results[job.label] = "ok" if reason is None else f"failed: {reason}"
    if error is not None and all(v == "ok" for v in results.values()):
        raise error
    return results


def _describe(error: Exception) -> str:
    """How a run that Nipype ended is reported per job: the storage failure in full (path, errno: the
    exit code is decided from it), anything else by its type."""
    from latentbids.errors import storage_error

    storage = storage_error(error) if isinstance(error, OSError) else None
    return storage.message if storage is not None else type(error).__name__


def fallback_crash_dir(work_dir: Path, subject: str) -> Path:
    """Where a subject's crash files go when its output folder cannot take them (disk full,
    read-only): the work dir, so the failure is still recorded and the other subjects go on."""
    return Path(work_dir) / "crash" / f"sub-{subject}"


class _Runner(CancellableMultiProcPlugin):
    """MultiProc whose crash reports survive an unwritable crash folder.

    Nipype writes a crash file in its main loop: an OSError there (the subject's output folder is
    full or read-only, often the very reason the node failed) would end the whole run and every other
    subject with it.  The crash file then goes to :func:`fallback_crash_dir` instead, said once per node.
    """

    def __init__(self, plugin_args: dict, work_dir: Path):
        super().__init__(plugin_args=plugin_args)
        self._work_dir = Path(work_dir)

    def _report_crash(self, node, result=None):
        try:
            return super()._report_crash(node, result=result)
        except OSError as exc:
            folder = node.config["execution"].get("crashdump_dir", "")
            match = re.search(r"sub-([A-Za-z0-9]+)", str(folder))
            fallback = fallback_crash_dir(self._work_dir, match.group(1) if match else "unknown")
            LOGGER.error("Cannot write a crash file in %s (%s): writing it to %s", folder, exc, fallback)
            node.config["execution"]["crashdump_dir"] = str(fallback)
            return super()._report_crash(node, result=result)


class _Progress:
    """Nipype ``status_callback``: one log line per finished step and per finished subject."""

    def __init__(self, jobs: list[T1wJob], wf: pe.Workflow):
        self.by_wf = {subject_wf_name(j): j for j in jobs}
        self.total: dict[str, int] = defaultdict(int)
        for sub_wf in wf._graph.nodes():
            job = self.by_wf.get(sub_wf.name)
            if job is not None and isinstance(sub_wf, pe.Workflow):
                # Nipype drops IdentityInterface nodes (inputnode/outputnode) from the run graph
                self.total[job.label] = sum(not isinstance(n.interface, niu.IdentityInterface)
                                            for n in sub_wf._get_all_nodes())
        self.done: dict[str, int] = defaultdict(int)
        self.failed: dict[str, str] = {}
        self.started: dict[str, float] = {}
        self.t0 = {j.label: None for j in jobs}

    def _job(self, node) -> T1wJob | None:
        for part in node.fullname.split("."):
            if part in self.by_wf:
                return self.by_wf[part]
        return None

    def __call__(self, node, status: str) -> None:
        job = self._job(node)
        if job is None:
            return
        key = node.fullname
        if status == "start":
            self.started[key] = time.time()
            if self.t0[job.label] is None:
                self.t0[job.label] = time.time()
            return
        step = node.name
        space = next((p[len("space_"):-len("_wf")] for p in node.fullname.split(".")
                      if p.startswith("space_") and p.endswith("_wf")), None)
        if space:  # a further output space (workflows/participant/spaces.py): say which
            step = f"{step} ({space})"
        began = self.started.pop(key, None)
        if status == "end":
            self._finished(job, node, step, began)
        elif status == "exception":
            self.failed.setdefault(job.label, f"step {step} crashed")
            LOGGER.error("%s: %s FAILED (see %s)", job.label, step, node.config["execution"].get("crashdump_dir"))

    def _finished(self, job: T1wJob, node, step: str, began: float | None) -> None:
        self.done[job.label] += 1
        if not node.name.startswith("ds_") and not node.name.endswith("node"):
            if began is not None:
                LOGGER.info("%s: %s finished (%.1f s)", job.label, step, time.time() - began)
            elif _has_result(node):  # MultiProc reports cached nodes with "end" only
                LOGGER.info("%s: %s finished (cached)", job.label, step)
            # else: Linear reports "end" for nodes it skipped after a failure: they did not run
        if self.done[job.label] == self.total[job.label] and job.label not in self.failed:
            start = self.t0[job.label]
            how = f"{time.time() - start:.0f} s" if start is not None else "all steps cached"
            LOGGER.info("%s: participant level finished (%s)", job.label, how)


def _has_result(node) -> bool:
    try:
        return (Path(node.output_dir()) / f"result_{node.name}.pklz").is_file()
    except Exception:  # pragma: no cover - a node without an output dir
        return False


def crash_reason(folder: Path, since: float, wf_name: str) -> str | None:
    """Last line of the newest crash file of ``wf_name`` written after ``since`` in ``folder``.

    The folder is per subject, so the sessions of one subject share it: a crash file is only
    attributed to the job whose sub-workflow name it mentions.
    """
    if not folder.is_dir():
        return None
    files = sorted((p for p in folder.glob("crash-*") if p.stat().st_mtime >= since - 1
                    and f".{wf_name}." in p.read_text(errors="replace")),
                   key=lambda p: p.stat().st_mtime)
    if not files:
        return None
    text = files[-1].read_text(errors="replace").strip().splitlines()
    lines = [ln.strip() for ln in text if ln.strip()]
    node = re.search(r"crash-\d+-\d+-[^-]+-(.+?)-[0-9a-f]{8}-", files[-1].name)
    last = next((ln for ln in reversed(lines) if "Error" in ln or "Exception" in ln), lines[-1] if lines else "")
    last = re.sub(r"^latentbids\.errors\.\w+: ", "", last)  # a user error's message says it all
    return f"{node.group(1) if node else 'a step'}: {last}"[:300]
