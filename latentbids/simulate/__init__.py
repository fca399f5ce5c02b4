"""Ground-truth cohort simulator (``latentbids-simulate``).

Modules, one job each: :mod:`.spec` (options and their checks), :mod:`.anatomy` (template head
model, smooth deformations, pose), :mod:`.effects` (individual GM variation, age atrophy, planted
loss in regions of the effect atlas or in spheres), :mod:`.truth_overlap` (which regions of AAL,
AAL3 and HCPEx hold each planted loss), :mod:`.t1w` (intensity synthesis), :mod:`.bids_writer`
(BIDS files), :mod:`.cohort` (orchestration, :func:`simulate_cohort`).

Output layout (raw mode)::

    OUT_DIR/dataset_description.json  README.md  .bidsignore  simulation.json
                                       (PlantedEffects, PlantedEffectsOverlap: the truth record)
    OUT_DIR/participants.tsv  participants.json      (participant_id group age sex TIV severity)
    OUT_DIR/sub-<l>/anat/sub-<l>_T1w.nii.gz (+ .json)
    OUT_DIR/derivatives/truth/dataset_description.json
    OUT_DIR/derivatives/truth/sub-<l>/anat/
        sub-<l>_space-MNI152NLin2009aSym_res-nilearn2_label-GM_probseg.nii.gz (+ .json)
        sub-<l>_space-MNI152NLin2009aSym_res-nilearn2_label-GM_desc-modulated_probseg.nii.gz (+ .json)

With ``gm_only`` the GM maps (which are then the truth) sit at the root of a derivative dataset
(sMRIPrep naming, for ``latentbids -d``) and there are no T1w scans.
"""
from latentbids.simulate.cohort import build_spec, simulate_cohort, simulate_subject
from latentbids.simulate.spec import Effect, Group, SimulationSpec, parse_effect, parse_groups

__all__ = [
    "Effect",
    "Group",
    "SimulationSpec",
    "build_spec",
    "parse_effect",
    "parse_groups",
    "simulate_cohort",
    "simulate_subject",
]
