"""Statistical agnostic tests: SAM, SAR, RUB and the full-latent-vector check (METHOD.md section 6).

The common idea: fit a simple linear model *in sample* (resubstitution), then subtract a
concentration-inequality bound ``Delta`` (:mod:`latentbids.analysis.bounds`) from its accuracy (or add it
to its loss).  What survives holds with probability ``1 - eta`` whatever the data distribution, so a
claim needs no held-out set, only enough subjects for the bound to be small.  The bound grows with the
number of features ``d``, which is the cautionary point of the method: single latent units and single
regions can pass at cohort sizes where the full latent vector (``d = K``) cannot.

Functions
---------
- :func:`single_feature_accuracy`: exact in-sample accuracy of the best one-feature threshold classifier
  (the ``"majority"`` statistic of :mod:`latentbids.analysis.discriminability`, whose family-wise tests
  LRCP runs on every latent unit and region).
- :func:`feature_test`: that accuracy against ``Delta(n, d=1)``.
- :func:`sam_regions` (``sam``): SAM, one row per atlas region (top voxels by t-test, 1 PLS component,
  linear SVM); a region is supported only when the bound and the family-wise permutation p of the whole
  pipeline agree.
- :func:`sar` (``sar``): SAR, statistical agnostic regression (linear SVR, epsilon-insensitive loss).
- :func:`rub` (``rub``): the PAC-Bayes dropout bound on the Gibbs classifier's Monte-Carlo loss, plus a
  permutation p; :func:`latent_vector_test`: the linear classifier on the full latent vector, with
  ``d = K``, and its RUB.
- :func:`sam_claims`, :func:`vector_claims`: the claims these tests make (:mod:`latentbids.analysis.claims`).

Conventions shared by every function
------------------------------------
- **Labels.** ``y`` holds exactly two distinct labels of any type (0/1, booleans, strings such as
  ``"CN"``/``"AD"``).  They are sorted and the first becomes class 0, the second class 1 (so 0/1 input
  keeps its meaning).  Missing labels (``None``/NaN) and subjects with a non-finite feature value are
  dropped before anything else; ``n`` in the results counts the subjects actually used.  More than two
  labels is a usage error (:class:`latentbids.errors.UsageError`): pass one contrast at a time.
- **Degenerate input is not an error.**  Fewer than 4 subjects, a single class, a constant feature or a
  constant target give NaN statistics, ``significant = False`` and a non-empty ``reason``; ``reason`` is
  ``""`` when the statistic was computed.  One weak contrast never stops a group run.
- **Chance level** [ours].  A classifier is declared significant when its worst-case accuracy
  ``acc* = acc - Delta`` exceeds ``chance``.  The default ``chance="majority"`` is the share of the
  larger class, which equals METHOD's 0.5 for balanced classes; with unbalanced classes a rule
  "acc* > 0.5" would pass a classifier that always answers the majority class (70/30 classes at n = 100:
  0.70 - 0.136 > 0.5 for pure noise).  Pass ``chance=0.5`` for the literal rule of the paper.
- **Determinism.**  Every random step (SVM coordinate descent, permutations, subsamples) is driven by
  ``random_state``.
"""
from latentbids.analysis.agnostic.common import MIN_SUBJECTS, feature_test, single_feature_accuracy
from latentbids.analysis.agnostic.rub import gibbs_loss, latent_vector_test, rub, vector_claims
from latentbids.analysis.agnostic.sam import sam_claims, sam_regions
from latentbids.analysis.agnostic.sar import sar

__all__ = ["MIN_SUBJECTS", "feature_test", "gibbs_loss", "latent_vector_test", "rub", "sam_claims", "sam_regions",
           "sar", "single_feature_accuracy", "vector_claims"]
