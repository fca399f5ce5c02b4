"""The two levels, wired: :mod:`~latentbids.workflows.participant` (one T1w -> GM maps on the template
grids, a Nipype workflow per subject) and :mod:`~latentbids.workflows.group` (every GM map -> the
autoencoder, its latents and their interpretation).  Each takes the frozen settings of
:mod:`latentbids.settings` and returns a typed outcome; the CLI turns the outcome into an exit code.
"""
