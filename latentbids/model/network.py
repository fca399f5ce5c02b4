"""The 3D convolutional autoencoder of METHOD.md section 3.

Encoder: ``len(channels)`` blocks of Conv3d(k3) + norm + LeakyReLU (default channels 16-32-64-128),
each halving the grid, then a linear map to ``latent_dim`` units (the linear bottleneck).  Decoder: a
linear map back to the coarsest feature map, then mirrored blocks of ConvTranspose3d(k4, stride 2) +
norm + LeakyReLU, an output convolution to one channel and a sigmoid (probability maps; modulated
maps are divided by one training-set constant before they enter, see
:mod:`latentbids.workflows.group.training`).

The network's two ends (``stem``) come in three shapes, recorded in the model folder (:data:`STEM_ENDS`):

* ``"patch"`` (the default since issue 19): the map is first rearranged without loss into 8 channels at
  half resolution (3-D pixel unshuffle: each 2x2x2 block becomes 8 channels) and the first
  convolution is a k1 8->c0 (a patch embedding: the same as a stride-2 k2 convolution of the map);
  the decoder's last transposed convolution brings the features to half resolution, a Conv3d(k3)
  c0->8 predicts the 8 voxels of every 2x2x2 block and a depth-to-space rearrangement (3-D pixel
  shuffle) puts them in place.  Nothing runs at full resolution but the two rearrangements, the
  sigmoid and the loss.  Why this one: it trains as fast as ClinicaDL's same-encoder autoencoder on a
  CPU, its validation loss per epoch equals ``space_to_depth``'s (the k3 entry bought nothing), and a
  k1 exit doubles the loss (BENCHMARKS.md, benchmarks/stem_quality.py).
* ``"space_to_depth"``: as ``patch`` with a stride-1 Conv3d(k3) 8->c0 entry, which can express the conv
  stem's stride-2 k3 convolution exactly (that one reads full-resolution offsets -1..1, which lie in
  half-resolution cells i-1..i); together, the k3 exit and the depth-to-space can express a
  ConvTranspose3d(k4, stride 2) to one channel exactly.
* ``"conv"`` (the network of latentbids <= 0.1): the first block is a stride-2 convolution of the
  one-channel full-resolution map, and the decoder ends with a ConvTranspose3d c0->c0 (k4, stride 2)
  + norm + LeakyReLU and a Conv3d(k3) c0->1, both at full resolution.  That end costs ~6 of the 7.87
  GFLOP of a forward pass at 96x112x96 (4.42 for ``space_to_depth``) and makes training 5-10x
  slower on a CPU; per epoch it learns faster (a c0-channel layer with its norm and activation at
  full resolution, which the rearranged ends leave out), per second of training much slower.

The input shape must be divisible by ``2**len(channels)`` (see :mod:`latentbids.model.grid`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

NORMS = ("batch", "instance", "group", "none")


@dataclass(frozen=True)
class Ends:
    """What a stem name means: how the network enters and leaves the full-resolution grid.

    Parameters
    ----------
    rearrange : bool
        Space-to-depth on entry and depth-to-space on exit (else the conv stem's full-resolution layers).
    entry_kernel, exit_kernel : int
        Kernels of the first encoder and the last decoder convolution, both at half resolution when
        rearranged.
    """

    rearrange: bool
    entry_kernel: int = 3
    exit_kernel: int = 3

    @property
    def channels_last_on_cpu(self) -> bool:
        """Whether training on a CPU should hold this network in ``channels_last_3d``: oneDNN's
        convolutions with 8-32 channels at half resolution run 1.1-1.5x faster that way (fp32, same
        arithmetic; BENCHMARKS.md), while the conv stem's 1-channel full-resolution layers do not gain."""
        return self.rearrange


#: every stem a model folder may name (model.json ``architecture.stem``), in the order they came
STEM_ENDS = {
    "conv": Ends(rearrange=False),
    "space_to_depth": Ends(rearrange=True),
    "patch": Ends(rearrange=True, entry_kernel=1),
}
STEMS = tuple(STEM_ENDS)


class SpaceToDepth3d(nn.Module):
    """``(B, C, X, Y, Z)`` -> ``(B, 8C, X/2, Y/2, Z/2)``: every 2x2x2 block becomes 8 channels
    (3-D pixel unshuffle; channel ``8c + 4i + 2j + k`` holds offset ``(i, j, k)`` of channel ``c``).

    Parameters
    ----------
    None
        No weights and no settings; X, Y and Z of the input must be even.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, nx, ny, nz = x.shape
        x = x.reshape(b, c, nx // 2, 2, ny // 2, 2, nz // 2, 2)
        return x.permute(0, 1, 3, 5, 7, 2, 4, 6).reshape(b, c * 8, nx // 2, ny // 2, nz // 2)


class DepthToSpace3d(nn.Module):
    """The inverse of :class:`SpaceToDepth3d`: ``(B, 8C, X, Y, Z)`` -> ``(B, C, 2X, 2Y, 2Z)``.

    Parameters
    ----------
    None
        No weights and no settings; the input's channels must be a multiple of 8.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c8, nx, ny, nz = x.shape
        x = x.reshape(b, c8 // 8, 2, 2, 2, nx, ny, nz)
        return x.permute(0, 1, 5, 2, 6, 3, 7, 4).reshape(b, c8 // 8, 2 * nx, 2 * ny, 2 * nz)


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
    stem : {"patch", "space_to_depth", "conv"}
        The network's two ends (see the module docstring; default ``patch``).  Both keep the parameter names of the
        other layers, so ``encoder.0`` is the first convolution either way.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        latent_dim: int = 32,
        channels: Sequence[int] = (16, 32, 64, 128),
        norm: str = "batch",
        negative_slope: float = 0.01,
        output: str = "sigmoid",
        stem: str = "patch",
    ):
        super().__init__()
        self.input_shape = tuple(int(s) for s in input_shape)
        self.latent_dim = int(latent_dim)
        self.channels = tuple(int(c) for c in channels)
        self.norm = norm
        self.negative_slope = float(negative_slope)
        self.output = output
        self.stem = stem
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}: use one of {', '.join(STEMS)}")
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

        ends = STEM_ENDS[stem]
        s2d = ends.rearrange
        # conv: every encoder block halves the grid; rearranged: the rearrangement halves it and the
        # first convolution keeps it
        self.space_to_depth = SpaceToDepth3d() if s2d else nn.Identity()
        blocks, cin = [], 8 if s2d else 1
        for i, cout in enumerate(self.channels):
            first = s2d and i == 0
            kernel = ends.entry_kernel if first else 3
            blocks += [
                nn.Conv3d(cin, cout, kernel_size=kernel, stride=1 if first else 2, padding=kernel // 2,
                          bias=norm == "none"),
                _norm(norm, cout),
                nn.LeakyReLU(self.negative_slope, inplace=True),
            ]
            cin = cout
        self.encoder = nn.Sequential(*blocks)
        self.to_latent = nn.Linear(flat, self.latent_dim)
        self.from_latent = nn.Linear(self.latent_dim, flat)

        blocks = []
        rev = list(reversed(self.channels))
        # conv: one transposed convolution per encoder block (the last one c0->c0 at full
        # resolution); rearranged: one fewer, the last rearrangement does the final doubling
        for cin, cout in zip(rev, rev[1:] + ([] if s2d else [self.channels[0]])):
            blocks += [
                nn.ConvTranspose3d(
                    cin, cout, kernel_size=4, stride=2, padding=1, bias=norm == "none"
                ),
                _norm(norm, cout),
                nn.LeakyReLU(self.negative_slope, inplace=True),
            ]
        blocks.append(nn.Conv3d(self.channels[0], 8 if s2d else 1, kernel_size=ends.exit_kernel,
                                padding=ends.exit_kernel // 2))
        self.decoder = nn.Sequential(*blocks)
        self.depth_to_space = DepthToSpace3d() if s2d else nn.Identity()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, X, Y, Z)`` -> ``(B, K)``."""
        h = self.space_to_depth(x)
        if self.stem != "conv" and self._channels_last():
            h = h.contiguous(memory_format=torch.channels_last_3d)
        h = self.encoder(h)
        return self.to_latent(torch.flatten(h, 1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, K)`` -> ``(B, 1, X, Y, Z)``."""
        h = self.from_latent(z).view(z.shape[0], self.channels[-1], *self.bottom_shape)
        if self._channels_last():
            h = h.contiguous(memory_format=torch.channels_last_3d)
        out = self.depth_to_space(self.decoder(h))
        return torch.sigmoid(out) if self.output == "sigmoid" else out

    def _channels_last(self) -> bool:
        """Whether the model was moved to ``channels_last_3d`` (inputs rearranged inside the
        network are then handed to the convolutions in that layout too)."""
        return self.encoder[0].weight.is_contiguous(memory_format=torch.channels_last_3d)

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
            "stem": self.stem,
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
            stem=arch.get("stem", "conv"),  # model folders of latentbids <= 0.1 have no stem
        )


def masked_mse(recon: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-volume mean squared error inside ``mask``: ``(B, 1, X, Y, Z)`` x2, mask ``(1, 1, X, Y, Z)``
    -> ``(B,)`` in float32 (the training loss is its mean over the batch).

    Parameters
    ----------
    recon : torch.Tensor of shape (B, 1, X, Y, Z)
        The reconstruction (any float type; computed in float32).
    target : torch.Tensor of shape (B, 1, X, Y, Z)
        The input (model units).
    mask : torch.Tensor of shape (1, 1, X, Y, Z), float32
        1 inside the loss mask, 0 outside.

    Returns
    -------
    torch.Tensor of shape (B,), float32
        The squared differences summed inside the mask, divided by the mask's voxel count.
    """
    diff = (recon.float() - target.float()) * mask
    return diff.pow(2).flatten(1).sum(1) / mask.sum()
