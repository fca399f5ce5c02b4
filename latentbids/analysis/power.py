"""What a silent test could have seen: the smallest planted GM loss each family detects at the user's n.

A test that cannot reject is not evidence of absence (METHOD.md section 10).  So whenever a family supports
no claim, the verdict says how large an effect the test would have found with 80 % power at this cohort's
size, read from the power table shipped in ``latentbids/data/calibration.json`` (``power``: the share of
simulated cohorts in which the family supported a planted region, for GM losses of 4-25 % in a few regions
and 20-200 subjects per group; written by ``benchmarks/power_table.py``).  The table is read
conservatively: the row of the largest measured group size not above the user's smaller class (power grows
with n), and linear interpolation between measured losses.
"""
from __future__ import annotations

import json
import math
from functools import lru_cache
from importlib import resources

#: the power a "detects" statement promises
TARGET_POWER = 0.8
#: families whose power depends on how well the autoencoder encodes the regions: the table's stand-in (a linear
#: autoencoder) is their best case, and the sentence says so
NETWORK_DEPENDENT = ("unit", "lrcp", "latent_vector", "vector_bound", "rub")


@lru_cache(maxsize=1)
def load_power_table() -> dict | None:
    """The shipped power table (``calibration.json``'s ``power``), or None when this version ships none.

    Parameters
    ----------
    None
        The table is read once from the package data and cached.

    Returns
    -------
    dict or None
        ``losses`` (percent), ``n_per_group``, ``families`` (family -> rows of power, one row per
        ``n_per_group``, one column per loss, each in [0, 1]), ``regions`` (how many regions were planted),
        ``replications`` and ``source`` (how it was measured).
    """
    try:
        text = resources.files("latentbids").joinpath("data", "calibration.json").read_text()
        table = json.loads(text).get("power")
    except (OSError, ValueError, AttributeError):
        return None
    return table if isinstance(table, dict) and table.get("families") else None


def detectable_loss(family: str, n_per_group: int, table: dict | None = None) -> tuple[float | None, int | None]:
    """The smallest planted GM loss (percent) ``family`` detects with 80 % power at ``n_per_group``.

    Parameters
    ----------
    family : str
        A claim family of the table (``unit``, ``region``, ``lrcp``, ``sam``, ``latent_vector`` ...).
    n_per_group : int
        Subjects in the smaller class of the contrast.
    table : dict, optional
        A power table (default: the shipped one).

    Returns
    -------
    loss : float or None
        In percent; ``math.inf`` when even the largest measured loss falls short of 80 % power; None when the
        table does not cover the family or ``n_per_group`` is below its smallest group size.
    n_row : int or None
        The table's group size the value was read at (the largest not above ``n_per_group``).
    """
    table = load_power_table() if table is None else table
    if not table or family not in table.get("families", {}):
        return None, None
    sizes = [int(n) for n in table["n_per_group"]]
    usable = [i for i, n in enumerate(sizes) if n <= int(n_per_group)]
    if not usable:
        return None, None
    row_index = max(usable, key=lambda i: sizes[i])
    losses = [float(x) for x in table["losses"]]
    row = [float(x) for x in table["families"][family][row_index]]
    for i, (loss, power) in enumerate(zip(losses, row)):
        if power >= TARGET_POWER:
            if i == 0:
                return loss, sizes[row_index]
            lo_loss, lo_power = losses[i - 1], row[i - 1]
            return lo_loss + (TARGET_POWER - lo_power) / (power - lo_power) * (loss - lo_loss), sizes[row_index]
    return math.inf, sizes[row_index]


def required_n(family: str, loss_percent: float, table: dict | None = None) -> int | None:
    """The smallest group size of the power table at which ``family`` finds ``loss_percent`` with 80 % power.

    The planning question (METHOD.md section 10): how many subjects per group does an effect of this size need?
    Read conservatively: a measured group size whose detectable loss is at or below the asked loss.

    Parameters
    ----------
    family : str
        A claim family of the table.
    loss_percent : float
        The GM loss (percent, in the table's number of regions) the study must be able to find.

    Returns
    -------
    int or None
        Subjects per group; None when even the table's largest group size falls short (or the family is not
        in the table).
    """
    table = load_power_table() if table is None else table
    if not table or family not in table.get("families", {}):
        return None
    for n in sorted(int(x) for x in table["n_per_group"]):
        loss, _ = detectable_loss(family, n, table)
        if loss is not None and loss <= float(loss_percent):
            return n
    return None


def power_sentence(family: str, n_per_group: int, table: dict | None = None) -> str:
    """What a silent ``family`` could have found at this n, in words (for a verdict with no supported claim).

    Parameters
    ----------
    family : str
        The claim family.
    n_per_group : int
        Subjects in the smaller class.
    table : dict, optional
        A power table (default: the shipped one).

    Returns
    -------
    str
        One sentence; it never says that the effect is absent.
    """
    table = load_power_table() if table is None else table
    loss, row = detectable_loss(family, n_per_group, table)
    if loss is None:
        return (f"Its power at {n_per_group} per group is not in the shipped power table, so its silence says "
                "nothing about the size of an effect that may be present.")
    regions = int(table.get("regions", 4))
    where = f"measured at {row} per group, the largest size of the power table not above this cohort's {n_per_group}"
    if math.isinf(loss):
        top = max(float(x) for x in table["losses"])
        return (f"Even a {top:g} % GM loss in {regions} regions is found with less than 80 % power at this n "
                f"({where}): an effect of realistic size may well be present.")
    best = (" with a network that encodes the regions as well as a linear autoencoder (the table's best case; a "
            "short-trained network or small regions need more)" if family in NETWORK_DEPENDENT else "")
    return (f"At this n it finds a GM loss of about {loss:.0f} % in {regions} regions with 80 % power{best} ({where}); "
            "a smaller effect may be present.")
