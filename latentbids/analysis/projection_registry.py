"""The projection methods of :func:`~latentbids.analysis.projections.project_latents`, each declared once.

A method is one :class:`ProjectionMethod`: its name (the ``meta`` key and the column prefix ``<name>1``,
``<name>2`` ...), the function that computes it, its parameters with their defaults, whether it reads the
labels (``supervised``) or is fitted on every row at once (``transductive``: a picture whose distances are
not evidence), and the words the rest of the package says about it (the report's figure title, paragraph
and caveat, the methods boilerplate).  :func:`project_latents`, the group workflow (which methods run in
which fold), its writers, the group report and the boilerplate all iterate over
:data:`PROJECTION_METHODS`, in registration order.

Adding a method: write its function in a new module of ``latentbids.analysis`` (taking a
:class:`ProjectionData` and its parameters, returning ``(scores on the valid rows or None, meta dict)``
like :mod:`~latentbids.analysis.projection_methods`) and add one :func:`register_projection` call to the
block at the end of this module.  A parameter named like an ``[analysis]`` setting is read from it by the
workflow; otherwise its default is used.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from latentbids.analysis.projection_methods import pca_scores, pls_scores, tsne_embedding, umap_embedding
from latentbids.errors import UsageError

#: a report paragraph/caveat template is formatted with the labels of the methods that share it
NAMES = "{names}"


@dataclass(frozen=True)
class ProjectionData:
    """What every projection method receives: the standardised latents and which rows are which.

    Attributes
    ----------
    Zs : ndarray of shape (n_valid, n_units)
        Latents of the valid rows standardised with the fit rows' mean and sd (constant units are 0).
    fit : ndarray of bool, shape (n_subjects,)
        Rows a method may be fitted on (a subset of ``valid``).
    valid : ndarray of bool, shape (n_subjects,)
        Rows with finite latents (the rows of ``Zs``).
    constant : ndarray of bool, shape (n_units,)
        Units constant on the fit rows.
    y : array-like of shape (n_subjects,), or None
        0/1 labels (-1 or NaN outside the contrast) for supervised methods.
    random_state : int
        Seed of the stochastic methods.
    """

    Zs: np.ndarray
    fit: np.ndarray
    valid: np.ndarray
    constant: np.ndarray
    y: object
    random_state: int


@dataclass(frozen=True)
class ProjectionMethod:
    """One projection method and everything the package says about it.

    Attributes
    ----------
    name : str
        Lower-case identifier: the key of ``meta``, the column prefix (``<name>1`` ...), the ``methods``
        entry of :func:`~latentbids.analysis.projections.project_latents`.
    label : str
        The method's name in prose (``"t-SNE"``).
    run : callable
        ``run(data: ProjectionData, params: dict) -> (scores or None, meta dict)``; ``scores`` has shape
        ``(n_valid, n_columns_used)``; the meta dict says what was computed, clipped or skipped (see
        :func:`~latentbids.analysis.projection_methods.skipped`) and never raises on degenerate input.
    n_columns : int or callable
        Coordinate columns the method owns in ``coords`` (always present, NaN where not computed): an
        int, or ``n_columns(params) -> int``.
    params : mapping of str to object, default={}
        The method's keyword parameters with their defaults (the names of ``project_latents`` keywords and
        of ``[analysis]`` settings).
    check : callable, optional
        ``check(params)`` raises :class:`~latentbids.errors.UsageError` on a bad value.
    supervised : bool, default=False
        Reads the labels: fitted on labelled training rows only, skipped where a fold has none.
    transductive : bool, default=False
        Fitted on every row at once (a picture: distances are not evidence); run on the reference fold
        only.  Otherwise fitted on the training rows and applied to the others, in every fold.
    meaning : str, default=""
        The report's projections paragraph: a template with ``{names}`` (methods with the same template
        share one clause, ``"PCA and PLS are fitted ..."``).
    caveat : str, default=""
        The report's caveat, a ``{names}`` template shared the same way; ``""`` for none.
    boilerplate : tuple, default=()
        The method in the methods boilerplate: text and ``("cite", key)`` pieces (default: the label);
        a key must be one of :data:`latentbids.bids.boilerplate.REFERENCES`.
    figure_title : str, default=""
        Title of the method's column in the report's projection figure (default: the label).
    """

    name: str
    label: str
    run: Callable
    n_columns: int | Callable
    params: Mapping = field(default_factory=dict)
    check: Callable | None = None
    supervised: bool = False
    transductive: bool = False
    meaning: str = ""
    caveat: str = ""
    boilerplate: tuple = ()
    figure_title: str = ""

    def columns(self, params: Mapping) -> list[str]:
        """The method's coordinate columns for ``params``.

        Parameters
        ----------
        params : mapping
            Every parameter value (the method reads its own).

        Returns
        -------
        list of str
            ``<name>1 .. <name>C``.
        """
        n = self.n_columns(params) if callable(self.n_columns) else self.n_columns
        return [f"{self.name}{i + 1}" for i in range(int(n))]


#: name -> method, in registration order (the order of the columns, the figure and the prose)
PROJECTION_METHODS: dict[str, ProjectionMethod] = {}


def register_projection(method: ProjectionMethod) -> ProjectionMethod:
    """Add ``method`` to :data:`PROJECTION_METHODS` (after the others).

    Parameters
    ----------
    method : ProjectionMethod
        The declaration; its ``name`` must be new, lower-case and alphabetic, and a supervised method may
        not be transductive (it would read the labels of the rows it places).

    Returns
    -------
    ProjectionMethod
        ``method``, with ``figure_title`` and ``boilerplate`` defaulted to its label.
    """
    if not (method.name.isalpha() and method.name.islower()):
        raise UsageError(f"projection method name {method.name!r}: use lower-case letters only")
    if method.name in PROJECTION_METHODS:
        raise UsageError(f"projection method {method.name!r} is already registered")
    if method.supervised and method.transductive:
        raise UsageError(f"projection method {method.name!r}: a supervised method must be fitted on the training "
                         "rows only (transductive=False)")
    taken = {key for m in PROJECTION_METHODS.values() for key in m.params}
    if taken & set(method.params):
        raise UsageError(f"projection method {method.name!r}: parameter(s) {sorted(taken & set(method.params))} "
                         "belong to another method")
    method = replace(method, figure_title=method.figure_title or method.label,
                     boilerplate=method.boilerplate or (method.label,))
    PROJECTION_METHODS[method.name] = method
    return method


def unregister_projection(name: str) -> ProjectionMethod:
    """Remove a method from :data:`PROJECTION_METHODS` (a test's toy method, once it is done).

    Parameters
    ----------
    name : str
        The method's name.

    Returns
    -------
    ProjectionMethod
        The removed declaration.
    """
    return PROJECTION_METHODS.pop(name)


def method_names() -> tuple[str, ...]:
    """The registered methods' names, in order.

    Parameters
    ----------
    None

    Returns
    -------
    tuple of str
        ``("pca", "tsne", "umap", "pls")`` plus any registered later.
    """
    return tuple(PROJECTION_METHODS)


def default_params() -> dict:
    """Every registered method's parameters with their defaults.

    Parameters
    ----------
    None

    Returns
    -------
    dict
        Keyword -> default value.
    """
    return {key: value for m in PROJECTION_METHODS.values() for key, value in m.params.items()}


def join_names(labels) -> str:
    """``"A"``, ``"A and B"``, ``"A, B and C"``.

    Parameters
    ----------
    labels : iterable of str
        The names to join.

    Returns
    -------
    str
        The names in prose.
    """
    labels = list(labels)
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


def shared_clauses(attribute: str) -> list[str]:
    """One clause per distinct ``{names}`` template of ``attribute`` (``"meaning"`` or ``"caveat"``), in the
    order of first registration, formatted with the labels of the methods that share it.

    Parameters
    ----------
    attribute : {"meaning", "caveat"}
        Which template.

    Returns
    -------
    list of str
        E.g. ``["PCA and PLS are fitted on ...", "t-SNE and UMAP are fitted on ..."]``.
    """
    groups: dict[str, list[str]] = {}
    for m in PROJECTION_METHODS.values():
        template = getattr(m, attribute)
        if template:
            groups.setdefault(template, []).append(m.label)
    return [template.format(names=join_names(labels)) for template, labels in groups.items()]


def boilerplate_pieces() -> list:
    """The projections in the methods boilerplate: ``"PCA, t-SNE [n], UMAP [n] and PLS projections
    (scikit-learn [n])"`` as text and ``("cite", key)`` pieces.

    Parameters
    ----------
    None

    Returns
    -------
    list
        Pieces for :class:`latentbids.bids.boilerplate.Boilerplate`.
    """
    methods = list(PROJECTION_METHODS.values())
    pieces: list = []
    for i, m in enumerate(methods):
        if i:
            pieces.append(" and " if i == len(methods) - 1 else ", ")
        pieces.extend(m.boilerplate)
    return pieces + [" projections (scikit-learn ", ("cite", "sklearn"), ")"]


# --------------------------------------------------------------------------------------------------
# parameter checks (the messages name the project_latents keyword)


def _positive_int(*names: str) -> Callable:
    def check(params):
        for name in names:
            value = params[name]
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise UsageError(f"{name} must be a positive integer (got {value!r})")
    return check


def _check_tsne(params) -> None:
    value = params["tsne_perplexity"]
    if not np.isfinite(value) or value <= 0:
        raise UsageError(f"tsne_perplexity must be a positive number (got {value!r})")


def _check_umap(params) -> None:
    k = params["umap_n_neighbors"]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise UsageError(f"umap_n_neighbors must be an integer >= 2 (got {k!r})")
    if not 0.0 <= float(params["umap_min_dist"]) <= 1.0:
        raise UsageError(f"umap_min_dist must lie in [0, 1] (got {params['umap_min_dist']!r})")


# --------------------------------------------------------------------------------------------------
# the built-in methods (registration order = column order = figure order)

#: the report's paragraph and caveats, shared by the methods of the same kind
FITTED_ON_TRAINING = "{names} are fitted on the model's training subjects and the others are projected"
FITTED_ON_ALL = ("{names} are fitted on all subjects and their distances are not evidence (no statistics are "
                 "computed on them)")
EMBEDDING_REPORT_CAVEAT = ("{names} are fitted on all subjects without labels; their distances and clusters are "
                           "not evidence.")
LABELS_CAVEAT = ("{names} uses the labels: it is fitted on the model's training subjects only and held-out "
                 "subjects are projected.")
NOT_EVIDENCE = " (distances are not evidence)"

register_projection(ProjectionMethod(
    name="pca", label="PCA", params={"pca_components": 3}, n_columns=lambda p: p["pca_components"],
    run=lambda d, p: pca_scores(d.Zs, d.fit, d.valid, d.constant, p["pca_components"]),
    check=_positive_int("pca_components"), meaning=FITTED_ON_TRAINING))
register_projection(ProjectionMethod(
    name="tsne", label="t-SNE", params={"tsne_perplexity": 30}, n_columns=2, transductive=True,
    run=lambda d, p: tsne_embedding(d.Zs, p["tsne_perplexity"], d.random_state), check=_check_tsne,
    meaning=FITTED_ON_ALL, caveat=EMBEDDING_REPORT_CAVEAT, boilerplate=("t-SNE ", ("cite", "tsne")),
    figure_title="t-SNE" + NOT_EVIDENCE))
register_projection(ProjectionMethod(
    name="umap", label="UMAP", params={"umap_n_neighbors": 15, "umap_min_dist": 0.1}, n_columns=2, transductive=True,
    run=lambda d, p: umap_embedding(d.Zs, p["umap_n_neighbors"], p["umap_min_dist"], d.random_state),
    check=_check_umap, meaning=FITTED_ON_ALL, caveat=EMBEDDING_REPORT_CAVEAT, boilerplate=("UMAP ", ("cite", "umap")),
    figure_title="UMAP" + NOT_EVIDENCE))
register_projection(ProjectionMethod(
    name="pls", label="PLS", params={"pls_components": 2}, n_columns=lambda p: p["pls_components"], supervised=True,
    run=lambda d, p: pls_scores(d.Zs, d.fit, d.valid, d.constant, d.y, p["pls_components"]),
    check=_positive_int("pls_components"), meaning=FITTED_ON_TRAINING, caveat=LABELS_CAVEAT))
