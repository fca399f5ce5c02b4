"""Caches move to a writable place when their configured one is not (read-only containers, any uid).

Tests run as root here and in CI, and root writes through permission bits, so "not writable" is
made real with a path below a regular file (mkdir fails as on a read-only root) or, where the
configured place must stay readable, by naming it read-only to ``is_writable_dir``.  The image test
(tests/packaging/test_container_image.py) checks the same behaviour on a real read-only root.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from latentbids.errors import EXIT_CANNOT_CREATE, CannotCreateError
from latentbids.utils import caches
from latentbids.utils.caches import is_writable_dir, use_writable_caches


@pytest.fixture
def blocked(tmp_path) -> Path:
    """A path no one can create: its parent is a regular file."""
    (tmp_path / "a-file").write_text("")
    return tmp_path / "a-file" / "cache"


@pytest.fixture
def env(tmp_path) -> dict:
    """A fresh environment whose every cache place is writable."""
    return {"HOME": str(tmp_path / "home"), "TMPDIR": str(tmp_path / "tmp"),
            "NUMBA_CACHE_DIR": str(tmp_path / "numba"), "MPLCONFIGDIR": str(tmp_path / "mpl")}


def read_only(monkeypatch, *paths: Path) -> None:
    """Make ``is_writable_dir`` answer False for ``paths`` (they stay readable)."""
    real = caches.is_writable_dir
    monkeypatch.setattr(caches, "is_writable_dir", lambda p: Path(p) not in paths and real(p))


def test_is_writable_dir_tries_for_real(tmp_path, blocked):
    assert is_writable_dir(tmp_path / "new" / "folder") and (tmp_path / "new" / "folder").is_dir()
    assert not is_writable_dir(blocked)


def test_writable_places_are_left_alone(env, tmp_path, caplog):
    before = dict(env)
    with caplog.at_level(logging.INFO, logger="latentbids"):
        assert use_writable_caches(tmp_path / "work", env) == []
    assert env == before
    assert "Caches moved" not in caplog.text
    assert not (tmp_path / "work").exists()


def test_unwritable_places_move_under_the_work_dir_with_one_log_line(env, tmp_path, blocked, caplog):
    expected = {"TMPDIR": "tmp", "NUMBA_CACHE_DIR": "numba", "MPLCONFIGDIR": "matplotlib", "DENO_DIR": "deno",
                "TORCHINDUCTOR_CACHE_DIR": "torchinductor"}
    env.update({variable: str(blocked) for variable in expected})
    work = tmp_path / "work"
    with caplog.at_level(logging.INFO, logger="latentbids"):
        moves = use_writable_caches(work, env)
    assert {m.variable: m.place for m in moves} == {v: work / "caches" / n for v, n in expected.items()}
    for variable, name in expected.items():
        assert env[variable] == str(work / "caches" / name) and (work / "caches" / name).is_dir()
    lines = [r.getMessage() for r in caplog.records if "Caches moved" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert f"NUMBA_CACHE_DIR {blocked} -> {work / 'caches' / 'numba'}" in lines[0]


def test_unset_variables_are_judged_by_where_the_library_would_go(env, tmp_path, blocked):
    del env["NUMBA_CACHE_DIR"], env["MPLCONFIGDIR"]
    env["HOME"] = str(blocked)  # ~/.cache/numba and ~/.config/matplotlib cannot be made
    moves = use_writable_caches(tmp_path / "work", env)
    assert {m.variable for m in moves} == {"NUMBA_CACHE_DIR", "MPLCONFIGDIR"}
    assert moves[0].configured == blocked / ".cache" / "numba"
    assert "DENO_DIR" not in env and "TORCHINDUCTOR_CACHE_DIR" not in env  # unset: the library's own choice


def test_without_a_work_dir_the_fallback_is_per_user_under_tmpdir(env, tmp_path, blocked):
    env["NUMBA_CACHE_DIR"] = str(blocked)
    use_writable_caches(None, env)
    assert env["NUMBA_CACHE_DIR"] == str(tmp_path / "tmp" / f"latentbids-{os.getuid()}" / "numba")


def test_an_unwritable_work_dir_falls_back_to_tmpdir(env, tmp_path, blocked):
    env["MPLCONFIGDIR"] = str(blocked)
    use_writable_caches(blocked.parent, env)  # the work dir is a file: nothing can be made under it
    assert env["MPLCONFIGDIR"] == str(tmp_path / "tmp" / f"latentbids-{os.getuid()}" / "matplotlib")


def test_no_writable_place_is_one_line_and_exit_73(env, blocked):
    env.update(MPLCONFIGDIR=str(blocked), TMPDIR=str(blocked))
    with pytest.raises(CannotCreateError) as info:
        use_writable_caches(blocked.parent, env)
    assert info.value.exit_code == EXIT_CANNOT_CREATE == 73
    assert "\n" not in info.value.message and "writable -w/--work-dir" in info.value.message


def test_build_time_contents_are_copied_once_and_kept(env, tmp_path, monkeypatch):
    image_cache = tmp_path / "opt" / "numba"
    (image_cache / "umap_0123").mkdir(parents=True)
    (image_cache / "umap_0123" / "umap_.rdist-31.py311.nbi").write_bytes(b"index")
    os.chmod(image_cache / "umap_0123", 0o555)
    env["NUMBA_CACHE_DIR"] = str(image_cache)
    read_only(monkeypatch, image_cache)
    work = tmp_path / "work"
    [move] = use_writable_caches(work, env)
    copy = work / "caches" / "numba" / "umap_0123"
    assert move.copied and (copy / "umap_.rdist-31.py311.nbi").read_bytes() == b"index"
    assert os.stat(copy).st_mode & 0o200, "the copy must be extendable by its user"
    assert not [p for p in (work / "caches").iterdir() if p.name.startswith(".")], "no staging folder left"
    # A later run in the same work dir keeps what is there (numba may have added to it).
    (copy / "added-by-numba.nbc").write_bytes(b"more")
    env["NUMBA_CACHE_DIR"] = str(image_cache)
    [again] = use_writable_caches(work, env)
    assert not again.copied and (copy / "added-by-numba.nbc").exists()


def test_tmpdir_move_reaches_tempfile(tmp_path, blocked, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.setenv("TMPDIR", str(blocked))
    for variable in ("NUMBA_CACHE_DIR", "MPLCONFIGDIR", "DENO_DIR", "TORCHINDUCTOR_CACHE_DIR"):
        monkeypatch.setenv(variable, str(tmp_path / variable))
    use_writable_caches(tmp_path / "work")
    assert tempfile.gettempdir() == str(tmp_path / "work" / "caches" / "tmp") == os.environ["TMPDIR"]


def test_a_copied_numba_cache_is_loaded_not_recompiled(tmp_path):
    """Numba finds a cache copied to another folder: its index is keyed by the source file's path and
    content, not by the cache folder, so what the image compiled is reused from the copy."""
    module = tmp_path / "src" / "jitted.py"
    module.parent.mkdir()
    module.write_text(textwrap.dedent("""
        import numba

        @numba.njit(cache=True)
        def add(a, b):
            return a + b

        print(add(1, 2))
    """))

    def run(cache_dir: Path) -> str:
        env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir), "NUMBA_DEBUG_CACHE": "1",
               "PYTHONPATH": str(module.parent)}
        proc = subprocess.run([sys.executable, "-c", "import jitted"], env=env, capture_output=True,
                              text=True, check=True, timeout=120)
        return proc.stdout

    image_cache = tmp_path / "image-cache"
    assert "data saved to" in run(image_cache)
    copy = tmp_path / "work" / "caches" / "numba"
    copy.parent.mkdir(parents=True)
    assert caches._copy_contents(image_cache, copy)
    out = run(copy)
    assert "data loaded from" in out and str(copy) in out and "data saved to" not in out
