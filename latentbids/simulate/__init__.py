"""Ground-truth cohort simulator (``latentbids-simulate``).

Modules, one job each: :mod:`.spec` (options and their checks), :mod:`.anatomy` (template head
model, deformations), :mod:`.effects` (GM variation, age atrophy, planted regional loss),
:mod:`.t1w` (intensity synthesis), :mod:`.bids_writer` (BIDS files), :mod:`.cohort` (orchestration).
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
