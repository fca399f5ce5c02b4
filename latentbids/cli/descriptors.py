"""Boutiques descriptors generated from the argparse parser: one source of truth for the CLI.

``python -m latentbids.cli.descriptors`` (re)writes ``descriptors/latentbids.json`` (CPU) and
``descriptors/latentbids-gpu.json`` (``--device cuda``, run with ``--gpus all``; under
Apptainer/Singularity ``bosh exec launch --force-singularity --container-opts=--nv``);
``--check`` exits 1 when the files on disk differ from what the parser says (the test suite runs it).

Every option of :func:`latentbids.cli.parser.build_parser` becomes an input with its type, list-ness,
bounds, choices, and its default stated in the description.  No Boutiques ``default-value`` is
written: bosh puts default values on the command line, where they would override a
``--config-file`` (the command line wins over the file), so "not given" must stay "not given".

The descriptors pass ``bosh validate --bids`` (boutiques 0.5.33, ``boutiques/bids.py``), which asks for
the BIDS-App template of boutiques: the command line ``mkdir -p [OUTPUT_DIR]; <exe> [BIDS_DIR] [OUTPUT_DIR]
[ANALYSIS_LEVEL] [PARTICIPANT_LABEL] [SESSION_LABEL] ...``, inputs of type String and File (and no other
type) on the value-key ``[OUTPUT_DIR]``, analysis levels among participant/session/group, and exactly one
output-file, whose ``path-template`` is ``[OUTPUT_DIR]`` (a ``conditional-path-template`` fails it).

The String input is ``output_dir_name`` and it is required (the BIDS-Apps ``output_dir`` positional, at
both levels: for the group level, the folder of the participant-level outputs).  The File input,
``participant_level_analysis_dir``, is optional and only makes bosh mount that existing folder in the
container for the group level; give it the same path.  It cannot be an alternative to
``output_dir_name`` (boutiques' template makes the two mutually exclusive): bosh 0.5.33 removes a value-key
from the command line as soon as the first input listed on it is absent, so with ``output_dir_name`` absent
the group command lost its output folder, and listing the File input first breaks the participant level
the same way.  With ``output_dir_name`` required and listed first, the key always takes its value, and an
invocation with the File input alone is refused by bosh instead of running a command without output_dir.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from latentbids import __version__
from latentbids.utils.environment import IMAGE_NAME

REPO_DESCRIPTORS = Path(__file__).resolve().parents[2] / "descriptors"
EXECUTABLE = "/opt/venv/bin/latentbids"
BIDS_APP_SPEC_VERSION = "1.0.0"  # the BIDS Apps command line: bids_dir output_dir level [options]
OUTPUT_KEY = "[OUTPUT_DIR]"  # both output-folder inputs: what bosh validate --bids asks for
#: Inputs that open the command line in this order (bosh validate --bids matches it).
BIDS_APP_KEYS = ("[BIDS_DIR]", OUTPUT_KEY, "[ANALYSIS_LEVEL]", "[PARTICIPANT_LABEL]", "[SESSION_LABEL]")

#: Options whose value is an existing file or folder the container must see (mounted by bosh).
FILE_OPTIONS = {"bids_filter_file", "config_file", "use_plugin", "atlas_labels", "model", "templateflow_home",
                "nilearn_data"}


def input_id(action: argparse.Action) -> str:
    """The descriptor id of an option: its first long spelling, e.g. ``--skip-analysis`` -> ``skip_analysis``."""
    long = next((s for s in action.option_strings if s.startswith("--")), action.option_strings[0])
    return re.sub(r"[^A-Za-z0-9]", "_", long.lstrip("-"))


def _value_key(identifier: str) -> str:
    return f"[{identifier.upper()}]"


def _name(identifier: str) -> str:
    return identifier.replace("_", " ").capitalize()


def _describe(action: argparse.Action) -> str:
    text = re.sub(r"\s+", " ", (action.help or "").replace("%%", "%")).strip()
    return text[0].upper() + text[1:] if text else _name(action.dest)


def option_input(action: argparse.Action) -> dict:
    """The Boutiques input of one argparse option."""
    from latentbids.cli.parser import _positive_int

    identifier = input_id(action)
    entry = {"id": identifier, "name": _name(identifier), "description": _describe(action),
             "value-key": _value_key(identifier), "optional": True,
             "command-line-flag": next((s for s in action.option_strings if s.startswith("--")),
                                       action.option_strings[0])}
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._CountAction)):  # noqa: SLF001
        entry["type"] = "Flag"
        return entry
    if action.type in (int, _positive_int):
        entry.update(type="Number", integer=True)
        if action.type is _positive_int:
            entry["minimum"] = 1
    elif action.dest in FILE_OPTIONS:
        entry["type"] = "File"
    else:
        entry["type"] = "String"
    if action.nargs in ("+", "*"):
        entry["list"] = True
    if action.choices:
        entry["value-choices"] = list(action.choices)
    return entry


def _same_setting_groups(options: list[argparse.Action]) -> list[dict]:
    """Options that set the same thing (``--mem`` in GB, ``--mem-mb`` in MB) exclude each other."""
    by_dest: dict[str, list[str]] = {}
    for action in options:
        by_dest.setdefault(action.dest, []).append(input_id(action))
    return [{"id": f"one_{dest}", "name": f"One of {', '.join(ids)}", "members": ids, "mutually-exclusive": True,
             "description": f"{' and '.join(ids)} set the same value; give one."}
            for dest, ids in by_dest.items() if len(ids) > 1]


def error_codes() -> list[dict]:
    """The exit codes of :mod:`latentbids.errors` (its docstring table), success left out."""
    import latentbids.errors as errors

    codes = []
    for line in (errors.__doc__ or "").splitlines():
        match = re.match(r"^(\d+)\s{2,}(.+)$", line.strip())
        if match and int(match.group(1)) != 0:
            codes.append({"code": int(match.group(1)), "description": match.group(2).strip()})
    return codes


def build_descriptor(gpu: bool = False) -> dict:
    """The descriptor of the CPU (or GPU) image, from the parser."""
    from latentbids.cli.parser import ANALYSIS_LEVELS, build_parser

    parser = build_parser()
    options = [a for a in parser._actions  # noqa: SLF001 - argparse has no public list of actions
               if a.option_strings and not isinstance(a, (argparse._HelpAction, argparse._VersionAction))]  # noqa: SLF001
    if gpu:
        options = [a for a in options if a.dest != "device"]  # the GPU image always runs --device cuda
    inputs = [
        {"id": "bids_dir", "name": "BIDS directory", "type": "File", "value-key": "[BIDS_DIR]", "optional": False,
         "description": "The directory with the input dataset formatted according to the BIDS standard."},
        {"id": "output_dir_name", "name": "Output directory name", "type": "String", "value-key": OUTPUT_KEY,
         "optional": False, "description": "Where the outputs go (use <bids_dir>/derivatives/latentbids); for the "
                                           "group level, the folder that holds the participant-level outputs."},
        {"id": "participant_level_analysis_dir", "name": "Participants dir", "type": "File", "value-key": OUTPUT_KEY,
         "optional": True,
         "description": "Group level, optional: the folder of the participant-level outputs again (the same path as "
                        "output_dir_name), as a File so that bosh mounts it in the container; the command line "
                        "takes output_dir_name."},
        {"id": "analysis_level", "name": "Analysis level", "type": "String", "value-key": "[ANALYSIS_LEVEL]",
         "optional": False, "value-choices": list(ANALYSIS_LEVELS),
         "description": "participant (one job per subject, may run in parallel) or group (after the participant "
                        "level: trains the autoencoder and reads its latent space)."},
    ]
    inputs += [option_input(a) for a in options]
    keys = list(BIDS_APP_KEYS)
    keys += [i["value-key"] for i in inputs if i["value-key"] not in keys]
    command = f"mkdir -p {OUTPUT_KEY}; {EXECUTABLE} {' '.join(keys)}"
    if gpu:
        command += " --device cuda"
    tag = f"{IMAGE_NAME}:{__version__}" + ("-cuda" if gpu else "")
    image = {"type": "docker", "image": tag}
    if gpu:
        image["container-opts"] = ["--gpus all"]
    descriptor = {
        "name": "latentbids (BIDS app)" + (" GPU" if gpu else ""),
        "tool-version": __version__,
        "description": ("Gray-matter maps, a 3D convolutional autoencoder and the interpretation of its latent space, "
                        "as BIDS-Derivatives. See https://github.com/latentbids/latentbids"
                        + (". GPU image: Docker runs it with --gpus all; under Apptainer/Singularity use "
                           "'bosh exec launch --force-singularity --container-opts=--nv'." if gpu else ".")),
        "command-line": command,
        "container-image": image,
        "schema-version": "0.5",
        "inputs": inputs,
        "output-files": [{  # one entry, path-template [OUTPUT_DIR]: bosh validate --bids asks for exactly that
            "id": "output_dir", "name": "Output directory",
            "description": "The BIDS-Derivatives output directory (output_dir_name).",
            "path-template": OUTPUT_KEY, "optional": False,
        }],
        "groups": _same_setting_groups(options),
        "error-codes": error_codes(),
        "suggested-resources": {"cpu-cores": 4, "ram": 16, "walltime-estimate": 3600, **({"nodes": 1} if gpu else {})},
        "tags": {"domain": ["neuroinformatics", "mri", "bids"], **({"gpu": True} if gpu else {})},
        "custom": {"BIDSAppSpecVersion": BIDS_APP_SPEC_VERSION,
                   "OutputDataSpecification": ["BIDS-Derivatives"],
                   "GeneratedBy": "python -m latentbids.cli.descriptors (from latentbids.cli.parser)"},
    }
    return descriptor


def descriptor_files() -> dict[str, dict]:
    return {"latentbids.json": build_descriptor(gpu=False), "latentbids-gpu.json": build_descriptor(gpu=True)}


def render(descriptor: dict) -> str:
    return json.dumps(descriptor, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m latentbids.cli.descriptors",
                                     description="Write (or --check) the Boutiques descriptors from the CLI parser.")
    parser.add_argument("--out", default=str(REPO_DESCRIPTORS), help="folder of the descriptors (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="exit 1 if the files differ from the parser")
    args = parser.parse_args(argv)
    out = Path(args.out)
    stale = []
    for name, descriptor in descriptor_files().items():
        path = out / name
        text = render(descriptor)
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(name)
            continue
        from latentbids.utils.atomic import write_text

        write_text(path, text)
        print(f"wrote {path}")
    if stale:
        print(f"descriptors out of date: {', '.join(stale)}: run 'python -m latentbids.cli.descriptors'")
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
