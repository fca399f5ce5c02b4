"""The image runs the demo as users run it: offline, on a read-only root, as an arbitrary uid.

``make container-test`` (scripts/container_test.sh) builds the image with podman and runs this module
with ``LATENTBIDS_TEST_IMAGE`` naming it; without that variable every test here is skipped (``make
test`` runs it through ``make container-test``).  The demo cohort (latentbids-simulate, as in
scripts/demo.sh, 10 subjects) goes through the participant and group levels twice:

* ``tmpfs``: ``--read-only`` with podman's tmpfs on /tmp, /var/tmp and /run, uid 4242; a wrapper lists
  what the run left in those tmpfs and in /dev/shm, which must be nothing;
* ``no-tmpfs``: ``--read-only --read-only-tmpfs=false`` (no writable /tmp at all), uid 31337, through
  the image's own ENTRYPOINT; scratch then goes under the work dir, which must be empty afterwards.

Both with ``--network none`` and the input mounted read-only.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

IMAGE = os.environ.get("LATENTBIDS_TEST_IMAGE", "")
METRICS = os.environ.get("LATENTBIDS_CONTAINER_METRICS", "")
RUN_ARGS = shlex.split(os.environ.get("LATENTBIDS_PODMAN_RUN_ARGS", ""))
REPO = Path(__file__).resolve().parents[2]
N_SUBJECTS = 10  # the fewest for which the group level runs SHAP too
SIMULATE = ["--n-subjects", str(N_SUBJECTS), "--seed", "20261125",
            "--effect", "Hippocampus_L,Hippocampus_R,ParaHippocampal_L,ParaHippocampal_R:20"]
PARTICIPANT = ["participant", "-w", "/work", "--nprocs", "2", "--omp-nthreads", "1", "--sloppy"]
GROUP = ["group", "-w", "/work", "--sloppy", "--n-folds", "3"]
# Where a run could write besides its mounts when podman gives it tmpfs: listed before and after.
LIST_WRITABLE = "find /tmp /var/tmp /run /dev/shm -mindepth 1 2>&1 | sort > /work/{when}-$LEVEL.txt"
TIMINGS: dict[str, float] = {}

pytestmark = pytest.mark.skipif(not IMAGE, reason="needs the image: make container-test builds it and runs this")


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, check=False)


def open_to_all(folder: Path) -> Path:
    """Let an arbitrary uid write there (also under rootless podman, where uids are shifted)."""
    for root, dirs, files in os.walk(folder):
        os.chmod(root, 0o777)
        for name in files:
            os.chmod(Path(root) / name, 0o666)
    return folder


def run_image(args: list[str], *, uid: int, mounts: dict[Path, str], tmpfs: bool = True,
              entrypoint: str | None = None, name: str = "", timeout: float = 1800) -> subprocess.CompletedProcess:
    """``podman run`` the image offline on a read-only root as ``uid``; ``mounts``: host -> target[:ro]."""
    cmd = ["run", "--rm", *RUN_ARGS, "--network", "none", "--read-only",
           f"--read-only-tmpfs={str(tmpfs).lower()}", "--user", f"{uid}:{uid}"]
    for host, target in mounts.items():
        cmd += ["-v", f"{host}:{target}"]
    if entrypoint:
        cmd += ["--entrypoint", entrypoint]
    start = time.monotonic()
    proc = podman(*cmd, IMAGE, *args, timeout=timeout)
    if name:
        TIMINGS[name] = round(time.monotonic() - start, 1)
    return proc


def run_latentbids(level_args: list[str], *, config: str, uid: int, mounts: dict[Path, str],
                   name: str) -> subprocess.CompletedProcess:
    """One level of latentbids; in the ``tmpfs`` config through a wrapper that lists what it left."""
    args = ["/data", "/out/latentbids", *level_args]
    if config == "tmpfs":
        script = (f'LEVEL={level_args[0]}; {LIST_WRITABLE.format(when="before")}; /opt/venv/bin/latentbids "$@"; '
                  f'rc=$?; {LIST_WRITABLE.format(when="after")}; exit $rc')
        return run_image(["-c", script, "latentbids", *args], uid=uid, mounts=mounts, entrypoint="/bin/sh",
                         name=name)
    return run_image(args, uid=uid, mounts=mounts, tmpfs=False, name=name)


def outcome(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\n--- stderr (end) ---\n{proc.stderr[-6000:]}"


@pytest.fixture(scope="module", autouse=True)
def record_timings():
    yield
    if METRICS and TIMINGS:
        path = Path(METRICS)
        data = json.loads(path.read_text()) if path.is_file() else {}
        data["run_seconds"] = TIMINGS
        path.write_text(json.dumps(data, indent=1) + "\n")


@pytest.fixture(scope="module")
def demo_bids(tmp_path_factory) -> Path:
    """The demo cohort, written by latentbids-simulate inside the image (then mounted read-only)."""
    root = open_to_all(tmp_path_factory.mktemp("demo"))
    proc = run_image(["/demo/bids", *SIMULATE], uid=4242, mounts={root: "/demo"},
                     entrypoint="/opt/venv/bin/latentbids-simulate", name="simulate")
    assert proc.returncode == 0, outcome(proc)
    return root / "bids"


def snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def runs(demo_bids, tmp_path_factory) -> dict:
    """Both configurations through the participant then the group level.

    ``no-tmpfs`` runs one subject's participant level (``tmpfs`` ran them all) and the group level on a
    copy of the ``tmpfs`` participant outputs, each level into an output folder of its own.
    """
    def folder(name: str) -> Path:
        return open_to_all(tmp_path_factory.mktemp(name))

    subjects = sorted(p.name[4:] for p in demo_bids.glob("sub-*"))
    results: dict = {"input_before": snapshot(demo_bids), "subjects": subjects}

    out, work = folder("out-tmpfs"), folder("work-tmpfs")
    mounts = {demo_bids: "/data:ro", out: "/out", work: "/work"}
    procs = {"participant": run_latentbids(PARTICIPANT, config="tmpfs", uid=4242, mounts=mounts,
                                           name="participant-tmpfs")}
    maps = tmp_path_factory.mktemp("participant-maps") / "latentbids"
    if procs["participant"].returncode == 0:
        shutil.copytree(out / "latentbids", maps, ignore=shutil.ignore_patterns("logs"))
        procs["group"] = run_latentbids(GROUP, config="tmpfs", uid=4242, mounts=mounts, name="group-tmpfs")
    results["tmpfs"] = {"uid": 4242, "work": work, "procs": procs,
                        "out": {"participant": out / "latentbids", "group": out / "latentbids"}}

    out_participant, out_group, work = folder("out-no-tmpfs-participant"), folder("out-no-tmpfs-group"), \
        folder("work-no-tmpfs")
    procs = {"participant": run_latentbids(
        [*PARTICIPANT, "--participant-label", subjects[0]], config="no-tmpfs", uid=31337,
        mounts={demo_bids: "/data:ro", out_participant: "/out", work: "/work"}, name="participant-no-tmpfs")}
    if maps.is_dir():
        shutil.copytree(maps, out_group / "latentbids")
        open_to_all(out_group)
        procs["group"] = run_latentbids(GROUP, config="no-tmpfs", uid=31337, name="group-no-tmpfs",
                                        mounts={demo_bids: "/data:ro", out_group: "/out", work: "/work"})
    results["no-tmpfs"] = {"uid": 31337, "work": work, "procs": procs,
                           "out": {"participant": out_participant / "latentbids", "group": out_group / "latentbids"}}
    return results


CONFIGS = ("tmpfs", "no-tmpfs")


# ------------------------------------------------------------------------------------------------
# the image itself


def test_image_facts():
    proc = podman("image", "inspect", IMAGE)
    assert proc.returncode == 0, proc.stderr
    [info] = json.loads(proc.stdout)
    config = info["Config"]
    assert info["Size"] < 3e9, f"CPU image is {info['Size'] / 1e9:.2f} GB, the target is under 3 GB"
    assert config["User"] == "1000:1000"
    assert config["Entrypoint"] == ["/opt/venv/bin/latentbids"]
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["LATENTBIDS_CONTAINER"] == "docker" and env["NIPYPE_NO_ET"] == "1"
    labels = config["Labels"]
    assert labels["io.github.latentbids.torch-variant"] == "cpu"
    from latentbids import __version__

    assert labels["org.opencontainers.image.version"] == __version__


def test_image_installs_exactly_the_pins():
    """Every package in the image has the version constraints/pins.txt gives (the venv's, CI's)."""
    proc = run_image(["-m", "pip", "freeze", "--all"], uid=4242, mounts={}, entrypoint="/opt/venv/bin/python")
    assert proc.returncode == 0, outcome(proc)
    pins = dict(line.split("==") for line in (REPO / "constraints" / "pins.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    pins = {name.lower().replace("_", "-"): version for name, version in pins.items()}
    assert "latentbids @ file:///src" in proc.stdout.splitlines()
    installed = dict(line.split("==") for line in proc.stdout.splitlines() if "==" in line)
    installed = {name.lower().replace("_", "-"): version for name, version in installed.items()}
    assert installed.pop("torch") == "2.13.0+cpu" and pins.pop("torch") == "2.13.0"
    off = {n: (v, pins.get(n)) for n, v in installed.items() if pins.get(n) != v}
    assert not off, f"installed (version, pin): {off}"


def test_version_runs_offline_read_only_as_any_uid():
    proc = run_image(["--version"], uid=54321, mounts={}, tmpfs=False)
    assert proc.returncode == 0, outcome(proc)
    from latentbids import __version__

    assert __version__ in proc.stdout + proc.stderr


def test_pool_workers_run_when_latentbids_is_pid_1():
    """``docker run IMAGE ...`` makes latentbids PID 1, the parent of its MultiProc workers."""
    code = ("from concurrent.futures import ProcessPoolExecutor; from latentbids.utils.processes import init_worker; "
            "print(ProcessPoolExecutor(1, initializer=init_worker).submit(int, '7').result())")
    proc = run_image(["-c", code], uid=4242, mounts={}, tmpfs=False, entrypoint="/opt/venv/bin/python")
    assert proc.returncode == 0 and proc.stdout.strip() == "7", (
        "a worker whose parent is PID 1 died at once (init_worker takes getppid() == 1 for a dead parent)\n"
        + outcome(proc))


# ------------------------------------------------------------------------------------------------
# the demo inside it


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("level", ["participant", "group"])
def test_level_succeeds(runs, config, level):
    procs = runs[config]["procs"]
    assert level in procs, "not run: the tmpfs participant level failed first"
    proc = procs[level]
    assert proc.returncode == 0, outcome(proc)
    for symptom in ("Traceback", "cannot cache function", "Matplotlib created a temporary",
                    "is not a writable directory", "No usable temporary directory"):
        assert symptom not in proc.stderr, f"{symptom!r} in the {level} level's stderr\n{outcome(proc)}"


@pytest.mark.parametrize("config", CONFIGS)
def test_participant_outputs(runs, config):
    import nibabel as nib
    import numpy as np
    import pandas as pd

    out = runs[config]["out"]["participant"]
    subjects = runs["subjects"] if config == "tmpfs" else runs["subjects"][:1]
    assert len(runs["subjects"]) == N_SUBJECTS
    for sub in subjects:
        anat = out / f"sub-{sub}" / "anat"
        assert (out / f"sub-{sub}.html").is_file()
        [gm] = anat.glob(f"sub-{sub}_space-*_label-GM_probseg.nii.gz")
        data = np.asanyarray(nib.load(gm).dataobj)
        assert 0 <= data.min() and data.max() <= 1 and (data > 0.5).sum() > 1000, gm.name
        [stats] = anat.glob(f"sub-{sub}_space-*_atlas-AAL_desc-gm_stats.tsv")
        assert len(pd.read_csv(stats, sep="\t")) == 116
        assert list(anat.glob(f"sub-{sub}_from-T1w_to-*_mode-image_xfm.h5"))
    description = json.loads((out / "dataset_description.json").read_text())
    assert "docker" in json.dumps(description["GeneratedBy"]).lower(), description["GeneratedBy"]
    if os.geteuid() == 0:  # rootful podman: the files are the container uid's
        assert {p.stat().st_uid for p in out.rglob("*")} == {runs[config]["uid"]}


@pytest.mark.parametrize("config", CONFIGS)
def test_group_outputs_include_umap(runs, config):
    import pandas as pd

    out = runs[config]["out"]["group"]
    [report] = out.glob("group_ae-K*.html")
    [analysis_json] = out.glob("group/ae-K*/analysis.json")
    analysis = json.loads(analysis_json.read_text())
    assert analysis["Failures"] == {}, analysis["Failures"]
    projections = out / analysis["Files"]["projections"]
    sidecar = json.loads(projections.with_suffix(".json").read_text())
    umap = sidecar["Methods"][str(sidecar["ReferenceFold"])]["umap"]
    assert umap["computed"], umap  # numba ran UMAP in the read-only image
    assert pd.read_csv(projections, sep="\t")["umap1"].notna().sum() >= N_SUBJECTS // 2
    assert "shap" not in analysis["Skipped"] and (out / analysis["Files"]["shap_importance"]).is_file()
    assert report.stat().st_size > 10_000


@pytest.mark.parametrize("config", CONFIGS)
def test_caches_moved_under_the_work_dir_with_one_line(runs, config):
    work = runs[config]["work"]
    outs = set(runs[config]["out"].values())
    logs = sorted((log for out in outs for log in out.glob("logs/*/latentbids.log")), key=lambda p: p.parent.name)
    assert logs, "no run log"
    lines = [line for log in logs for line in log.read_text().splitlines() if "Caches moved" in line]
    assert len(lines) == len(logs), lines  # one line per run
    group_line = lines[-1]
    assert "NUMBA_CACHE_DIR /opt/cache/numba -> /work/caches/numba" in group_line
    assert "MPLCONFIGDIR /opt/cache/matplotlib -> /work/caches/matplotlib" in group_line
    assert "TORCHINDUCTOR_CACHE_DIR /opt/cache/torchinductor -> /work/caches/torchinductor" in group_line
    assert ("TMPDIR /tmp -> /work/caches/tmp" in group_line) == (config == "no-tmpfs")
    assert "(contents copied)" in lines[0]  # the build-time compiled UMAP code and font list came along
    assert any(work.glob("caches/numba/umap_*/*.nbi"))


@pytest.mark.parametrize("config", CONFIGS)
def test_nothing_written_outside_the_mounts(runs, config):
    work = runs[config]["work"]
    if config == "tmpfs":
        for level in ("participant", "group"):
            before = (work / f"before-{level}.txt").read_text().splitlines()
            after = (work / f"after-{level}.txt").read_text().splitlines()
            left = sorted(set(after) - set(before))
            assert left == [], f"the {level} level left files outside the mounts: {left[:20]}"
    else:
        scratch = work / "caches" / "tmp"
        assert scratch.is_dir(), "TMPDIR was not moved under the work dir"
        left = [str(p.relative_to(scratch)) for p in scratch.rglob("*")]
        assert left == [], f"left in the scratch folder (TMPDIR): {left[:20]}"


def test_input_dataset_untouched(runs, demo_bids):
    assert snapshot(demo_bids) == runs["input_before"]
