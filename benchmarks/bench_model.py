#!/usr/bin/env python
"""Benchmark the autoencoder's data path and training/encoding throughput.

Runs, in one process and on the same synthetic volumes:

* ``nifti-loader``  a torch DataLoader that decodes one ``.nii.gz`` per item each step (what the
                    cache exists to avoid), fp32;
* ``fp32-default``  a torch DataLoader over the memory-mapped cache, fp32, contiguous layout, the
                    plain PyTorch training step (the baseline the ratios are taken against);
* ``fast``          latentbids' own path (:func:`latentbids.model.training.train_autoencoder` and
                    :func:`latentbids.model.encoding.iter_encode`): prefetch thread over the memmap on
                    CPU; on CUDA the training set resident on the GPU, bf16 autocast, channels_last_3d.

and prints training and encoding throughput (volumes/s, steady state: the first training epoch and
the first encoding batch are warm-up, untimed, so cuDNN autotuning and first-call costs stay out),
peak memory (GPU: max allocated, reset before each config; CPU: peak growth of the process RSS
during the phase, sampled) and the share of step time spent waiting for data, with ratios against
``fp32-default``.  On CUDA every timed region starts and ends with ``torch.cuda.synchronize``; all
configs run under the same backend flags (``set_determinism(False)``: cuDNN autotuning, TF32).
The data-wait share is host-side time blocked on the next batch (loader / prefetch thread / the
resident gather), a proxy for GPU idle time.

``--force-fast`` runs the ``fast`` config through the CPU twin of the CUDA path on any device (bf16
autocast, channels_last_3d, resident data; see :func:`latentbids.model.fast_path.resolve_fast_path`):
on CPU it checks the code path, not a speed target (CPU bf16 is slow without AMX).

``--stem`` picks the network's ends for every config (``[model] stem``; the default is the config's),
``--compile`` the ``fast`` config's ``[model] compile`` (``auto``: CUDA only).  Under the table, the
largest cohort each data placement holds for this grid (:func:`latentbids.model.memory.capacity`):
on CUDA from the memory the device has free; on CPU for ``--device-memory-gib`` (default 80 and 141,
an H100's and an H200's), labelled as what it *would* be there.

Example (GPU targets, one H100/H200 at 96x112x96, the default model, end to end with data: >= 1,000
training and >= 3,000 encoding vol/s, data wait < 10 % of step time)::

    python benchmarks/bench_model.py --device cuda --shape 96 112 96 --n 512 --epochs 3 --encode-batch 64 \
        --skip-nifti --stem conv
    python benchmarks/bench_model.py --device cuda --shape 96 112 96 --n 512 --epochs 3 --encode-batch 64 \
        --skip-nifti --stem space_to_depth
    python benchmarks/bench_model.py --device cpu --shape 48 64 48 --n 24 --epochs 2 --threads 2
    python benchmarks/bench_model.py --device cpu --shape 32 32 32 --n 16 --epochs 2 --threads 2 \
        --force-fast --skip-nifti
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


class PeakRSS:
    """Sample this process's resident memory in a thread; ``peak - start`` in MiB."""

    def __init__(self, interval=0.01):
        self.interval = interval

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self):
        self.start = self.peak = self.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())

    @property
    def mib(self) -> float:
        return (self.peak - self.start) / 2**20


