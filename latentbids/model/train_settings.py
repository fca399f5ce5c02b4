"""What shapes a training run: the network, the optimiser, early stopping, seeds and the data path.

Its own module because the training loop (:mod:`latentbids.model.training`), its steps
(:mod:`latentbids.model.training_steps`) and its checkpoints (:mod:`latentbids.model.checkpoint`, whose
fingerprint refuses to resume a run made with other settings) all read it, and none of them should import
another only for this type.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence


@dataclass
class TrainSettings:
    """Everything that shapes a training run (recorded in the model folder).

    Attributes
    ----------
    latent_dim, channels, norm, stem : int, sequence of int, str, str
        The network: K, encoder channels, normalisation, ends (:class:`AutoEncoder3D`).
    learning_rate, batch_size, max_epochs, patience, min_delta : float, int, int, int, float
        Adam's step size; the global batch (volumes); stop after ``patience`` epochs without a validation loss below
        the best minus ``min_delta`` (masked MSE, model units), or after ``max_epochs``.
    seed, deterministic, fast, resident, gpu_memory_share : int, bool, bool, bool, float
        Weights and shuffling seed; :func:`~latentbids.model.device.set_determinism`; the data path
        (:func:`~latentbids.model.fast_path.resolve_fast_path`); share (0..1) of free GPU memory a resident
        set may take.
    """

    latent_dim: int = 32
    channels: Sequence[int] = (16, 32, 64, 128)
    norm: str = "batch"
    stem: str = "patch"  # network ends: "patch" | "space_to_depth" | "conv" (latentbids.model.network)
    learning_rate: float = 1e-4
    batch_size: int = 8
    max_epochs: int = 200
    patience: int = 20
    min_delta: float = 0.0
    seed: int = 42
    deterministic: bool = False
    fast: bool = True  # bf16 autocast + channels_last_3d on CUDA (CPU: see train_autoencoder)
    resident: bool = True  # keep the training set on the GPU when it fits (CUDA only by default)
    gpu_memory_share: float = 0.5  # at most this share of free GPU memory for resident data

    def fingerprint(self) -> dict:
        data = dataclasses.asdict(self)
        data["channels"] = [int(c) for c in self.channels]
        if data["stem"] == "conv":
            # the network of latentbids <= 0.1: its work dirs' checkpoints keep resuming
            del data["stem"]
        return data
