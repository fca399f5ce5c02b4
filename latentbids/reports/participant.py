"""Participant QC report: one self-contained HTML page per T1w (figures embedded as PNG).

Figures: the GM segmentation (p > 0.5 contour) and brain mask over the bias-corrected T1w, and the
registered brain with the template's edges on top.  The QC table is shown with the verdict first; a
failing subject is flagged in red, never hidden.
"""
from __future__ import annotations

import base64
import html
import io
import json
import os

import nibabel as nib
import numpy as np
import pandas as pd


def _png(display) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    display.frame_axes.figure.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    display.close()
    plt.close("all")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _load(img):
    import nibabel as nib

    return nib.load(str(img)) if isinstance(img, (str, os.PathLike)) else img


def brain_cuts(img, n: int = 5) -> dict:
    """World coordinates of ``n`` slices per axis spread over the non-zero part of ``img``
    (15th-85th percentile of its extent), so every panel shows brain, not neck or air."""
    import numpy as np

    img = _load(img)
    data = np.asarray(img.dataobj) > 0
    if not data.any():
        return {"x": np.zeros(n), "y": np.zeros(n), "z": np.zeros(n)}
    ijk = np.argwhere(data)
    world = ijk @ img.affine[:3, :3].T + img.affine[:3, 3]
    cuts = {}
    for axis, key in enumerate("xyz"):
        lo, hi = np.percentile(world[:, axis], [15, 85])
        cuts[key] = np.linspace(lo, hi, n)
    return cuts


def _clean_template(template_t1w):
    """The template with its near-zero background set to 0 (else edge detection draws noise)."""
    import nibabel as nib
    import numpy as np

    img = _load(template_t1w)
    data = np.asarray(img.dataobj, dtype=np.float32)
    from scipy import ndimage

    keep = data > 0.05 * float(data.max())
    labels, n = ndimage.label(keep)
    if n > 1:  # drop specks outside the brain
        keep = labels == (int(np.argmax(np.bincount(labels.ravel())[1:])) + 1)
    return nib.Nifti1Image(np.where(keep, data, 0).astype(np.float32), img.affine)


def _bright(img, mask=None) -> float:
    """Display ceiling: the 99th percentile inside the brain, so WM is bright and GM stays grey."""
    img = nib.load(str(img)) if isinstance(img, (str, os.PathLike)) else img
    data = np.asanyarray(img.dataobj, dtype=np.float32)
    if mask is not None:
        mask = nib.load(str(mask)) if isinstance(mask, (str, os.PathLike)) else mask
        inside = np.asanyarray(mask.dataobj) > 0
        if inside.shape == data.shape and inside.any():
            data = data[inside]
    data = data[data > 0]
    return float(np.percentile(data, 99)) if data.size else 1.0


def segmentation_figure(t1w, gm, mask=None, title: str = "") -> str:
    """PNG (base64) of the GM p>0.5 contour (red) and brain mask (cyan) over the T1w, 3 rows of slices."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from nilearn import plotting

    cuts = brain_cuts(mask if mask is not None else gm)
    display = plotting.plot_anat(t1w, display_mode="mosaic", cut_coords=cuts, title=title or None,
                                 dim=0, vmin=0, vmax=_bright(t1w, mask), draw_cross=False, annotate=False)
    display.add_contours(gm, levels=[0.5], colors="r", linewidths=0.8)
    if mask is not None:
        display.add_contours(mask, levels=[0.5], colors="c", linewidths=0.8)
    return _png(display)


def registration_figure(warped, template_t1w, title: str = "") -> str:
    """PNG (base64) of the registered subject brain with the template's edges (red)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from nilearn import plotting

    template = _clean_template(template_t1w)
    display = plotting.plot_anat(warped, display_mode="mosaic", cut_coords=brain_cuts(template),
                                 title=title or None, dim=0, vmin=0, vmax=_bright(warped),
                                 draw_cross=False, annotate=False)
    display.add_edges(template, color="r")
    return _png(display)


def _table_html(df: pd.DataFrame) -> str:
    return df.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0, classes="t", na_rep="n/a")


def build_participant_report(
    out_file: str | os.PathLike,
    label: str,
    t1w=None,
    gm=None,
    mask=None,
    warped=None,
    template_t1w=None,
    qc_tsv: str | None = None,
    volumes_json: str | None = None,
    gm_template=None,
    notes: list[str] | None = None,
) -> str:
    """Write the HTML report of one participant job to ``out_file`` and return its path.

    Every input is optional (the reuse branch has no native images); sections without their inputs
    are left out.
    """
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>latentbids: {html.escape(label)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1100px} .t td,.t th{padding:2px 8px}"
        " .fail{color:#b00;font-weight:bold} .pass{color:#070;font-weight:bold} img{max-width:100%}</style>",
        "</head><body>",
        f"<h1>latentbids participant report: {html.escape(label)}</h1>",
    ]
    if qc_tsv:
        qc = pd.read_csv(qc_tsv, sep="\t")
        ok = bool(qc["qc_pass"].iloc[0]) if "qc_pass" in qc else True
        reasons = str(qc.get("qc_fail_reasons", pd.Series([""])).iloc[0])
        if ok:
            parts.append("<p class='pass'>Quality control: PASS</p>")
        else:
            parts.append(f"<p class='fail'>Quality control: FAIL ({html.escape(reasons)}); this map is "
                         "flagged and excluded from group training unless you decide otherwise.</p>")
        parts.append("<h2>Quality metrics</h2>" + _table_html(qc.T.reset_index().rename(
            columns={"index": "metric", 0: "value"})))
    if volumes_json:
        with open(volumes_json) as fh:
            vols = json.load(fh)
        parts.append("<h2>Volumes (native space)</h2>" + _table_html(
            pd.DataFrame({"measure": list(vols), "value": list(vols.values())})))
    if t1w is not None and gm is not None:
        parts.append("<h2>Segmentation</h2><p>GM probability 0.5 contour (red) and brain mask (cyan) "
                     "over the bias-corrected T1w.</p>")
        parts.append(f"<img alt='segmentation' src='data:image/png;base64,{segmentation_figure(t1w, gm, mask)}'>")
    if warped is not None and template_t1w is not None:
        parts.append("<h2>Registration</h2><p>Subject brain after nonlinear registration, with the "
                     "template's edges (red) on top.</p>")
        png = registration_figure(warped, template_t1w)
        parts.append(f"<img alt='registration' src='data:image/png;base64,{png}'>")
    elif gm_template is not None and template_t1w is not None:
        parts.append("<h2>GM map on the template</h2>")
        parts.append("<img alt='gm' src='data:image/png;base64,"
                     f"{segmentation_figure(template_t1w, gm_template, _clean_template(template_t1w))}'>")
    for note in notes or []:
        parts.append(f"<p>{html.escape(note)}</p>")
    parts.append("</body></html>")
    from latentbids.utils.atomic import write_text

    write_text(out_file, "\n".join(parts))
    return str(out_file)
