"""GM maps another pipeline already computed (``-d/--derivatives``): which file fills which job's grid.

A job whose T1w has such a map (:attr:`~latentbids.bids.jobs.T1wJob.gm_map`) is not segmented: its
map is resampled onto every output space.  For each space the map *in that space* is preferred when
the derivative has several; a map in another template is refused before any work
(:func:`check_reuse_spaces`), since putting it on this template's grid would need a transform
between the two templates.  The result is the ``precomputed`` mapping the participant factories
take (sMRIPrep's habit): ``{"gm_template": {space: ReusedGM}}`` per job.
"""
from __future__ import annotations

from dataclasses import dataclass

from latentbids.anat.reuse import find_existing_gm_map, map_space, space_mismatch
from latentbids.bids.jobs import T1wJob
from latentbids.bids.naming import derivative_uri
from latentbids.errors import UsageError


@dataclass(frozen=True)
class ReusedGM:
    """One reused GM map: its file, where it comes from (``smriprep`` or ``cat12``) and its BIDS URI
    into the ``-d`` dataset (what sidecars name, never a host path)."""

    path: str
    kind: str
    uri: str

    def metadata(self) -> dict:
        """Sidecar fields of a map made from this one."""
        return {"Description": f"GM map reused from an existing {self.kind} derivative, resampled to the grid",
                "ReusedFrom": self.uri, "Sources": [self.uri]}


def reused_gm(job: T1wJob, space: str, derivatives: dict[str, str]) -> ReusedGM:
    """The ``-d`` GM map of ``job`` to put on a ``space`` grid (a map in that space when there is one)."""
    found = find_existing_gm_map(derivatives, job.subject, job.session, space=space)
    path, kind = found if found else (str(job.gm_map), job.gm_map_kind or "smriprep")
    return ReusedGM(path=path, kind=kind, uri=derivative_uri(path, derivatives))


def precomputed_for(jobs: list[T1wJob], spaces: list[str], derivatives: dict[str, str]) -> dict[str, dict]:
    """``{job.label: {"gm_template": {space: ReusedGM}}}`` for the jobs with a reused GM map."""
    return {job.label: {"gm_template": {space: reused_gm(job, space, derivatives) for space in spaces}}
            for job in jobs if job.gm_map is not None}


def check_reuse_spaces(precomputed: dict[str, dict]) -> None:
    """Refuse, before any work, reused maps that are in another template than their output space (exit 64).

    Putting a map of one template onto another template's grid needs a transform between the two
    templates; without one it would only pretend both were the same space.
    """
    problems = []
    spaces = list(next(iter(precomputed.values()))["gm_template"]) if precomputed else []
    for space in spaces:  # space by space, then job by job: the first problem named is the first found
        for label, items in precomputed.items():
            reused = items["gm_template"][space]
            why = space_mismatch(reused.path, reused.kind, space)
            if why:
                problems.append((label, map_space(reused.path, reused.kind), why))
    if problems:
        label, _, why = problems[0]
        spaces = sorted({found for _, found, _ in problems if found})
        hint = (f"reuse them in their own space (--output-spaces {spaces[0]}:res-N; TemplateFlow cache needed)"
                if spaces else "give maps with a space- entity")
        raise UsageError(f"-d/--derivatives: {len(problems)} reused GM map(s) would change template space, first "
                         f"{label}: {why}: {hint}, or drop -d to segment these subjects")
