"""Atomic writes leave either the old or the new complete file, never a partial one."""
from __future__ import annotations

import pandas as pd
import pytest

from latentbids.utils.atomic import atomic_path, write_json, write_text, write_tsv


def test_failed_write_keeps_old_file(tmp_path):
    target = tmp_path / "a.txt"
    write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_suffix_kept_for_format_detection(tmp_path):
    with atomic_path(tmp_path / "x.nii.gz") as tmp:
        assert tmp.name.endswith(".nii.gz")
        tmp.write_bytes(b"1")
    assert (tmp_path / "x.nii.gz").read_bytes() == b"1"


def test_json_and_tsv(tmp_path):
    write_json(tmp_path / "a.json", {"b": 1})
    assert (tmp_path / "a.json").read_text() == '{\n  "b": 1\n}\n'
    write_tsv(pd.DataFrame({"x": [1.0, None]}), tmp_path / "t.tsv")
    assert (tmp_path / "t.tsv").read_text().splitlines() == ["x", "1.0", "n/a"]


def test_a_full_disk_names_the_target_and_leaves_nothing_half_written(tmp_path, monkeypatch):
    """The error names the file the user knows (not the temporary name) and the errno; the old file
    stays whole and no temporary survives, even when removing it fails as well."""
    import errno
    import os
    from pathlib import Path

    from latentbids.errors import StorageError

    target = tmp_path / "sub-01_latent.tsv"
    write_text(target, "old")
    with pytest.raises(StorageError) as info:
        with atomic_path(target) as tmp:
            tmp.write_text("ha")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))
    assert isinstance(info.value, OSError) and info.value.exit_code == 73
    assert info.value.message.startswith(f"Cannot write {target}: No space left on device (ENOSPC): free disk space")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == [target.name]

    real_unlink = Path.unlink

    def unlink(self, *args, **kwargs):  # the mount went read-only under the write: the cleanup fails too
        if ".tmp" in self.name:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_unlink(self, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", unlink)
    with pytest.raises(StorageError, match=r"Input/output error \(EIO\)") as info:
        with atomic_path(target) as tmp:
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(tmp))
    assert info.value.exit_code == 74  # the write's own error, not the cleanup's


def test_other_errors_pass_through_unchanged(tmp_path):
    with pytest.raises(FileNotFoundError):
        with atomic_path(tmp_path / "a.txt"):
            raise FileNotFoundError("an input the block read")
    assert list(tmp_path.iterdir()) == []
