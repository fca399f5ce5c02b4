"""Cohort orchestration: draw each subject, build its maps and scan, write the dataset.

Each subject ``i`` (1-based) has its own generator ``np.random.default_rng([seed, i])`` and draws
in a fixed order (demographics, shape, GM variation, contrast, bias, noise), so a subject does not
depend on N, on the planted effects or on ``--gm-only``; its group is ``groups[(i - 1) % G]``.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import nibabel as nib
import numpy as np
import pandas as pd

from latentbids import __version__
from latentbids.bids.naming import raw_uri
from latentbids.errors import UsageError
from latentbids.simulate import bids_writer
from latentbids.simulate.anatomy import Deformation, head_model, random_deformation, smooth_field
from latentbids.simulate.effects import check_footprints, get_atlas_grid, loss_map, subject_tissues
from latentbids.simulate.spec import (
    Effect,
    SimulationSpec,
    check_effect_atlas,
    check_effects,
    check_spec,
    parse_groups,
)
from latentbids.simulate.t1w import Contrast, synthesize_t1w
from latentbids.simulate.truth_overlap import planted_effects_overlap

LOG = logging.getLogger("latentbids.simulate")

#: expected TIV (mL) by sex, and its SD: adult values from the MRI literature [ours]
TIV_MEAN_ML = {"F": 1380.0, "M": 1550.0}
TIV_SD_ML = 110.0
GM_VARIATION_ORDER = 8


@dataclass
class Subject:
    """One simulated subject: its table row, hidden draws, truth maps and (raw mode) its scan."""

    label: str
    row: dict
    hidden: dict
    gm: np.ndarray  # truth GM fraction, template grid
    modulated: np.ndarray  # truth GM times Jacobian
    loss: np.ndarray
    t1w: nib.Nifti1Image | None = None
    deformation: Deformation | None = None  # template -> scanner map (for tests and QC)


def _planted_effect(effect: Effect, atlas) -> dict:
    """One ``PlantedEffects`` entry: regions and their labels; a blob has none but its sphere."""
    entry = {"Regions": list(effect.regions), "RegionIndices": [atlas.index[r] for r in effect.regions],
             "Percent": effect.percent}
    if effect.is_blob:
        entry["Blob"] = {"CenterMM": list(effect.center_mm), "RadiusMM": effect.radius_mm}
    return entry


def _simulation_record(spec, spec_dict: dict, head, hidden: list) -> dict:
    """``simulation.json``: the generator, seed, template, atlas, every planted effect and subject draw.

    ``Atlas`` is the effect atlas (the one region effects name); ``PlantedEffectsOverlap`` says, per
    planted effect, which regions of AAL, AAL3 and HCPEx hold its loss
    (:func:`latentbids.simulate.truth_overlap.planted_effects_overlap`).
    """
    atlas = get_atlas_grid(head, spec.atlas)
    return {
        "GeneratedBy": {"Name": bids_writer.GENERATOR, "Version": __version__},
        "Seed": int(spec.seed),
        "NSubjects": int(spec.n_subjects),
        "Template": {"Space": head.space, "Resolution": spec.resolution, "Source": head.source},
        "Atlas": {"Name": atlas.name, "Source": atlas.source},
        "PlantedEffects": [_planted_effect(e, atlas) for e in spec.effects],
        "PlantedEffectsOverlap": planted_effects_overlap(spec.effects, spec.atlas, head),
        "Groups": spec_dict["groups"],
        "TruthMaps": "." if spec.gm_only else bids_writer.TRUTH_DIR.as_posix(),
        "Parameters": spec_dict,
        "Subjects": hidden,
    }


def subject_label(index: int, n_subjects: int) -> str:
    return f"{index:0{max(3, len(str(n_subjects)))}d}"


def simulate_subject(spec: SimulationSpec, index: int, label: str | None = None) -> Subject:
    """Simulate subject ``index`` (1-based) of ``spec`` in memory."""
    head = head_model(spec.resolution, spec.space)
    atlas = get_atlas_grid(head, spec.atlas)
    rng = np.random.default_rng([int(spec.seed), int(index)])
    group = spec.groups[(index - 1) % len(spec.groups)]
    # demographics
    sex = "F" if rng.random() < 0.5 else "M"
    lo, hi = spec.age_range
    age = float(rng.uniform(lo, hi))
    tiv_z = float(rng.standard_normal())
    sev_u = float(rng.random())
    spread = spec.severity_spread
    severity = group.mean_severity * (1.0 - spread + 2.0 * spread * sev_u)
    target_tiv = (TIV_MEAN_ML[sex] + TIV_SD_ML * tiv_z) * (1.0 - spec.tiv_confound * severity)
    voxel_ml = abs(np.linalg.det(head.affine[:3, :3])) / 1000.0
    template_tiv = float(head.mask.sum()) * voxel_ml
    scale = (max(target_tiv, 600.0) / template_tiv) ** (1.0 / 3.0)
    # shape
    deform = random_deformation(rng, head, scale, spec.deformation_mm)
    jac = deform.jacobian()
    # the nonlinear part changes the volume too: rescale so that TIV is the drawn target
    tiv = float((jac * head.mask).sum() * voxel_ml)
    factor = max(target_tiv, 600.0) / tiv
    deform.scale = scale = scale * factor ** (1.0 / 3.0)
    jac = jac * np.float32(factor)
    tiv = float((jac * head.mask).sum() * voxel_ml)
    # GM: individual variation, age, planted loss
    gm_field = smooth_field(rng, head.shape, GM_VARIATION_ORDER, spec.gm_variability,
                            within=head.gm > 0.2)
    age_factor = 1.0 - spec.age_effect / 100.0 * (age - lo) / 10.0
    loss = loss_map(atlas, spec.effects, severity)
    tissues = subject_tissues(head, gm_field, age_factor, loss)
    label = label or subject_label(index, spec.n_subjects)
    hidden = {
        "participant_id": f"sub-{label}",
        "scale": round(scale, 6),
        "rotation": np.round(deform.rotation, 6).tolist(),
        "translation_mm": np.round(deform.translation, 4).tolist(),
        "min_jacobian": round(float(jac[head.mask].min()), 4),
        "age_factor": round(age_factor, 6),
    }
    t1w = None
    if not spec.gm_only:
        contrast = Contrast.draw(rng, spec.noise_scale)
        hidden["contrast"] = {k: round(float(v), 5) for k, v in vars(contrast).items()}
        t1w = synthesize_t1w(rng, head, tissues, deform, contrast, spec.voxel_size)
    row = {
        "participant_id": f"sub-{label}",
        "group": group.name,
        "age": age,
        "sex": sex,
        "TIV": tiv,
        "severity": severity,
    }
    return Subject(label, row, hidden, tissues.gm, tissues.gm * jac, loss, t1w, deform)


def _coerce_effects(effects) -> list:
    if effects is None:
        return []
    if isinstance(effects, (str, Effect)):
        effects = [effects]
    out = []
    for e in effects:
        if isinstance(e, dict) and e.get("center_mm") is not None:
            e = Effect((), float(e["percent"]), tuple(float(v) for v in e["center_mm"]), float(e["radius_mm"]))
        elif isinstance(e, dict):
            e = Effect(tuple(e["regions"]), float(e["percent"]))
        elif isinstance(e, tuple) and len(e) == 2 and not isinstance(e, Effect):
            regions, percent = e
            regions = (regions,) if isinstance(regions, str) else tuple(regions)
            e = Effect(regions, float(percent))
        out.append(e)
    return out


def build_spec(n_subjects: int, seed: int, effects=(), groups=("CN", "AD"),
               **options) -> SimulationSpec:
    """A checked :class:`SimulationSpec` (raises UsageError on bad options)."""
    spec = SimulationSpec(n_subjects=n_subjects, seed=seed, groups=parse_groups(groups), **options)
    check_spec(spec)
    check_effect_atlas(spec.atlas)
    head = head_model(spec.resolution, spec.space)
    atlas = get_atlas_grid(head, spec.atlas)
    spec.effects = check_effects(_coerce_effects(effects), atlas.names, atlas.name)
    check_footprints(spec.effects, atlas, head.gm, spec.resolution)
    return spec


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"OUT_DIR {out_dir} exists and is not a folder: choose another path")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise UsageError(
                f"OUT_DIR {out_dir} exists and is not empty: "
                "pass --overwrite or choose another folder"
            )
        if not (out_dir / "simulation.json").is_file():
            raise UsageError(
                f"OUT_DIR {out_dir} is not empty and holds no simulation.json: --overwrite only "
                f"replaces an earlier latentbids-simulate output; choose another folder"
            )


def simulate_cohort(
    out_dir: str | os.PathLike,
    n_subjects: int,
    seed: int,
    effects: Iterable = (),
    groups=("CN", "AD"),
    gm_only: bool = False,
    resolution: float = 2.0,
    overwrite: bool = False,
    group_ready: bool = False,
    **options,
) -> pd.DataFrame:
    """Simulate a cohort into ``out_dir`` and return its participants table.

    Parameters
    ----------
    out_dir : path
        Created (or replaced with ``overwrite`` if it holds an earlier simulation).
    n_subjects, seed : int
        Cohort size and master seed (subject ``i`` uses ``default_rng([seed, i])``).
    effects : iterable
        ``"REGION[,REGION]:PERCENT"`` (regions of the effect atlas, ``atlas`` option) or
        ``"blob:X,Y,Z,RADIUS_MM:PERCENT"`` (a sphere around an MNI point) strings, :class:`Effect`,
        ``(regions, percent)`` or dicts (:meth:`Effect.to_dict`).
    groups : str or sequence
        Groups from healthy to most affected, e.g. ``"CN,MCI,AD"`` (mean severities 0, 0.5, 1).
    gm_only : bool
        Write a derivative dataset of GM maps on the template grid instead of raw T1w scans.
    resolution : float
        Template grid (and default T1w voxel size) in mm.
    group_ready : bool
        Also place the true GM maps where the participant level writes them
        (``derivatives/latentbids``), so the group level runs on them without the participant level.
    **options
        Any other :class:`SimulationSpec` field (``severity_spread``, ``age_range``, ``age_effect``,
        ``tiv_confound``, ``deformation_mm``, ``gm_variability``, ``noise_scale``, ``voxel_size``,
        ``atlas``: the effect atlas, AAL by default, or AAL3, HCPEx, a label NIfTI path).

    Layout (raw mode): ``sub-<l>/anat/sub-<l>_T1w.nii.gz`` (+ JSON), participants.tsv/json,
    simulation.json, and
    ``derivatives/truth/sub-<l>/anat/sub-<l>_space-<tpl>_res-<r>_label-GM_probseg``
    (+ ``desc-modulated``).  ``--gm-only``: the same GM maps at the root of a derivative dataset.
    simulation.json's ``PlantedEffectsOverlap`` gives, per planted effect, the regions of AAL, AAL3
    and HCPEx that hold its GM loss and their shares.
    """
    try:
        options["age_range"] = tuple(float(a) for a in options.get("age_range", (60.0, 85.0)))
    except (TypeError, ValueError):
        raise UsageError("--age-range needs two numbers MIN MAX") from None
    if len(options["age_range"]) != 2:
        raise UsageError("--age-range needs two numbers MIN MAX")
    spec = build_spec(n_subjects, seed, effects, groups, gm_only=gm_only, resolution=resolution,
                      **options)
    out_dir = Path(out_dir).absolute()
    _prepare_out_dir(out_dir, overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    head = head_model(spec.resolution, spec.space)
    spec_dict = spec.to_dict()
    # build in a hidden sibling folder, then move into place: no half-written dataset on failure
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        rows, hidden = [], []
        truth_root = tmp if spec.gm_only else tmp / bids_writer.TRUTH_DIR
        for index in range(1, spec.n_subjects + 1):
            subject = simulate_subject(spec, index)
            rows.append(subject.row)
            hidden.append(subject.hidden)
            source = None
            if subject.t1w is not None:
                rel = bids_writer.write_t1w(tmp, subject.label, subject.t1w, spec.voxel_size)
                source = raw_uri(rel)
            bids_writer.write_gm_maps(
                truth_root, subject.label, subject.gm, subject.modulated, head.affine,
                head.space, spec.resolution, source,
            )
            LOG.info("simulated sub-%s (%s, severity %.2f)", subject.label, subject.row["group"],
                     subject.row["severity"])
        participants = bids_writer.participants_table(rows)
        simulation = _simulation_record(spec, spec_dict, head, hidden)
        kind = "derivative" if spec.gm_only else "raw"
        bids_writer.write_root_files(tmp, kind, spec_dict, participants, simulation)
        if not spec.gm_only:
            bids_writer.write_truth_description(truth_root, spec_dict)
        if group_ready:
            bids_writer.write_group_ready(tmp, truth_root, [str(r["participant_id"])[4:] for r in rows], head.space,
                                          spec.resolution)
        if out_dir.exists():
            if any(out_dir.iterdir()):
                shutil.rmtree(out_dir)  # checked above: an earlier simulation, --overwrite given
            else:
                out_dir.rmdir()
        os.chmod(tmp, 0o755)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return participants
