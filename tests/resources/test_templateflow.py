"""TemplateFlow through its own client, offline, on a cache laid out by the tests (tests/tf_cache.py)."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from latentbids.errors import EXIT_MISSING_INPUT, MissingInputError, UsageError
from latentbids.resources.templates import get_template, templates_for
from tests.helpers import run_cli
from tests.tf_cache import write_space

SPACE = "MNI152NLin2009cAsym"


@pytest.fixture()
def tf_home(tmp_path, monkeypatch):
    home = tmp_path / "templateflow"
    home.mkdir()
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(home))  # what the templateflow package initialises on
    monkeypatch.setenv("TEMPLATEFLOW_AUTOUPDATE", "0")
    return home


def test_space_read_through_templateflow(tf_home):
    files = write_space(tf_home, SPACE, 4)
    tpl = get_template(SPACE, "4", tf_home)
    # TemplateFlow's own grid for res-04 (template_description.json): 49x58x49 at 4 mm
    assert tpl.shape == (49, 58, 49) and tpl.resolution == 4.0 and tpl.provider == "templateflow"
    assert tpl.name == f"{SPACE}_res-4" and tpl.spec == f"{SPACE}:res-4"
    assert tpl.spatial_reference == ("https://templateflow.s3.amazonaws.com/tpl-MNI152NLin2009cAsym/"
                                     "tpl-MNI152NLin2009cAsym_res-04_T1w.nii.gz")
    assert np.allclose(tpl.affine[:3, 3], [-97.5, -133.5, -79.5])
    mask = np.asarray(tpl.mask.dataobj) > 0
    assert mask.any() and float(np.abs(np.asarray(tpl.t1w.dataobj)[~mask]).max()) == 0.0  # T1w skull-stripped
    assert files["gm"].stat().st_size > 0


def test_placeholder_is_refused_with_the_fill_command(tf_home):
    write_space(tf_home, SPACE, 4, placeholders=("gm",))
    with pytest.raises(MissingInputError) as err:
        get_template(SPACE, "4", tf_home)
    message = err.value.message
    assert "0-byte placeholder" in message and "label-GM_probseg" in message
    assert f"--prefetch {SPACE}:res-4" in message and err.value.exit_code == EXIT_MISSING_INPUT


def test_missing_files_and_empty_cache(tf_home, tmp_path):
    (tf_home / f"tpl-{SPACE}").mkdir()
    with pytest.raises(MissingInputError, match="has no t1w file"):
        get_template(SPACE, "2", tf_home)
    with pytest.raises(MissingInputError, match="empty or missing"):
        get_template(SPACE, "2", tmp_path / "nothing")


def test_resolution_must_be_one_templateflow_defines(tf_home):
    with pytest.raises(UsageError, match=r"no res-7 for MNI152NLin2009cAsym; it has res-1 \(1.0 mm\)"):
        get_template(SPACE, "7", tf_home)
    with pytest.raises(UsageError, match="exists only for MNI152NLin2009aSym"):
        get_template(SPACE, "nilearn2", tf_home)
    with pytest.raises(MissingInputError, match="neither a TemplateFlow template"):
        get_template("NoSuchTemplate", "2", tf_home)


def test_nilearn_grid_only_where_templateflow_has_none(tf_home):
    # TemplateFlow defines res-1 only for MNI152NLin2009aSym: res-2 is nilearn's grid, said in its name
    assert get_template("MNI152NLin2009aSym", "2", tf_home).name == "MNI152NLin2009aSym_res-nilearn2"
    # res-1 exists in TemplateFlow: never silently replaced by nilearn's (different) 1 mm grid
    with pytest.raises(MissingInputError, match="empty or missing|has no"):
        get_template("MNI152NLin2009aSym", "1", tf_home / "elsewhere")


def test_one_grid_per_template(tf_home):
    write_space(tf_home, SPACE, 4)
    got = templates_for(["MNI152NLin2009aSym:res-nilearn4", f"{SPACE}:res-4"], tf_home)
    assert [t.name for t in got] == ["MNI152NLin2009aSym_res-nilearn4", f"{SPACE}_res-4"]
    with pytest.raises(UsageError, match="twice"):
        templates_for(["MNI152NLin2009aSym:res-nilearn4", "MNI152NLin2009aSym:res-nilearn2"], tf_home)


@pytest.mark.slow
def test_cli_placeholder_cache_is_one_line_exit_66(tf_home, tmp_path, ixi_dir):
    write_space(tf_home, SPACE, 4, placeholders=("t1w",))
    proc = run_cli(ixi_dir, tmp_path / "out", "participant", "-w", tmp_path / "work", "--output-spaces",
                   f"{SPACE}:res-4", "--templateflow-home", tf_home, "--skip-bids-validation")
    assert proc.returncode == EXIT_MISSING_INPUT, proc.stderr
    assert "Traceback" not in proc.stderr and "0-byte placeholder" in proc.stderr
    assert len([ln for ln in proc.stderr.splitlines() if "ERROR" in ln]) == 1


@pytest.fixture()
def templateflow_mirror(tmp_path):
    """A local HTTP mirror of TemplateFlow's archive holding MNI152NLin2009cAsym res-02 (no internet here)."""
    import functools
    import shutil
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    root = tmp_path / "mirror"
    files = write_space(root, SPACE, 2)
    shutil.copy(files["t1w"], files["t1w"].with_name(f"tpl-{SPACE}_res-02_desc-brain_T1w.nii.gz"))
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.slow
def test_prefetch_fills_an_empty_cache_then_runs_read_it_offline(tmp_path, templateflow_mirror):
    """The command the image build runs, against a mirror: placeholders replaced, then checked offline."""
    home = tmp_path / "empty_cache"
    cmd = [sys.executable, "-m", "latentbids.resources.templates", "--templateflow-home", str(home)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPLATEFLOW_")}
    done = subprocess.run(cmd + ["--prefetch", f"{SPACE}:res-2", "--s3-root", templateflow_mirror],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 file(s) ready" in done.stdout  # T1w (skull-stripped), brain mask, GM/WM/CSF priors
    placeholder = home / f"tpl-{SPACE}" / f"tpl-{SPACE}_res-01_T1w.nii.gz"  # TemplateFlow's skeleton, not fetched
    assert placeholder.is_file() and placeholder.stat().st_size == 0
    check = subprocess.run(cmd + ["--check", f"{SPACE}:res-2"], capture_output=True, text=True, timeout=300, env=env)
    assert check.returncode == 0 and "97x115x97" in check.stdout, check.stdout + check.stderr
    missing = subprocess.run(cmd + ["--check", f"{SPACE}:res-1"], capture_output=True, text=True, timeout=300,
                             env=env)
    assert missing.returncode == EXIT_MISSING_INPUT and "0-byte placeholder" in missing.stdout
    assert f"--prefetch {SPACE}:res-1" in missing.stdout
    offline = subprocess.run(cmd + ["--prefetch", f"{SPACE}:res-1", "--s3-root", "http://127.0.0.1:9"],
                             capture_output=True, text=True, timeout=300, env=env)
    assert offline.returncode == EXIT_MISSING_INPUT and "download failed" in offline.stdout
    assert "Traceback" not in offline.stdout + offline.stderr
