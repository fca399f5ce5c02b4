"""latentbids-simulate: bad options give one line and exit 64; the output folder is protected."""
from __future__ import annotations

import json

import pytest

from latentbids.cli.simulate import main

BAD = [
    (["--n-subjects", "4", "--seed", "1", "--effect", "Hippocampus_X:20"], "not an AAL region"),
    (["--n-subjects", "4", "--seed", "1", "--effect", "Hippocampus_L:120"], "outside 0-100"),
    (["--n-subjects", "4", "--seed", "1", "--effect", "Hippocampus_L:-5"], "outside 0-100"),
    (["--n-subjects", "4", "--seed", "1", "--effect", "Hippocampus_L"], "REGION[,REGION]:PERCENT"),
    (["--n-subjects", "4", "--seed", "1", "--effect", "Hippocampus_L:10", "--effect", "Hippocampus_L:5"],
     "planted twice"),
    (["--n-subjects", "2", "--seed", "1", "--groups", "CN,MCI,AD"], "too small"),
    (["--n-subjects", "4", "--seed", "1", "--groups", "CN"], "at least two groups"),
    (["--n-subjects", "4", "--seed", "-1"], "non-negative"),
    (["--n-subjects", "4"], "required"),
    (["--n-subjects", "four", "--seed", "1"], "invalid int"),
    (["--n-subjects", "4", "--seed", "1", "--resolution", "0.1"], "outside 0.5-4"),
    (["--n-subjects", "4", "--seed", "1", "--age-range", "80", "60"], "age-range"),
    (["--n-subjects", "4", "--seed", "1", "--frobnicate"], "unrecognized"),
]


@pytest.mark.slow
@pytest.mark.parametrize("argv, words", BAD, ids=[b[1] for b in BAD])
def test_bad_options_exit_64_with_one_line(tmp_path, capsys, argv, words):
    out = tmp_path / "sim"
    assert main([str(out)] + argv) == 64
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("latentbids-simulate: error:") and words in err
    assert not out.exists()


def test_existing_folder_needs_overwrite(tmp_path, capsys):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    argv = ["--n-subjects", "2", "--seed", "1", "--gm-only"]
    assert main([str(foreign)] + argv) == 64
    assert "--overwrite" in capsys.readouterr().err
    assert main([str(foreign)] + argv + ["--overwrite"]) == 64  # not a simulation: never deleted
    assert (foreign / "precious.txt").read_text() == "keep me"

    out = tmp_path / "sim"
    assert main([str(out)] + argv) == 0
    assert main([str(out)] + argv) == 64
    assert main([str(out), "--n-subjects", "3", "--seed", "2", "--gm-only", "--overwrite"]) == 0
    sim = json.loads((out / "simulation.json").read_text())
    assert sim["Seed"] == 2 and sim["NSubjects"] == 3
    assert sorted(p.name for p in out.glob("sub-*")) == ["sub-001", "sub-002", "sub-003"]
    assert not list(tmp_path.glob(".*partial"))  # no temporary folder left behind


def test_empty_existing_folder_is_fine(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    assert main([str(out), "--n-subjects", "2", "--seed", "1", "--gm-only"]) == 0
    assert (out / "sub-002").is_dir()


def test_help_and_version(capsys):
    assert main(["--help"]) == 0
    assert "--effect" in capsys.readouterr().out
    assert main(["--version"]) == 0
