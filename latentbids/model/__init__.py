"""The 3D convolutional autoencoder: network, grid fitting, data cache, training, encoding, bundles.

One module, one job (METHOD.md section 3):

* :mod:`.network`      the ``nn.Module`` (hierarchical conv encoder, linear bottleneck, mirrored
  decoder; its ends: patch (default), space-to-depth or the conv stem of 0.1)
* :mod:`.grid`         crop/pad a template grid to a shape divisible by ``2**levels`` and restore it
* :mod:`.cache`        every GM map read once into one contiguous memory-mapped ``.npy`` in the work dir
* :mod:`.device`       ``--device auto|cpu|cuda|cuda:N`` resolution and determinism switches
* :mod:`.splits`       subject-level stratified k-fold with a validation subset inside each training set
* :mod:`.memory`       out-of-memory errors, free device memory, how many volumes fit where
* :mod:`.batches`      batches from the memmap (prefetched, pinned) or a resident fp32/fp16 device copy
* :mod:`.acceleration` torch.compile with an eager fallback, batch norm folded, CUDA graphs (encoding)
* :mod:`.distributed`  DistributedDataParallel over torchrun's processes
* :mod:`.training`     training loop: early stopping, per-epoch checkpoints, resume, OOM fallback
  (:mod:`.training_steps`: steps, OOM retries, epochs; :mod:`.checkpoint`: fingerprint, resume, RNG)
* :mod:`.encoding`     batched encoding, reconstruction, voxelwise/scalar/regional error
* :mod:`.folds`        folds trained by jobs of their own (``--fold N``), kept until a run merges them
* :mod:`.bundle`       the self-describing model folder
* :mod:`.subject_encoding` one subject encoded with a model folder (:func:`encode_with_model`, ``--model``)

Nothing here knows about BIDS layouts or Nipype; :mod:`latentbids.workflows.group.training` wires it.

The public API (imported on first use: ``import latentbids.model`` does not import torch)::

    from latentbids.model import AutoEncoder3D, TrainSettings, train_autoencoder, encode_all, load_bundle
"""

from __future__ import annotations

from latentbids.utils.lazy import lazy_exports

#: public name -> the module that defines it
_EXPORTS = {
    "AutoEncoder3D": "latentbids.model.network",
    "masked_mse": "latentbids.model.network",
    "TrainSettings": "latentbids.model.train_settings",
    "train_autoencoder": "latentbids.model.training",
    "encode_all": "latentbids.model.encoding",
    "fit_grid": "latentbids.model.grid",
    "make_splits": "latentbids.model.splits",
    "load_bundle": "latentbids.model.bundle",
    "encode_with_model": "latentbids.model.subject_encoding",
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
