"""The 3D convolutional autoencoder of METHOD.md section 3.

Encoder: ``len(channels)`` blocks of Conv3d(k3, stride 2) + norm + LeakyReLU (default channels
16-32-64-128), then a linear map to ``latent_dim`` units (the linear bottleneck).  Decoder: a linear
map back to the coarsest feature map, then mirrored blocks of ConvTranspose3d(k4, stride 2) + norm +
LeakyReLU, a final Conv3d(k3) to one channel and a sigmoid (probability maps; modulated maps are
divided by one training-set constant before they enter, see :mod:`latentbids.workflows.group`).

The input shape must be divisible by ``2**len(channels)`` (see :mod:`latentbids.model.grid`).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

NORMS = ("batch", "instance", "group", "none")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    if kind == "instance":
        return nn.InstanceNorm3d(channels, affine=True)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}: use one of {', '.join(NORMS)}")


class AutoEncoder3D(nn.Module):
    """Hierarchical 3D conv encoder, linear bottleneck of ``latent_dim`` units, mirrored decoder.

    Parameters
    ----------
    input_shape : (X, Y, Z)
        Network input shape, each divisible by ``2**len(channels)``.
    latent_dim : int
        K, the number of latent units (default 32).
    channels : sequence of int
        Feature channels of the encoder blocks (default 16, 32, 64, 128).
    norm : {"batch", "instance", "group", "none"}
        Normalisation after each convolution.  Batch norm (default) keeps global intensity
        differences between subjects (instance norm would partly remove them).
    negative_slope : float
        LeakyReLU slope.
    output : {"sigmoid", "linear"}
        Final activation.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        latent_dim: int = 32,
        channels: Sequence[int] = (16, 32, 64, 128),
        norm: str = "batch",
        negative_slope: float = 0.01,
        output: str = "sigmoid",
    ):
        super().__init__()
        self.input_shape = tuple(int(s) for s in input_shape)
        self.latent_dim = int(latent_dim)
        self.channels = tuple(int(c) for c in channels)
        self.norm = norm
        self.negative_slope = float(negative_slope)
        self.output = output
        if len(self.input_shape) != 3:
            raise ValueError(f"input_shape must be (X, Y, Z), got {self.input_shape}")
        if not self.channels:
            raise ValueError("channels must list at least one encoder block")
        step = 2 ** len(self.channels)
        if any(s % step for s in self.input_shape):
            raise ValueError(
                f"input shape {self.input_shape} is not divisible by 2**{len(self.channels)} = {step}: "
                f"fit it with latentbids.model.grid.fit_grid"
            )
        if self.latent_dim < 1:
            raise ValueError("latent_dim must be >= 1")
        if output not in ("sigmoid", "linear"):
            raise ValueError(f"unknown output activation {output!r}")
        self.bottom_shape = tuple(s // step for s in self.input_shape)
        flat = self.channels[-1] * math.prod(self.bottom_shape)

        blocks, cin = [], 1
        for cout in self.channels:
            blocks += [
                nn.Conv3d(cin, cout, kernel_size=3, stride=2, padding=1, bias=norm == "none"),
                _norm(norm, cout),
                nn.LeakyReLU(self.negative_slope, inplace=True),
            ]
            cin = cout
        self.encoder = nn.Sequential(*blocks)
        self.to_latent = nn.Linear(flat, self.latent_dim)
        self.from_latent = nn.Linear(self.latent_dim, flat)

        blocks = []
        rev = list(reversed(self.channels))
        for cin, cout in zip(rev, rev[1:] + [self.channels[0]]):
            blocks += [
                nn.ConvTranspose3d(
                    cin, cout, kernel_size=4, stride=2, padding=1, bias=norm == "none"
                ),
                _norm(norm, cout),
                nn.LeakyReLU(self.negative_slope, inplace=True),
            ]
        blocks.append(nn.Conv3d(self.channels[0], 1, kernel_size=3, padding=1))
        self.decoder = nn.Sequential(*blocks)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, X, Y, Z)`` -> ``(B, K)``."""
        h = self.encoder(x)
        return self.to_latent(torch.flatten(h, 1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, K)`` -> ``(B, 1, X, Y, Z)``."""
        h = self.from_latent(z).view(z.shape[0], self.channels[-1], *self.bottom_shape)
        if self.decoder[0].weight.is_contiguous(memory_format=torch.channels_last_3d) and h.is_cuda:
            h = h.contiguous(memory_format=torch.channels_last_3d)
        out = self.decoder(h)
        return torch.sigmoid(out) if self.output == "sigmoid" else out

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(reconstruction, z)``."""
        z = self.encode(x)
        return self.decode(z), z

    def architecture(self) -> dict:
        """Everything needed to rebuild this network (stored in the model folder)."""
        return {
            "class": type(self).__name__,
            "input_shape": list(self.input_shape),
            "latent_dim": self.latent_dim,
            "channels": list(self.channels),
            "norm": self.norm,
            "negative_slope": self.negative_slope,
            "output": self.output,
            "n_parameters": int(sum(p.numel() for p in self.parameters())),
        }

    @classmethod
    def from_architecture(cls, arch: dict) -> "AutoEncoder3D":
        return cls(
            input_shape=arch["input_shape"],
            latent_dim=arch["latent_dim"],
            channels=arch["channels"],
            norm=arch.get("norm", "batch"),
            negative_slope=arch.get("negative_slope", 0.01),
            output=arch.get("output", "sigmoid"),
        )


def masked_mse(recon: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-volume mean squared error inside ``mask``: ``(B, 1, X, Y, Z)`` x2, mask ``(1, 1, X, Y, Z)``
    -> ``(B,)`` in float32 (the training loss is its mean over the batch)."""
    diff = (recon.float() - target.float()) * mask
    return diff.pow(2).flatten(1).sum(1) / mask.sum()
