"""The claims of the SHAP section: one per surrogate model, the held-out test of the top regions, SAR.

What may be said, and what may not:

- ``shap`` (one claim per model, Holm over the models): "the reconstruction error is predictable from
  regional GM" (the surrogate's CV R^2 beats its permutation null).  It supports the *model*, not any
  one region: a SHAP map of a supported model is model-level (:mod:`latentbids.analysis.maps`).
- ``shap_regions`` (one test): "the top-m SHAP regions, chosen on one half, predict the error of the
  other half" (held-out R^2 against permuted test errors, :mod:`latentbids.analysis.shap_regions`).
  The verdict on the top regions; a claim about the set of regions, not about each.
- ``sar`` (one test): SAR on the same regions and the same test half: what the paper reports.  Its
  measured power is quoted beside it, so that its silence is read as "could not see", never as absence.
"""
from __future__ import annotations

import math

from latentbids.analysis.shap_regions import MEASURED


def _rate(value) -> str:
    return "not measured" if not math.isfinite(value) else f"{100 * value:.0f} %"


def power_note(measured: dict = MEASURED) -> str:
    """The measured power of both region tests, in words (quoted by claims, statements and verdicts).

    A test that does not reject says nothing about absence unless its power is known; the verdicts
    quote this note so that a silent SAR reads as "could not see" with the rate it could see at.

    Parameters
    ----------
    measured : dict, default=MEASURED
        ``setting``, ``heldout_power`` and ``sar_power`` (rejection rates in [0, 1], NaN when not
        measured) and ``command`` (:data:`~latentbids.analysis.shap_regions.MEASURED`).

    Returns
    -------
    str
        E.g. ``"measured rejection rate (R^2 = 0.1 ...): held-out R^2 test 51 %, SAR 0 % (benchmarks/...)"``.
    """
    return (f"measured rejection rate ({measured['setting']}): held-out R^2 test {_rate(measured['heldout_power'])}, "
            f"SAR {_rate(measured['sar_power'])} ({measured['command']})")


def shap_claims(result) -> list:
    """One claim per surrogate model (Holm over the models), the held-out test of the top regions, SAR.

    The verdicts were made by :func:`~latentbids.analysis.shap_error.explain_error`; this turns them
    into ``shap``, ``shap_regions`` and ``sar`` :class:`~latentbids.analysis.claims.Claim` objects about
    the whole cohort (``contrast=""``).

    Parameters
    ----------
    result : ShapResult
        Output of :func:`~latentbids.analysis.shap_error.explain_error`.

    Returns
    -------
    list of Claim
        One ``shap`` claim per row of ``result.fits`` (``statistic`` = GBM CV R^2, at most 1 and NaN
        when not fitted; ``p`` = Holm-adjusted permutation p in (0, 1] or NaN); then, when the top
        regions were tested, one ``shap_regions`` claim (``statistic`` = held-out R^2, at most 1;
        ``p`` = permutation p in (0, 1] or NaN) and one ``sar`` claim when SAR ran (``statistic`` =
        held-out epsilon-insensitive loss in sd units of ``e``, ``p`` = ``p_full``, ``bound`` =
        ``Delta``; its ``note`` quotes SAR's measured power).
    """
    from latentbids.analysis.claims import SAR, SHAP, SHAP_REGIONS, Claim

    m = int(result.fits["cv_r2"].notna().sum())
    B = result.params.get("n_permutations", 0)
    out = [Claim(contrast="", family=SHAP, item=str(f.model), statistic_name="surrogate CV R^2",
                 statistic=float(f.cv_r2), p=float(f.p_holm), bound=math.nan,
                 correction=(f"CV R^2 > {result.params.get('min_r2')} and permutation null ({B} refits on shuffled "
                             f"errors), Holm over {m} model(s)"),
                 supported=bool(f.supported), note=str(f.reason or ""))
           for f in result.fits.itertuples()]
    held = getattr(result, "regions", None)
    if held is not None:
        why = held.get("reason") or ""
        out.append(Claim(
            contrast="", family=SHAP_REGIONS, item=", ".join(held["region_names"]),
            statistic_name=f"held-out R^2 of the error on the top {held['m']} SHAP regions",
            statistic=float(held["r2"]), p=float(held["p"]), bound=math.nan,
            correction=(f"one test: regions chosen and ridge fitted on {held['n_select']} subjects, R^2 on the other "
                        f"{held['n_test']} against {held['n_permutations']} permutations of their errors"),
            supported=bool(held["supported"]),
            note="; ".join(x for x in (why, "a claim about the set of regions, not about any one of them",
                                       power_note()) if x)))
    sar = result.sar
    if sar is not None and not sar.get("reason"):
        out.append(Claim(contrast="", family=SAR, item=", ".join(sar["region_names"]),
                         statistic_name="SVR epsilon-insensitive loss (held-out half)", statistic=float(sar["l_emp"]),
                         p=float(sar["p_full"]), bound=float(sar["delta"]),
                         correction=(f"the paper's check, one test: regions chosen on {sar['n_select']} subjects, "
                                     f"tested on the other {sar['n_test']}"),
                         supported=bool(sar["supported"]),
                         note=power_note() + ("" if sar["supported"] else "; a SAR that does not reject is not "
                                              "evidence that the regions do not predict the error")))
    return out