def make_volumes(n, shape, seed=0) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    out = np.empty((n,) + tuple(shape), dtype=np.float32)
    for i in range(n):
        vol = gaussian_filter(rng.random(shape, dtype=np.float32), 2.0)
        vol -= vol.min()
        out[i] = vol / vol.max()
    return out


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_gpu(device):
    import torch

    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def _reset_gpu(device):
    """Per config: drop the previous config's cached blocks and restart the peak counter."""
    import gc

    import torch

    if device.type == "cuda":
        gc.collect()
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def run_loader_baseline(name, dataset, mask, settings, device, epochs, encode_batch):
    """Plain PyTorch: DataLoader, fp32, contiguous, model(x) / loss.backward() / step."""
    import torch
    from torch.utils.data import DataLoader

    from latentbids.model.network import masked_mse
    from latentbids.model.training import build_model

    _reset_gpu(device)
    pin = device.type == "cuda"
    model = build_model(settings, mask.shape).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    mask_t = torch.as_tensor(mask, device=device)[None, None]
    gen = torch.Generator().manual_seed(0)
    loader = DataLoader(
        dataset,
        batch_size=settings.batch_size,
        shuffle=True,
        generator=gen,
        pin_memory=pin,
    )
    n_vol, t_steady, wait = 0, 0.0, 0.0
    with PeakRSS() as mem:
        for epoch in range(epochs):
            _sync(device)
            t0 = time.perf_counter()
            it = iter(loader)
            while True:
                tw = time.perf_counter()
                try:
                    x = next(it)
                except StopIteration:
                    break
                # pinned + non_blocking: a blocking copy would wait for the previous step's
                # kernels and count GPU compute as data wait
                x = x.to(device, non_blocking=pin).unsqueeze(1)
                if epoch:
                    wait += time.perf_counter() - tw
                opt.zero_grad(set_to_none=True)
                recon, _ = model(x)
                masked_mse(recon, x, mask_t).mean().backward()
                opt.step()
                if epoch:
                    n_vol += x.shape[0]
            _sync(device)
            if epoch:
                t_steady += time.perf_counter() - t0
        model.eval()
        enc_loader = DataLoader(dataset, batch_size=encode_batch, shuffle=False, pin_memory=pin)

        def encode_pass(limit=None):
            n = 0
            with torch.no_grad():
                for x in enc_loader:
                    x = x.to(device, non_blocking=pin).unsqueeze(1)
                    recon, z = model(x)
                    err = masked_mse(recon, x, mask_t)
                    recon.cpu(), z.cpu(), err.cpu()
                    n += x.shape[0]
                    if limit is not None and n >= limit:
                        break
            return n

        encode_pass(limit=1)  # warm-up batch (autotuning for the encoding shapes), untimed
        _sync(device)
        t0 = time.perf_counter()
        n_enc = encode_pass()
        _sync(device)
        t_enc = time.perf_counter() - t0
    return {
        "config": name,
        "train_vol_s": n_vol / max(t_steady, 1e-9),
        "encode_vol_s": n_enc / t_enc,
        "data_wait_share": wait / max(t_steady, 1e-9),
        "peak_mib": _peak_gpu(device) if device.type == "cuda" else mem.mib,
    }


TWIN = {"precision": "bf16", "memory_format": "channels_last_3d", "placement": "resident"}


