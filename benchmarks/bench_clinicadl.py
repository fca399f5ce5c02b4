#!/usr/bin/env python
"""latentbids' autoencoder against ClinicaDL 2.0's ``AutoEncoder`` with the same encoder, in one run.

ClinicaDL 2.0 needs monai 1.5, which pins torch < 2.7, while latentbids runs torch 2.13: the two
cannot share an environment.  So this benchmark **rebuilds** ClinicaDL's ``AutoEncoder`` configuration
in plain PyTorch, layer for layer, from its source (``clinicadl/networks/nn/autoencoder.py``,
``conv_encoder.py``, ``conv_decoder.py``, ``generator.py``, ``mlp.py``; monai's ``Convolution`` and
``ADN`` blocks), for ``AutoEncoder(in_shape=(1, X, Y, Z), latent_size=32, conv_args={"channels": [16,
32, 64, 128], "stride": 2, "padding": 1}, output_act="sigmoid")``:

* encoder: four Conv3d(k3, stride 2, padding 1, bias) blocks, each but the last followed by monai's
  ADN in its default "NDA" order with ClinicaDL's defaults: InstanceNorm3d (no affine) then PReLU (one
  parameter); then Flatten and one Linear to the 32 latent units (``mlp_args=None``);
* decoder (ClinicaDL mirrors the encoder): Linear(32 -> flat), reshape, four ConvTranspose3d(k3,
  stride 2, padding 1, output_padding 1) 128->64->32->16->1, the same ADN after all but the last, and
  the sigmoid.
  2,678,503 parameters at 96x112x96 (the 2.68 M of the issue's profile), 1.79 GFLOP per forward pass.

Every network trains on the same synthetic volumes (``bench_model.make_volumes``), through the same
plain loader (a torch DataLoader over the memory-mapped ``.npy``, as ``bench_model``'s fp32
baseline), with the same step (Adam, lr 1e-4, masked MSE, fp32, contiguous), the same threads, in
one process, the configs interleaved when repeated.  Printed: parameters, GFLOP per forward pass
(counted on the meta device), training and encoding volumes/s (batch over the median step time of
the steady epochs; first epoch and first encoding batch = warm-up), data wait,
the validation loss after the epochs (held-out volumes; a sanity number: two epochs of noise-like
volumes say little about quality, benchmarks/stem_quality.py measures that), and each network's
training speed as a ratio to ClinicaDL's.

    python benchmarks/bench_clinicadl.py --threads 2                       # 96x112x96, 24 volumes
    python benchmarks/bench_clinicadl.py --shape 48 64 48 --n 32 --repeats 3 --threads 2
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_model import PeakRSS, make_volumes  # noqa: E402


def clinicadl_autoencoder(input_shape, latent_dim=32, channels=(16, 32, 64, 128)):
    """ClinicaDL 2.0's ``AutoEncoder`` for the configuration of the module docstring, in plain torch.

    Returns a module whose ``forward(x)`` gives ``(reconstruction, z)`` like latentbids' network.
    """
    import torch
    from torch import nn

    def adn(c):  # monai ADN, ordering "NDA", ClinicaDL's defaults: instance norm (affine=False), PReLU
        return [nn.InstanceNorm3d(c), nn.PReLU()]

    class ClinicaDLAutoEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            blocks, cin = [], 1
            for i, cout in enumerate(channels):
                blocks.append(nn.Conv3d(cin, cout, 3, stride=2, padding=1))
                if i < len(channels) - 1:  # ConvEncoder: the last layer is conv_only
                    blocks += adn(cout)
                cin = cout
            self.encoder = nn.Sequential(*blocks)
            size = list(input_shape)
            for _ in channels:
                size = [(s + 2 - 3) // 2 + 1 for s in size]
            self.bottom = tuple(size)
            flat = channels[-1] * math.prod(size)
            self.to_latent = nn.Linear(flat, latent_dim)
            self.from_latent = nn.Linear(latent_dim, flat)
            rev = list(reversed(channels))
            outs = rev[1:] + [1]
            blocks = []
            for i, (cin, cout) in enumerate(zip(rev, outs)):
                blocks.append(nn.ConvTranspose3d(cin, cout, 3, stride=2, padding=1, output_padding=1))
                if i < len(rev) - 1:  # ConvDecoder: the last layer is conv_only, then output_act
                    blocks += adn(cout)
            self.decoder = nn.Sequential(*blocks)

        def forward(self, x):
            z = self.to_latent(torch.flatten(self.encoder(x), 1))
            h = self.from_latent(z).view(x.shape[0], channels[-1], *self.bottom)
            return torch.sigmoid(self.decoder(h)), z

    return ClinicaDLAutoEncoder()


#: latentbids' networks by their name in this benchmark: the stem each one uses
NETWORKS = {"latentbids-conv": "conv", "latentbids-s2d": "space_to_depth", "latentbids-patch": "patch"}


def build(name, shape, latent, channels, seed=0):
    import torch

    from latentbids.model.network import AutoEncoder3D

    torch.manual_seed(seed)
    if name == "clinicadl":
        return clinicadl_autoencoder(shape, latent, channels)
    return AutoEncoder3D(shape, latent, channels, stem=NETWORKS[name])


def gflop(name, shape, latent, channels) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        net, x = build(name, shape, latent, channels), torch.empty(1, 1, *shape)
        with FlopCounterMode(display=False) as counter:
            net(x)
    return counter.get_total_flops() / 1e9


def run(name, dataset, val, mask, shape, args):
    """Train ``args.epochs`` epochs and encode once, every network the same way.

    Throughput is the batch size over the *median* time of a step (a training step, or a forward
    pass of an encoding batch) of the steady epochs: on a machine shared with other jobs a burst of
    their work slows a few steps, which the median leaves out and a total would not.
    """
    import torch
    from torch.utils.data import DataLoader

    from latentbids.model.network import masked_mse
    from latentbids.utils.denormals import flush_denormals

    net = build(name, shape, args.latent, args.channels).train()
    layout = memory_format(name, args.memory_format)
    fmt = torch.channels_last_3d if layout == "channels_last_3d" else torch.contiguous_format
    net = net.to(memory_format=fmt)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    mask_t = torch.as_tensor(mask)[None, None]
    loader = DataLoader(dataset, batch_size=args.batch, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(0))
    steps, waits = [], []
    with PeakRSS() as mem, flush_denormals(True):
        for epoch in range(args.epochs):
            it = iter(loader)
            while True:
                tw = time.perf_counter()
                try:
                    x = next(it).unsqueeze(1).contiguous(memory_format=fmt)
                except StopIteration:
                    break
                t0 = time.perf_counter()
                opt.zero_grad(set_to_none=True)
                recon, _ = net(x)
                masked_mse(recon, x, mask_t).mean().backward()
                opt.step()
                if epoch:  # the first epoch is warm-up
                    steps.append(time.perf_counter() - t0)
                    waits.append(t0 - tw)
        net = net.eval().to(memory_format=torch.contiguous_format)  # encoding: latentbids' CPU default
        with torch.no_grad():
            xv = torch.from_numpy(val).unsqueeze(1)
            val_loss = float(masked_mse(net(xv)[0], xv, mask_t).mean())
            enc, passes = DataLoader(dataset, batch_size=args.encode_batch, drop_last=True), []
            for i, x in enumerate(enc):
                t0 = time.perf_counter()
                recon, z = net(x.unsqueeze(1))
                masked_mse(recon, x.unsqueeze(1), mask_t)
                if i:  # the first batch is warm-up
                    passes.append(time.perf_counter() - t0)
    return {"train_vol_s": args.batch / float(np.median(steps)),
            "encode_vol_s": args.encode_batch / float(np.median(passes)),
            "data_wait": float(np.sum(waits)) / float(np.sum(steps) + np.sum(waits)),
            "val_loss": val_loss, "peak_mib": mem.mib, "layout": layout}


def memory_format(name: str, choice: str) -> str:
    """The memory format a network trains in: ``auto`` is what latentbids' training picks on a CPU for
    that network's stem (:func:`latentbids.model.fast_path.resolve_fast_path`); ClinicaDL's network
    stays contiguous under ``auto`` (its own training does not change the layout)."""
    if choice != "auto":
        return choice
    if name not in NETWORKS:
        return "contiguous"
    from latentbids.model.fast_path import resolve_fast_path

    return resolve_fast_path("cpu", True, True, stem=NETWORKS[name]).memory_format


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[96, 112, 96])
    parser.add_argument("--n", type=int, default=24, help="training volumes")
    parser.add_argument("--n-val", type=int, default=8, help="held-out volumes for the validation loss")
    parser.add_argument("--epochs", type=int, default=2, help="first one is warm-up")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--encode-batch", type=int, default=8)
    parser.add_argument("--latent", type=int, default=32)
    parser.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave)")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved repeats; the median is shown")
    parser.add_argument("--memory-format", default="auto", choices=["auto", "contiguous", "channels_last_3d"],
                        help="layout of every network and batch (auto: what latentbids' CPU training uses)")
    parser.add_argument("--networks", nargs="+",
                        default=["clinicadl", "latentbids-patch", "latentbids-s2d", "latentbids-conv"])
    args = parser.parse_args(argv)

    import tempfile

    import torch
    from torch.utils.data import Dataset

    if args.threads:
        torch.set_num_threads(args.threads)
    shape = tuple(args.shape)
    mask = np.zeros(shape, dtype=np.float32)
    mask[tuple(slice(s // 8, s - s // 8) for s in shape)] = 1.0
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="latentbids-bench-") as tmp:
        vols = make_volumes(args.n + args.n_val, shape)
        cache = np.lib.format.open_memmap(Path(tmp) / "cache.npy", mode="w+", dtype=np.float32,
                                          shape=(args.n,) + shape)
        cache[:] = vols[: args.n]
        cache.flush()
        del cache
        data = np.load(Path(tmp) / "cache.npy", mmap_mode="r")

        class MemmapSet(Dataset):
            def __len__(self):
                return data.shape[0]

            def __getitem__(self, i):
                return torch.from_numpy(np.array(data[i]))

        results = {name: [] for name in args.networks}
        for _ in range(max(1, args.repeats)):
            for name in args.networks:
                results[name].append(run(name, MemmapSet(), vols[args.n:], mask, shape, args))
                load.append(os.getloadavg()[0])
    rows = {name: {k: (runs[0][k] if isinstance(runs[0][k], str) else float(np.median([r[k] for r in runs])))
                   for k in runs[0]} for name, runs in results.items()}
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    print(f"# bench_clinicadl: {cpu}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, torch "
          f"{torch.__version__}; load average {min(load):.1f}-{max(load):.1f} during the run")
    print(f"# shape {shape}, {args.n} training + {args.n_val} held-out volumes, batch {args.batch}, K {args.latent}, "
          f"channels {args.channels}, {args.epochs} epochs (first = warm-up), fp32, DataLoader over a memmap, "
          f"median of {max(1, args.repeats)} interleaved repeats")
    base = rows.get("clinicadl")
    header = ("network", "layout", "parameters", "GFLOP/fwd", "train vol/s", "x ClinicaDL", "encode vol/s",
              "x ClinicaDL", "data wait", f"val loss ({args.epochs} ep)", "peak MiB")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, r in rows.items():
        n_par = sum(p.numel() for p in build(name, shape, args.latent, args.channels).parameters())
        ratio_t = f"{r['train_vol_s'] / base['train_vol_s']:.2f}" if base else "n/a"
        ratio_e = f"{r['encode_vol_s'] / base['encode_vol_s']:.2f}" if base else "n/a"
        flop = gflop(name, shape, args.latent, args.channels)
        print(f"| {name} | {r['layout'].replace('_3d', '')} | {n_par:,} | {flop:.2f} | {r['train_vol_s']:.2f} | "
              f"{ratio_t} | {r['encode_vol_s']:.2f} | {ratio_e} | {100 * r['data_wait']:.1f} % | {r['val_loss']:.5f} | "
              f"{r['peak_mib']:.0f} |")
    return rows


if __name__ == "__main__":
    main()
