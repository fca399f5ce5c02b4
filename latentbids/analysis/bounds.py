"""Concentration-inequality bounds of the "statistical agnostic" methods (METHOD.md section 6).

Each bound ``Delta`` states: with probability at least ``1 - eta`` over the draw of ``n`` samples, the
actual risk of a classifier with ``d`` features is at most its empirical risk plus ``Delta``.  An
in-sample accuracy ``acc`` therefore has a worst case ``acc* = acc - Delta``; a claim "this feature
separates the classes" survives only if ``acc* > 0.5``.  The bounds grow with ``d`` and shrink with
``n``, which is the cautionary point: a 32-unit latent vector cannot pass at the cohort sizes where
single units can.

All functions work in log space (``scipy.special.gammaln``) so that binomial sums with ``n`` in the
thousands do not overflow.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.special import gammaln, logsumexp

from latentbids.errors import UsageError

BOUNDS = ("G", "GZ", "VC")

#: PAC-Bayes lambda grid of METHOD.md: 0.6 .. 10 in steps of 0.01 (941 values).
PAC_BAYES_LAMBDAS = np.round(np.arange(0.6, 10.0 + 1e-9, 0.01), 2)


def _check(n: int, d: int, eta: float) -> None:
    if int(n) < 2:
        raise UsageError(f"a bound needs at least 2 samples (got n={n})")
    if int(d) < 1:
        raise UsageError(f"a bound needs at least 1 feature (got d={d})")
    if not 0.0 < float(eta) < 1.0:
        raise UsageError(f"eta must lie in (0, 1) (got {eta})")


def _log_binom(n, k):
    n, k = np.asarray(n, dtype=float), np.asarray(k, dtype=float)
    return gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)


def log_growth_vc(n: int, d: int) -> float:
    """``ln Pi(n) = min(h (ln(2 n / h) + 1), n ln 2)`` with ``h = d + 1``: Vapnik's growth function.

    Sauer's lemma bounds the number of labellings a class of VC dimension ``h`` realises on ``n`` points
    by ``(2 e n / h)^h`` only when ``n >= h``; there are never more than ``2^n`` labellings, so the log
    count is the smaller of the two (METHOD.md section 6).  Below ``h`` the class shatters the points
    and the count *is* ``2^n``: there the Sauer form is not a bound at all (it turns negative once
    ``n < h / (2 e)``), so it is not used, and ``ln Pi(n) = n ln 2``.  The first version took the Sauer
    form everywhere and an ``abs()`` of the result, which turned a bound that must be useless (more
    features than samples) into a small one: pure noise at ``n = 23``, ``d = 128`` "separated".

    Parameters
    ----------
    n : int
        Number of samples, at least 1.
    d : int
        Number of features of the linear classifier, at least 1 (VC dimension ``h = d + 1``).

    Returns
    -------
    float
        ``ln Pi(n)`` (natural log), in ``(0, n ln 2]``.
    """
    h = int(d) + 1
    every_labelling = n * math.log(2.0)
    if n < h:  # h points or fewer are shattered: every labelling is realised
        return every_labelling
    return min(h * (math.log(2 * n / h) + 1), every_labelling)


def delta_vc(n: int, d: int, eta: float = 0.05) -> float:
    """Vapnik's bound for linear classifiers (VC dimension ``h = d + 1``).

    The classical VC bound, kept as the most conservative option of ``[analysis] bound``:
    ``Delta = sqrt((ln Pi(n) - ln(eta / 4)) / n)`` with the growth function ``ln Pi(n)`` of
    :func:`log_growth_vc`, which equals ``h (ln(2 n / h) + 1)`` whenever ``n`` is large against ``h``
    (METHOD.md's reference values) and ``n ln 2`` when there are too few samples for the features.  The
    square root's argument is then always positive: no absolute value is needed, and none may hide a
    negative log.

    Parameters
    ----------
    n : int
        Number of samples (subjects), at least 2.
    d : int
        Number of features of the linear classifier, at least 1.
    eta : float, default=0.05
        Confidence level: the bound holds with probability ``1 - eta``; in (0, 1).

    Returns
    -------
    float
        ``Delta`` > 0, in accuracy (or 0-1 loss) units; values above 0.5 make every claim fail (at
        least ``sqrt(ln 2)`` = 0.83 when ``n`` is too small for ``Pi(n)`` to fall below ``2^n``).
    """
    _check(n, d, eta)
    return math.sqrt((log_growth_vc(n, d) - math.log(eta / 4)) / n)


def log_growth_g(n: int, d: int) -> float:
    """``ln C(n, d)`` with ``C = 2 * sum_{k=1..d} binom(n-1, k-1)`` (linear dichotomies, Cover).

    Cover's count of the labellings of ``n`` points in general position that a linear classifier with
    ``d`` features can realise: the growth function behind the G bound (and the inverted bound of SAR).
    Computed in log space so that ``n`` in the thousands does not overflow.

    Parameters
    ----------
    n : int
        Number of samples, at least 1.
    d : int
        Number of features, at least 1.

    Returns
    -------
    float
        ``ln C(n, d)`` (natural log, >= ln 2).
    """
    k = np.arange(1, min(d, n) + 1)
    return math.log(2.0) + float(logsumexp(_log_binom(n - 1, k - 1)))


def log_growth_gz(n: int, d: int) -> float:
    """``ln C_Z(n, d)``: the G growth function generalised to ``z`` points on the boundary.

    ``C_Z = 2 * sum_{z=0..d-1} binom(n, z) * sum_{k=1..d-z} binom(n-1-z, k-1)``: the dichotomies when up
    to ``d - 1`` points may lie on the separating hyperplane, the growth function of the GZ bound.

    Parameters
    ----------
    n : int
        Number of samples, at least 1.
    d : int
        Number of features, at least 1.

    Returns
    -------
    float
        ``ln C_Z(n, d)`` (natural log); at least :func:`log_growth_g` of the same ``(n, d)``.
    """
    terms = []
    for z in range(0, min(d - 1, n) + 1):
        k = np.arange(1, d - z + 1)
        k = k[k - 1 <= n - 1 - z]
        if len(k):
            terms.append(_log_binom(n, z) + _log_binom(n - 1 - z, k - 1))
    return math.log(2.0) + float(logsumexp(np.concatenate(terms)))


def delta_g(n: int, d: int, eta: float = 0.05) -> float:
    """The G bound (SAM's default): ``sqrt(ln(C(n, d) / eta) / (2 n))``; Hoeffding for ``d = 1``.

    Hoeffding's inequality with a union bound over the ``C(n, d)`` dichotomies of :func:`log_growth_g`:
    the default bound of ``[analysis] bound``.

    Parameters
    ----------
    n : int
        Number of samples (subjects), at least 2.
    d : int
        Number of features of the linear classifier, at least 1.
    eta : float, default=0.05
        Confidence level: the bound holds with probability ``1 - eta``; in (0, 1).

    Returns
    -------
    float
        ``Delta`` > 0, in accuracy (or 0-1 loss) units.
    """
    _check(n, d, eta)
    return math.sqrt((log_growth_g(n, d) - math.log(eta)) / (2 * n))


def delta_gz(n: int, d: int, eta: float = 0.05) -> float:
    """The GZ bound: the G bound's form with the ``C_Z`` growth function.

    ``sqrt(ln(C_Z(n, d) / eta) / (2 n))`` with ``C_Z`` of :func:`log_growth_gz`; slightly larger than the
    G bound because it also counts points lying on the decision boundary.

    Parameters
    ----------
    n : int
        Number of samples (subjects), at least 2.
    d : int
        Number of features of the linear classifier, at least 1.
    eta : float, default=0.05
        Confidence level: the bound holds with probability ``1 - eta``; in (0, 1).

    Returns
    -------
    float
        ``Delta`` > 0, in accuracy (or 0-1 loss) units.
    """
    _check(n, d, eta)
    return math.sqrt((log_growth_gz(n, d) - math.log(eta)) / (2 * n))


def delta(n: int, d: int, eta: float = 0.05, bound: str = "G") -> float:
    """The bound named by ``bound`` (``G``, ``GZ`` or ``VC``), as configured in ``[analysis] bound``.

    The single entry point the tests use, so that the configured bound is applied everywhere.

    Parameters
    ----------
    n : int
        Number of samples (subjects), at least 2.
    d : int
        Number of features of the linear classifier, at least 1.
    eta : float, default=0.05
        Confidence level: the bound holds with probability ``1 - eta``; in (0, 1).
    bound : {"G", "GZ", "VC"}, default="G"
        Name of the bound (case-insensitive); anything else raises :class:`~latentbids.errors.UsageError`.

    Returns
    -------
    float
        ``Delta`` > 0, in accuracy (or 0-1 loss) units: :func:`delta_g`, :func:`delta_gz` or :func:`delta_vc`.
    """
    name = str(bound).upper()
    if name == "G":
        return delta_g(n, d, eta)
    if name == "GZ":
        return delta_gz(n, d, eta)
    if name == "VC":
        return delta_vc(n, d, eta)
    raise UsageError(f"unknown bound '{bound}': use one of {', '.join(BOUNDS)}")


def delta_pac_bayes(
    empirical_loss: float,
    theta: np.ndarray,
    n: int,
    eta: float = 0.05,
    dropout: float = 0.95,
    max_loss: float = 1.0,
    lambdas: np.ndarray = PAC_BAYES_LAMBDAS,
) -> float:
    """McAllester's PAC-Bayes dropout bound, minimised over the ``lambda`` grid (used by RUB).

    ``theta`` are the fitted linear model's weights and bias; ``dropout`` is the dropout rate ``p``.
    Returns the excess ``Delta_PB`` to add to ``empirical_loss``.  Unlike the G/GZ/VC bounds it does
    not grow with the number of features but with ``||theta||^2`` (the KL of the dropout posterior,
    ``(1 - p) / 2 ||theta||^2``); the union over the ``lambda`` grid costs ``ln(len(lambdas))``.

    Parameters
    ----------
    empirical_loss : float
        Empirical loss of the Gibbs (dropout) classifier, in [0, ``max_loss``] (0-1 loss: an error rate).
    theta : ndarray of shape (d + 1,)
        Weights and intercept of the fitted linear model.
    n : int
        Number of samples, at least 2.
    eta : float, default=0.05
        Confidence level: the bound holds with probability ``1 - eta``; in (0, 1).
    dropout : float, default=0.95
        Dropout rate ``p`` of the posterior, in [0, 1).
    max_loss : float, default=1.0
        Upper bound of the loss (1 for the 0-1 loss).
    lambdas : ndarray, default=PAC_BAYES_LAMBDAS
        Grid of ``lambda`` values (each > 0.5) the bound is minimised over.

    Returns
    -------
    float
        ``Delta_PB``, in loss units: the actual loss is at most ``empirical_loss + Delta_PB`` with
        probability ``1 - eta``.
    """
    _check(n, 1, eta)
    lam = np.asarray(lambdas, dtype=float)
    a = 1.0 / (1.0 - 1.0 / (2.0 * lam))
    norm2 = float(np.sum(np.square(np.asarray(theta, dtype=float))))
    complexity = (1.0 - dropout) / 2.0 * norm2 + math.log(len(lam) / eta)
    values = (a - 1.0) * float(empirical_loss) + a * (lam * max_loss / n) * complexity
    return float(values.min())


def worst_case_accuracy(accuracy: float, n: int, d: int = 1, eta: float = 0.05, bound: str = "G") -> float:
    """``acc* = acc - Delta(n, d, eta)``: the accuracy guaranteed with probability ``1 - eta``.

    A claim "these features separate the classes" survives only if ``acc*`` exceeds chance.

    Parameters
    ----------
    accuracy : float
        In-sample (resubstitution) accuracy, in [0, 1].
    n : int
        Number of samples (subjects), at least 2.
    d : int, default=1
        Number of features of the classifier, at least 1.
    eta : float, default=0.05
        Confidence level, in (0, 1).
    bound : {"G", "GZ", "VC"}, default="G"
        Bound used for ``Delta`` (see :func:`delta`).

    Returns
    -------
    float
        ``acc*``, at most ``accuracy`` (negative when the bound exceeds the accuracy).
    """
    return float(accuracy) - delta(n, d, eta, bound)
