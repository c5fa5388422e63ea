"""A drift report as one self-contained HTML page: no script, no stylesheet or font to fetch.

The page has the verdicts, a table of columns (kind, test, statistic, p-value, threshold,
PSI, share of missing values on each side, verdict or status: broken columns and rises of
missing values, which trigger, are shown as drift) and, per tested column, the reference
and current distributions as an inline SVG bar chart drawn here (no charting library):
numeric columns on their bins, categorical ones on their most frequent levels. Every text
is HTML-escaped.

Example:
    >>> from loopline.monitoring.report import DriftReport
    >>> "<svg" in render(DriftReport({}, n_reference=0, n_current=0))
    False
"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from loopline.monitoring.report import ColumnDrift, DriftReport, Histogram

REF_COLOUR, CUR_COLOUR = "#4c78a8", "#f58518"
WIDTH, HEIGHT, PAD_L, PAD_B, PAD_T = 560, 220, 44, 56, 12

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#222}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin:1.6rem 0 .3rem}
.verdict{display:inline-block;padding:.2rem .6rem;border-radius:4px;font-weight:600}
.yes{background:#fde2e1;color:#a11}.no{background:#e3f4e1;color:#175c12}
.skip{background:#eee;color:#555}
table{border-collapse:collapse;margin:.8rem 0}
td,th{padding:.25rem .6rem;border-bottom:1px solid #ddd;text-align:left;
font-variant-numeric:tabular-nums}th{background:#f6f6f6}
.legend span{display:inline-block;width:.8rem;height:.8rem;margin:0 .3rem 0 1rem;
vertical-align:middle}
.note{color:#555;max-width:60rem}figure{margin:0 0 1rem}figcaption{color:#555;font-size:.9rem}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _num(x: float | None) -> str:
    if x is None:
        return ""
    if math.isinf(x):
        return "∞"
    return f"{x:.4g}"


def _badge(c: ColumnDrift) -> str:
    if not c.tested:
        cls = "yes" if c.broken else "skip"
        return f'<span class="verdict {cls}">{_e(c.status)}</span>'
    text = "drift" if c.drifted else "no drift"
    extra = " (constant)" if c.status == "constant" else ""
    return f'<span class="verdict {"yes" if c.drifted else "no"}">{text}{extra}</span>'


def _missing(c: ColumnDrift) -> str:
    if c.missing_reference is None or c.missing_current is None:
        return ""
    text = f"{c.missing_reference:.1%} &rarr; {c.missing_current:.1%}"
    return f'<span class="verdict yes">{text}</span>' if c.missing_drifted else text


def _rows(report: DriftReport) -> str:
    out = []
    blank = "<td></td>" * 7
    for name, c in report.columns.items():
        out.append(
            "<tr>"
            f'<td><a href="#col-{_e(name)}">{_e(name)}</a></td><td>{_e(c.kind)}</td>'
            f"<td>{_e(c.test if c.tested else '')}</td><td>{_num(c.statistic)}</td>"
            f"<td>{_num(c.p_value)}</td><td>{_num(c.threshold)}</td><td>{_num(c.psi)}</td>"
            f"<td>{_missing(c)}</td><td>{_badge(c)}</td></tr>"
        )
    for name in report.missing_columns:
        out.append(
            f"<tr><td>{_e(name)}</td>{blank}"
            '<td><span class="verdict yes">missing from current</span></td></tr>'
        )
    for name in report.extra_columns:
        out.append(
            f"<tr><td>{_e(name)}</td>{blank}"
            '<td><span class="verdict skip">only in current (not tested)</span></td></tr>'
        )
    return "\n".join(out)


def _untested(report: DriftReport) -> str:
    """Sentences on what was not tested but counts as drift, and on an empty current table."""
    parts = []
    if report.n_current == 0:
        parts.append("The current data has no rows: no column was tested (not enough data).")
    rose = [n for n, c in report.columns.items() if c.tested and c.missing_drifted]
    if rose:
        parts.append(f"Missing values rose (counts as drift): <b>{_e(', '.join(rose))}</b>.")
    broken = report.trigger_reasons(report.broken_columns)
    if broken:
        text = "; ".join(f"{n} ({why})" for n, why in broken.items())
        parts.append(f"Not tested, counts as drift: <b>{_e(text)}</b>.")
    return f"<p>{' '.join(parts)}</p>" if parts else ""


def svg_bars(hist: Histogram, title: str) -> str:
    """Reference and current shares as grouped bars in an inline SVG element.

    Example:
        >>> from loopline.monitoring.report import Histogram
        >>> svg_bars(Histogram([0.5, 0.5], [0.2, 0.8], labels=["a", "b"]), "c").startswith("<svg")
        True
    """
    n = max(hist.bins, 1)
    top = max([*hist.reference, *hist.current, 1e-12])
    plot_w, plot_h = WIDTH - PAD_L - 8, HEIGHT - PAD_B - PAD_T
    slot = plot_w / n
    bar = max(slot * 0.4, 0.5)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{_e(title)}">',
        f"<title>{_e(title)}</title>",
        f'<line x1="{PAD_L}" y1="{PAD_T + plot_h}" x2="{WIDTH - 8}" y2="{PAD_T + plot_h}" '
        'stroke="#888"/>',
    ]
    for frac in (0.0, 0.5, 1.0):
        y = PAD_T + plot_h * (1 - frac)
        parts.append(
            f'<text x="{PAD_L - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">'
            f"{top * frac:.0%}</text>"
        )
    for i in range(hist.bins):
        x0 = PAD_L + i * slot + (slot - 2 * bar) / 2
        for j, (share, colour) in enumerate(
            ((hist.reference[i], REF_COLOUR), (hist.current[i], CUR_COLOUR))
        ):
            h = plot_h * share / top
            parts.append(
                f'<rect x="{x0 + j * bar:.1f}" y="{PAD_T + plot_h - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>'
                f"{'reference' if j == 0 else 'current'}: {share:.2%}</title></rect>"
            )
    step = max(1, math.ceil(hist.bins / 12))
    for i in range(0, hist.bins, step):
        if hist.labels is not None:
            label = hist.labels[i][:14]
        elif hist.edges is not None:
            label = f"{hist.edges[i]:.3g}"
        else:
            label = str(i)
        x = PAD_L + (i + 0.5) * slot if hist.labels is not None else PAD_L + i * slot
        parts.append(
            f'<text x="{x:.1f}" y="{PAD_T + plot_h + 14}" font-size="10" '
            f'transform="rotate(35 {x:.1f} {PAD_T + plot_h + 14})">{_e(label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def render(report: DriftReport) -> str:
    """The whole page as a string.

    Example:
        >>> from loopline.monitoring.report import DriftReport
        >>> render(DriftReport({}, n_reference=0, n_current=0)).startswith("<!DOCTYPE html>")
        True
    """
    verdict = (
        '<span class="verdict yes">dataset drift</span>'
        if report.drifted
        else '<span class="verdict no">no dataset drift</span>'
    )
    plots = []
    for name, c in report.columns.items():
        if c.histogram is None:
            continue
        plots.append(
            f'<figure id="col-{_e(name)}"><h2>{_e(name)} {_badge(c)}</h2>'
            f"{svg_bars(c.histogram, f'{name}: reference vs current')}"
            f"<figcaption>{_e(c.test)} = {_num(c.statistic)}"
            f"{'' if c.p_value is None else f', p = {_num(c.p_value)}'}"
            f" (threshold {_num(c.threshold)}); PSI {_num(c.psi)}; "
            f"{c.n_reference:,} reference and {c.n_current:,} current values</figcaption>"
            "</figure>"
        )
    drifted = ", ".join(report.drifted_columns) or "none"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Drift: {_e(report.current_label)} vs {_e(report.reference_label)}</title>
<style>{_CSS}</style></head><body>
<h1>Data drift: {_e(report.current_label)} against {_e(report.reference_label)}</h1>
<p>{verdict} &nbsp; {len(report.drifted_columns)} of {len(report.tested_columns)} tested columns
drifted ({report.share_drifted:.0%}; the dataset verdict needs {report.drift_share:.0%}).
Drifted: <b>{_e(drifted)}</b>.</p>
{_untested(report)}
<p class="note">{report.n_reference:,} reference rows, {report.n_current:,} current rows
(computed from {_e(report.method)}). The dataset verdict is Evidently's; a retraining loop
should act on any drifted column the model uses (<code>report.trigger(columns=features)</code>).</p>
<table><thead><tr><th>column</th><th>kind</th><th>test</th><th>statistic</th><th>p-value</th>
<th>threshold</th><th>PSI</th><th>missing (ref &rarr; cur)</th><th>verdict</th></tr></thead><tbody>
{_rows(report)}
</tbody></table>
<p class="legend">Distributions (share of values per bin):<span style="background:{REF_COLOUR}">
</span>reference<span style="background:{CUR_COLOUR}"></span>current</p>
{"".join(plots)}
</body></html>
"""
