"""Offline resources: the template grid and tissue priors, and the atlas with its label table.

One place decides the template grid (:func:`get_template`) and the atlas (:func:`get_atlas`);
everything else asks these functions.  Nothing here downloads: a missing resource raises
:class:`latentbids.errors.MissingInputError` saying where to put it.
"""
from latentbids.resources.atlases import Atlas, get_atlas, resample_atlas
from latentbids.resources.templates import DEFAULT_OUTPUT_SPACE, DEFAULT_SPACE, Template, get_template, templates_for

__all__ = ["Atlas", "DEFAULT_OUTPUT_SPACE", "DEFAULT_SPACE", "Template", "get_atlas", "get_template",
           "resample_atlas", "templates_for"]
