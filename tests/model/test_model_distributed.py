"""Data-parallel training (DistributedDataParallel, gloo on CPU) launched by torchrun: two processes
train what one process trains, and write the same model folder; the checks that need no launch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import ddp_driver  # noqa: E402
from model_testdata import make_cohort, toy_template  # noqa: E402

from latentbids.errors import UsageError  # noqa: E402
from latentbids.model import distributed  # noqa: E402
from latentbids.model.batches import shard_of  # noqa: E402

pytestmark = pytest.mark.slow  # make check skips this module (see Makefile)

torch.set_num_threads(1)
DRIVER = Path(__file__).with_name("ddp_driver.py")

#: training and validation loss, two processes vs one, every epoch of every fold (relative):
#: without batch norm only the order of float sums differs (seen: validation equal, training 8e-8)
TOLERANCE_NO_NORM = 1e-5
#: with batch norm on CPU each process normalises its half of the batch (PyTorch's SyncBatchNorm is
#: CUDA-only): close, not equal (seen: validation 3e-5, training 2.4e-3 at 3 epochs of 2 + 2 volumes)
TOLERANCE_BATCH_NORM = 0.02


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc): torchrun starts each worker in a session of its own,
    so killing torchrun's process group leaves them running."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def torchrun(args, nproc=2, timeout=180, env=None):
    """``python -m torch.distributed.run --standalone`` (rendezvous on a free local port), its output
    in a file: torchrun's workers run in sessions of their own, so a pipe would stay open as long as
    any of them lives.  On timeout every process below torchrun is killed, then torchrun, and the
    test fails with the output so far; no process outlives the test.  gloo talks over the loopback
    interface (``GLOO_SOCKET_IFNAME=lo``): a host name that does not resolve (sandboxed CI without a
    network) would otherwise make it wait on the lookup."""
    import tempfile

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "--max-restarts=0", *map(str, args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", **(env or {})}
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, env=env,
                                start_new_session=True)
        try:
            proc.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            for pid in [*_descendants(proc.pid), proc.pid]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait()
        log.seek(0)
        out = log.read()
    if timed_out:
        pytest.fail(f"torchrun did not finish in {timeout} s:\n{out[-4000:]}")
    return proc.returncode, out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same training as one process (in this process) and as two (torchrun, gloo)."""
    tmp = tmp_path_factory.mktemp("ddp")
    tpl = toy_template()
    records = make_cohort(tmp / "gm", tpl, n_subjects=9, two_sessions=())
    roots = {}
    for name in ("one", "two"):
        roots[name] = tmp / name
        roots[name].mkdir()
        records.to_csv(roots[name] / "records.tsv", sep="\t", index=False)
    ddp_driver.main(roots["one"], ["none", "batch"])
    logs = []
    for norm in ("none", "batch"):  # one launch per run: a real group level joins one process group
        code, log = torchrun([DRIVER, roots["two"], norm])  # per process (see ddp_driver's docstring)
        assert code == 0, log[-4000:]
        logs.append(log)
    return roots, "\n".join(logs)


def _curves(root: Path, norm: str) -> pd.DataFrame:
    return pd.read_csv(json.loads((root / norm / "done.json").read_text())["curves"], sep="\t")


@pytest.mark.parametrize("norm, tolerance", [("none", TOLERANCE_NO_NORM), ("batch", TOLERANCE_BATCH_NORM)])
def test_two_processes_give_the_validation_curve_of_one(runs, norm, tolerance):
    roots, _ = runs
    one, two = _curves(roots["one"], norm), _curves(roots["two"], norm)
    assert list(two["fold"]) == list(one["fold"]) and list(two["epoch"]) == list(one["epoch"])
    np.testing.assert_allclose(two["val_loss"], one["val_loss"], rtol=tolerance)
    np.testing.assert_allclose(two["train_loss"], one["train_loss"], rtol=tolerance)
    # process 0 alone returned (and wrote) the outputs; process 1 trained and ended
    seen = [json.loads((roots["two"] / norm / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [s["returned"] for s in seen] == [True, False] and {s["world"] for s in seen} == {"2"}


def test_two_processes_write_the_same_model_folder(runs):
    roots, log = runs
    for norm in ("none", "batch"):
        folders = [Path(json.loads((roots[r] / norm / "done.json").read_text())["model_dir"]) for r in ("one", "two")]
        layouts = [sorted(p.relative_to(f).as_posix() for p in f.rglob("*")) for f in folders]
        assert layouts[0] == layouts[1] and "weights/fold-2.pt" in layouts[0]
        metas = [json.loads((f / "model.json").read_text()) for f in folders]
        assert set(metas[0]) == set(metas[1])
        assert metas[0]["architecture"] == metas[1]["architecture"]
        assert [f["processes"] for f in metas[1]["folds"]] == [2, 2]
        assert [f["processes"] for f in metas[0]["folds"]] == [1, 1]
        outs = [f.parents[1] for f in folders]  # every subject's outputs, written once, by process 0
        names = [sorted(p.name for p in out.rglob("*_latent.tsv")) for out in outs[:2]]
        assert names[0] == names[1]
    assert "Data-parallel training: process 1 of 2 (gloo" in log


def test_shards_cover_every_global_batch_once():
    batch = np.array([3, 8, 11, 20, 21])
    parts = [shard_of(batch, r, 2) for r in range(2)]
    assert [p.tolist() for p in parts] == [[3, 8, 11], [20, 21]]
    assert [shard_of(np.array([5]), r, 3).tolist() for r in range(3)] == [[5], [], []]


def test_process_device_refuses_more_processes_than_gpus(monkeypatch):
    from latentbids.utils.devices import DeviceSpec, process_device

    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    with pytest.raises(UsageError) as info:
        process_device("cuda")
    assert info.value.exit_code == 64 and "\n" not in str(info.value)
    assert "torchrun started 4 processes on this node but only 2 GPU(s) are visible" in info.value.message
    assert "--nproc-per-node 2" in info.value.message
    with pytest.raises(UsageError, match="pins one GPU"):
        process_device("cuda:1")
    with pytest.raises(UsageError, match="--device 'gpu' is not valid"):  # not a silent CPU run under torchrun
        process_device("gpu")
    assert process_device("cpu") == DeviceSpec("cpu")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert process_device("cuda") == DeviceSpec("cuda", 1)  # each process the GPU of its LOCAL_RANK
    assert process_device("auto") == DeviceSpec("cuda", 1)


def test_batch_smaller_than_the_processes_is_refused():
    dist = distributed.Distributed(rank=0, world_size=4, backend="gloo")
    with pytest.raises(UsageError, match="--batch-size 2 cannot be split over 4 processes: use --batch-size 4"):
        distributed.check_batch(2, dist)
    distributed.check_batch(4, dist)
    assert distributed.setup("cpu")[0] is distributed.SINGLE  # no torchrun: one process