def run_fast(data, mask, settings, device, epochs, encode_batch, force=False, compile="auto"):
    """latentbids' own training and encoding; ``force``: the CPU twin of the CUDA fast path."""
    from latentbids.model.encoding import iter_encode
    from latentbids.model.training import train_autoencoder

    _reset_gpu(device)
    n = data.shape[0]
    val = [n - 1]
    train = list(range(n - 1))
    path = TWIN if force else {}
    with PeakRSS() as mem:
        # epoch times come from train_autoencoder: it synchronises the GPU at each epoch's end
        res = train_autoencoder(data, mask, train, val, settings, device, scale=1.0, compile=compile, **path)
        hist = res.history.iloc[1:] if len(res.history) > 1 else res.history

        def encode_pass(rows):
            # as the group level encodes: streamed batches (resident only when forced)
            return sum(
                len(batch.rows)
                for batch in iter_encode(
                    res.model, data, rows, mask, device, 1.0, encode_batch, fast=settings.fast,
                    resident=False, **path,
                )
            )

        encode_pass(np.arange(min(n, encode_batch)))  # warm-up batch, untimed
        _sync(device)
        t0 = time.perf_counter()
        n_enc = encode_pass(np.arange(n))
        _sync(device)
        t_enc = time.perf_counter() - t0
    seconds = float(hist["seconds"].sum())
    fp = res.fast_path
    return {
        "config": "fast (" + ", ".join([fp["precision"], fp["memory_format"]]
                                       + (["torch.compile"] if res.compiled else [])) + ")"
        + (" forced" if force else ""),
        "train_vol_s": len(train) * len(hist) / seconds,
        "encode_vol_s": n_enc / t_enc,
        "data_wait_share": float(hist["data_wait_s"].sum()) / seconds,
        "peak_mib": _peak_gpu(device) if device.type == "cuda" else mem.mib,
        "placement": res.placement,
        "fast_path": fp,
        "micro_batch": res.micro_batch,
        "oom_events": len(res.oom_events),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--shape", type=int, nargs=3, default=[48, 64, 48])
    parser.add_argument("--n", type=int, default=24, help="volumes")
    parser.add_argument("--epochs", type=int, default=2, help="first one is warm-up")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--encode-batch", type=int, default=16)
    parser.add_argument("--latent", type=int, default=32)
    parser.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave)")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="run the configs this many times, interleaved; report the median of each",
    )
    parser.add_argument("--skip-nifti", action="store_true", help="skip the per-item NIfTI loader")
    parser.add_argument("--stem", default=None, help="conv or space_to_depth (default: [model] stem)")
    parser.add_argument("--compile", default="auto", help="the fast config's [model] compile: auto, on, off")
    parser.add_argument("--device-memory-gib", type=float, nargs="+", default=[80.0, 141.0],
                        help="on CPU: the device memory sizes to report the largest cohorts for")
    parser.add_argument(
        "--force-fast",
        action="store_true",
        help="run the fast config as bf16 + channels_last_3d + resident data on any device "
        "(the CPU twin of the CUDA path: checks the code path on CPU, not its speed)",
    )
    args = parser.parse_args(argv)

    import nibabel as nib
    import torch
    from torch.utils.data import Dataset

    from latentbids.config import ModelConfig
    from latentbids.model.device import as_torch_device, set_determinism
    from latentbids.model.training import TrainSettings
    from latentbids.utils.devices import describe_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = as_torch_device(args.device)
    # same backend flags for every config (the baseline would otherwise run its first repeat
    # without cuDNN autotuning, which train_autoencoder switches on for the later configs)
    set_determinism(False, device)
    shape = tuple(args.shape)
    settings = TrainSettings(
        latent_dim=args.latent,
        channels=args.channels,
        batch_size=args.batch,
        max_epochs=args.epochs,
        patience=args.epochs + 1,
        seed=0,
        stem=args.stem or ModelConfig().stem,
    )
    mask = np.zeros(shape, dtype=np.float32)
    sl = tuple(slice(s // 8, s - s // 8) for s in shape)
    mask[sl] = 1.0

    with tempfile.TemporaryDirectory(prefix="latentbids-bench-") as tmp:
        tmp = Path(tmp)
        vols = make_volumes(args.n, shape)
        cache = np.lib.format.open_memmap(
            tmp / "cache.npy", mode="w+", dtype=np.float32, shape=vols.shape
        )
        cache[:] = vols
        cache.flush()
        del cache
        data = np.load(tmp / "cache.npy", mmap_mode="r")

        class MemmapSet(Dataset):
            def __len__(self):
                return data.shape[0]

            def __getitem__(self, i):
                return torch.from_numpy(np.array(data[i]))

        class NiftiSet(Dataset):
            def __init__(self):
                self.paths = []
                for i in range(args.n):
                    p = tmp / f"v{i}.nii.gz"
                    nib.save(nib.Nifti1Image(vols[i], np.eye(4)), str(p))
                    self.paths.append(p)

            def __len__(self):
                return len(self.paths)

            def __getitem__(self, i):
                return torch.from_numpy(nib.load(str(self.paths[i])).get_fdata(dtype=np.float32))

        base_settings = TrainSettings(
            **{**settings.fingerprint(), "fast": False, "resident": False}
        )
        nifti = None if args.skip_nifti else NiftiSet()
        runs = []
        for _ in range(max(1, args.repeats)):
            one = [
                run_loader_baseline(
                    "fp32-default",
                    MemmapSet(),
                    mask,
                    base_settings,
                    device,
                    args.epochs,
                    args.encode_batch,
                )
            ]
            if nifti is not None:
                one.append(
                    run_loader_baseline(
                        "nifti-loader",
                        nifti,
                        mask,
                        base_settings,
                        device,
                        args.epochs,
                        args.encode_batch,
                    )
                )
            one.append(
                run_fast(
                    data, mask, settings, device, args.epochs, args.encode_batch, args.force_fast,
                    args.compile,
                )
            )
            runs.append(one)
        rows = []
        for i, first in enumerate(runs[0]):
            row = dict(first)
            for key in ("train_vol_s", "encode_vol_s", "data_wait_share", "peak_mib"):
                row[key] = float(np.median([run[i][key] for run in runs]))
            rows.append(row)

    base = rows[0]
    print(
        f"# latentbids bench_model: device {device} ({describe_device(device)}), host {platform.node()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}"
    )
    print(
        f"# shape {shape}, {args.n} volumes, batch {args.batch}, K {args.latent}, channels {args.channels}, "
        f"stem {settings.stem}, "
        f"{args.epochs} epochs (first = warm-up), median of {max(1, args.repeats)} interleaved repeats"
    )
    if device.type == "cuda":
        print(
            f"# flags: cudnn.benchmark {torch.backends.cudnn.benchmark}, "
            f"cudnn.allow_tf32 {torch.backends.cudnn.allow_tf32}, "
            f"matmul.allow_tf32 {torch.backends.cuda.matmul.allow_tf32}"
        )
    header = (
        "config",
        "train vol/s",
        "x base",
        "encode vol/s",
        "x base",
        "data wait",
        "peak MiB",
        "x base",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        peak_ratio = (
            r["peak_mib"] / base["peak_mib"]
            if base["peak_mib"] and base["peak_mib"] > 0
            else float("nan")
        )
        print(
            f"| {r['config']} | {r['train_vol_s']:.2f} | {r['train_vol_s'] / base['train_vol_s']:.2f} | "
            f"{r['encode_vol_s']:.2f} | {r['encode_vol_s'] / base['encode_vol_s']:.2f} | "
            f"{100 * r['data_wait_share']:.1f} % | {r['peak_mib']:.0f} | {peak_ratio:.2f} |"
        )
    fast = rows[-1]
    print(
        f"# fast path: {fast['fast_path']['precision']}, {fast['fast_path']['memory_format']}, "
        f"data placement {fast['placement']}, micro-batch {fast['micro_batch']}, "
        f"OOM retries {fast['oom_events']}"
    )
    if device.type == "cuda":
        fast_wait = fast["data_wait_share"]
        print(f"# targets (H100/H200, 96x112x96): train {fast['train_vol_s']:.0f} / 1000 vol/s, encode "
              f"{fast['encode_vol_s']:.0f} / 3000 vol/s, data wait {100 * fast_wait:.1f} % / 10 %")
    print_capacity(shape, device, settings.gpu_memory_share, args.device_memory_gib)
    return rows


def print_capacity(shape, device, share, sizes_gib):
    """The largest cohort each data placement holds for this grid (from this device's free memory on
    CUDA; on CPU for the given device memory sizes, labelled as such)."""
    import torch

    from latentbids.model.memory import capacity, free_cuda_memory

    host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if device.type == "cuda":
        free = free_cuda_memory(device)
        found = [(f"{torch.cuda.get_device_name(device)}, {free / 2**30:.1f} GiB free now", free)]
    else:
        found = [(f"NOT MEASURED: what a device with {g:g} GiB would hold (this run is on CPU)", int(g * 2**30))
                 for g in sizes_gib]
    for label, size in found:
        cap = capacity(shape, size, share, host)
        print(f"# largest cohort of {'x'.join(map(str, shape))} maps, {label}:")
        for placement, volumes, bound in cap.rows():
            print(f"#   {placement}: {volumes:,} volumes ({bound})")


if __name__ == "__main__":
    main()
