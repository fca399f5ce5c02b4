"""Group report, the page: sections in order, verdicts first (see :func:`build_group_report`)."""
from __future__ import annotations

from latentbids.reports.group import sections_claims, sections_data
from latentbids.reports.group.context import GroupReport
from latentbids.reports.group.format import CSS, LOGGER, SECTIONS, _esc, _img

#: section id -> the function that renders it
RENDERERS = {
    "summary": sections_claims.section_summary,
    "data": sections_data.section_data,
    "training": sections_data.section_training,
    "projections": sections_data.section_projections,
    "lrcp": sections_claims.section_lrcp,
    "errors": sections_data.section_errors,
    "shap": sections_claims.section_shap,
    "agnostic": sections_claims.section_agnostic,
    "methods": sections_data.section_methods,
}


class _Page:
    """What the sections share while the page is built: the problems met so far (shown in the summary)."""

    def __init__(self):
        self.problems: list[str] = []

    def figure(self, fn, *args, alt: str, missing: str = "not enough data to draw it", **kwargs) -> str:
        try:
            return _img(fn(*args, **kwargs), alt, missing)
        except Exception as exc:  # a figure never kills the page
            LOGGER.warning("group report: figure %r failed", alt, exc_info=True)
            msg = f"Figure '{alt}' failed to render ({type(exc).__name__}: {exc})"
            self.problems.append(msg)
            return f"<p class='fail'>{_esc(msg)}</p>"

    def section(self, sid: str, report: GroupReport) -> str:
        try:
            return RENDERERS[sid](report, self) + sections_claims.family_claims(report, sid)
        except Exception as exc:  # a section never kills the page
            LOGGER.warning("group report: section %s failed", sid, exc_info=True)
            msg = f"Section '{sid}' failed to render ({type(exc).__name__}: {exc})"
            self.problems.append(msg)
            return f"<p class='fail'>{_esc(msg)}</p>"


def build_group_report(report: GroupReport) -> str:
    """HTML text of the group report (self-contained; the caller writes it).

    Renders a :class:`~latentbids.reports.group.context.GroupReport`.  The summary opens with the
    headline and the verdicts generated from the claims list; every section that states a result
    reads it from the claims.  A failing figure or section is reported on the page in red; the page is
    always produced.
    """
    page = _Page()
    bodies = {sid: page.section(sid, report) for sid, _ in SECTIONS[1:]}
    bodies["summary"] = page.section("summary", report)  # last: it lists the problems of the others
    out = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>", f"<title>{_esc(report.title)}</title>",
           f"<style>{CSS}</style>", "</head><body>", f"<h1>{_esc(report.title)}</h1>",
           "<nav>" + "".join(f"<a href='#{sid}'>{_esc(name)}</a>" for sid, name in SECTIONS) + "</nav>"]
    for sid, name in SECTIONS:
        out.append(f"<section id='{sid}'><h2>{_esc(name)}</h2>\n{bodies[sid]}\n</section>")
    out.append("</body></html>")
    return "\n".join(out)
