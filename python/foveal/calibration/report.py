"""``calibration.html``: one self-contained page (inline CSS and SVG, no external assets) that shows, per segment,
whether predicted scores still rank creatives by their outcomes."""
from __future__ import annotations

import html
from datetime import date
from typing import Any, Sequence

from ..scoring.report import DOCUMENT_CSP

W, H, PAD = 370, 220, 44
INK, MUTED, ACCENT, REF, ALERT = "#1f2430", "#8a8f98", "#1864d6", "#9aa3ad", "#d6336c"

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#1f2430;margin:24px auto;max-width:1180px;
padding:0 16px}h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 6px;border-top:1px solid #e3e6ea;
padding-top:18px}h3{font-size:14px;margin:14px 0 4px;color:#444}.meta{color:#667}.flag{background:#fdecf1;
border-left:4px solid #d6336c;padding:8px 12px;margin:8px 0}.ok{background:#eaf6ee;border-left:4px solid #2f9e44;
padding:8px 12px;margin:8px 0}.grid{display:flex;flex-wrap:wrap;gap:18px}figure{margin:0}figcaption{color:#667;
font-size:12px;max-width:370px}table{border-collapse:collapse;margin:6px 0;font-size:13px}td,th{padding:3px 9px;
border-bottom:1px solid #eceef1;text-align:right}th:first-child,td:first-child{text-align:left}.bad{color:#d6336c;
font-weight:600}.note{color:#667;font-size:12px}svg text{font:11px system-ui,sans-serif;fill:#555}
"""


def _esc(v: Any) -> str:
    return html.escape(str(v))


def _fmt(v: float | None, digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.2f}%"


def _qfmt(q: float) -> str:
    return "<0.0001" if q < 1e-4 else f"{q:.2g}"


def _ci(ci: Sequence[float] | None, fmt=_fmt) -> str:
    return "" if not ci else f" [{fmt(ci[0])}, {fmt(ci[1])}]"


class _Axes:
    """Maps data to an SVG panel of W×H with margins for tick labels."""

    def __init__(self, x0: float, x1: float, y0: float, y1: float) -> None:
        self.x0, self.x1 = x0, (x1 if x1 > x0 else x0 + 1)
        self.y0, self.y1 = y0, (y1 if y1 > y0 else y0 + 1)

    def x(self, v: float) -> float:
        return PAD + (v - self.x0) / (self.x1 - self.x0) * (W - PAD - 12)

    def y(self, v: float) -> float:
        return H - 28 - (v - self.y0) / (self.y1 - self.y0) * (H - 28 - 12)

    def frame(self, xticks: list[tuple[float, str]], yticks: list[tuple[float, str]], xlabel: str,
              ylabel: str) -> str:
        parts = [f'<rect x="{PAD}" y="12" width="{W - PAD - 12}" height="{H - 40}" fill="#fafbfc" stroke="#dde1e6"/>']
        for v, label in yticks:
            parts.append(f'<line x1="{PAD}" x2="{W - 12}" y1="{self.y(v):.1f}" y2="{self.y(v):.1f}" '
                         'stroke="#eceef1"/>')
            parts.append(f'<text x="{PAD - 4}" y="{self.y(v) + 4:.1f}" text-anchor="end">{_esc(label)}</text>')
        for v, label in xticks:
            parts.append(f'<text x="{self.x(v):.1f}" y="{H - 14}" text-anchor="middle">{_esc(label)}</text>')
        parts.append(f'<text x="{(PAD + W) / 2:.0f}" y="{H - 1}" text-anchor="middle">{_esc(xlabel)}</text>')
        parts.append(f'<text x="11" y="{H / 2:.0f}" transform="rotate(-90 11 {H / 2:.0f})" '
                     f'text-anchor="middle">{_esc(ylabel)}</text>')
        return "".join(parts)


def _svg(body: str, title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img">'
            f'<title>{_esc(title)}</title>{body}</svg>')


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    return [lo + (hi - lo) * i / (count - 1) for i in range(count)]


def correlation_plot(seg: dict[str, Any], score: str) -> str:
    """Spearman's rho of ``score`` at each window's end, with its 95 % band; reference and recent marked."""
    pts = [(date.fromisoformat(w["end"]).toordinal(), w["scores"][score]) for w in seg["windows"]
           if score in w["scores"] and w["scores"][score]["spearman"] is not None]
    if not pts:
        return '<p class="note">Too few creatives with outcomes in every window for a correlation.</p>'
    ax = _Axes(pts[0][0] - 1, pts[-1][0] + 1, -1, 1)
    xt = [(d, date.fromordinal(d).strftime("%d %b")) for d in sorted({pts[0][0], pts[len(pts) // 2][0], pts[-1][0]})]
    body = [ax.frame(xt, [(v, f"{v:+.1f}") for v in (-1, -0.5, 0, 0.5, 1)], "window end", "Spearman ρ")]
    band = [(d, c["spearman_ci"]) for d, c in pts if c["spearman_ci"]]
    if len(band) > 1:
        upper = " ".join(f"{ax.x(d):.1f},{ax.y(ci[1]):.1f}" for d, ci in band)
        lower = " ".join(f"{ax.x(d):.1f},{ax.y(ci[0]):.1f}" for d, ci in reversed(band))
        body.append(f'<polygon points="{upper} {lower}" fill="{ACCENT}" fill-opacity="0.15" stroke="none"/>')
    body.append(f'<line x1="{PAD}" x2="{W - 12}" y1="{ax.y(0):.1f}" y2="{ax.y(0):.1f}" stroke="{MUTED}" '
                'stroke-dasharray="3 3"/>')
    line = " ".join(f"{ax.x(d):.1f},{ax.y(c['spearman']):.1f}" for d, c in pts)
    body.append(f'<polyline points="{line}" fill="none" stroke="{ACCENT}" stroke-width="2"/>')
    for d, c in pts:
        body.append(f'<circle cx="{ax.x(d):.1f}" cy="{ax.y(c["spearman"]):.1f}" r="2.5" fill="{ACCENT}">'
                    f'<title>{date.fromordinal(d)}: ρ={c["spearman"]:.2f}{_ci(c["spearman_ci"])} n={c["n"]}</title>'
                    '</circle>')
    for label, idx, colour in (("reference", seg.get("reference"), REF), ("recent", seg.get("recent"), ALERT
                                                                           if seg.get("flagged") else ACCENT)):
        if idx is None:
            continue
        d = date.fromisoformat(seg["windows"][idx]["end"]).toordinal()
        right = ax.x(d) > W / 2  # label on the inner side of the marker, so it is never cut off
        body.append(f'<line x1="{ax.x(d):.1f}" x2="{ax.x(d):.1f}" y1="12" y2="{H - 28}" stroke="{colour}" '
                    f'stroke-width="1.5"/><text x="{ax.x(d) + (-4 if right else 4):.1f}" y="24" fill="{colour}" '
                    f'text-anchor="{"end" if right else "start"}">{label} window</text>')
    return _svg("".join(body), f"Spearman correlation of {score} over time")


def scatter_plot(points: list[list[float]], title: str, colour: str) -> str:
    """Predicted score vs outcome rate, one dot per creative, dot area by the rate's denominator."""
    if not points:
        return ""
    xs, ys, ws = zip(*points)
    ax = _Axes(min(xs), max(xs), 0, max(ys) * 1.05 or 1)
    wmax = max(ws) or 1
    body = [ax.frame([(v, f"{v:.3f}") for v in _ticks(ax.x0, ax.x1, 4)],
                     [(v, f"{100 * v:.1f}%") for v in _ticks(0, ax.y1, 5)], "predicted score", "outcome rate")]
    for x, y, w in points:
        r = 1.5 + 4.5 * (w / wmax) ** 0.5
        body.append(f'<circle cx="{ax.x(x):.1f}" cy="{ax.y(y):.1f}" r="{r:.1f}" fill="{colour}" fill-opacity="0.45"/>')
    return _svg("".join(body), title)


def decile_plot(rows: list[dict[str, Any]]) -> str:
    """Pooled outcome rate per score bin with its 95 % interval."""
    top = max([r["rate_ci"][1] if r["rate_ci"] else r["rate"] for r in rows] + [1e-9]) * 1.05
    ax = _Axes(0.5, len(rows) + 0.5, 0, top)
    body = [ax.frame([(r["bin"], str(r["bin"])) for r in rows], [(v, f"{100 * v:.1f}%") for v in _ticks(0, top, 5)],
                     "predicted score bin (low → high)", "outcome rate")]
    bw = (ax.x(1) - ax.x(0)) * 0.6
    for r in rows:
        x = ax.x(r["bin"])
        body.append(f'<rect x="{x - bw / 2:.1f}" y="{ax.y(r["rate"]):.1f}" width="{bw:.1f}" '
                    f'height="{ax.y(0) - ax.y(r["rate"]):.1f}" fill="{ACCENT}" fill-opacity="0.7"/>')
        if r["rate_ci"]:
            lo, hi = r["rate_ci"]
            body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{ax.y(lo):.1f}" y2="{ax.y(hi):.1f}" stroke="{INK}"/>')
    return _svg("".join(body), "outcome rate by predicted score bin")


def _drift_table(seg: dict[str, Any]) -> str:
    rows = []
    for name, t in sorted(seg.get("drift", {}).items()):
        cls = ' class="bad"' if t["flagged"] else ""
        rows.append(f"<tr><td>{_esc(name)}</td><td>{_fmt(t['reference_spearman'])}{_ci(t['reference_ci'])} "
                    f"(n={t['reference_n']})</td><td>{_fmt(t['recent_spearman'])}{_ci(t['recent_ci'])} "
                    f"(n={t['recent_n']})</td><td>{t['z']:.2f}</td><td>{_qfmt(t['q'])}</td>"
                    f"<td{cls}>{'drift' if t['flagged'] else 'ok'}</td></tr>")
    if not rows:
        return f'<p class="note">{_esc(seg.get("drift_note") or "no score had enough creatives in both windows")}</p>'
    return ("<table><tr><th>score</th><th>reference ρ [95% CI]</th><th>recent ρ [95% CI]</th><th>z</th>"
            "<th>q (BH)</th><th></th></tr>" + "".join(rows) + "</table>")


def _decile_table(rows: list[dict[str, Any]]) -> str:
    body = "".join(f"<tr><td>{r['bin']}</td><td>{r['score_min']:.4f} – {r['score_max']:.4f}</td><td>{r['n']}</td>"
                   f"<td>{_pct(r['rate'])}{_ci(r['rate_ci'], _pct)}</td></tr>" for r in rows)
    return ("<table><tr><th>bin</th><th>predicted score</th><th>creatives</th><th>rate [95% CI]</th></tr>"
            + body + "</table>")


def _threshold_table(seg: dict[str, Any]) -> str:
    rows = []
    for kind, t in sorted(seg.get("thresholds", {}).items()):
        b, a = t["before"], t["after"]
        rows.append(f"<tr><td>{_esc(kind)}</td><td>{b['pass_percentile']:g} → <b>{a['pass_percentile']:g}</b></td>"
                    f"<td>{b['youden_j']:.2f} → {a['youden_j']:.2f}</td><td>{_pct(b['pass_rate'])} → "
                    f"{_pct(a['pass_rate'])}</td><td>{_pct(b['top_share_passed'])} → {_pct(a['top_share_passed'])}"
                    f"</td><td>{t['n']}</td></tr>")
    skipped = "".join(f'<p class="note">{_esc(note)}</p>' for note in seg.get("thresholds_skipped", {}).values())
    if not rows:
        return f"<h3>Pass thresholds (recent window)</h3>{skipped}" if skipped else ""
    adopt = (f'<p>Proposed norms: <code>{_esc(seg["proposed_norms"])}</code> — adopt by scoring with '
             f'<code>--norms {_esc(seg["proposed_norms"])}</code>; nothing changes until you do.</p>'
             if seg.get("proposed_norms") else '<p class="note">The current thresholds already separate best.</p>')
    return ("<h3>Pass thresholds (recent window)</h3><table><tr><th>kind</th><th>pass percentile</th>"
            "<th>Youden J</th><th>pass rate</th><th>top performers among passes</th><th>n</th></tr>"
            + "".join(rows) + "</table>" + adopt + skipped)


def _segment(seg: dict[str, Any], score: str, metric: str) -> str:
    status = (f'<div class="flag">Drift flagged: {"; ".join(_esc(n) for n, t in seg["drift"].items() if t["flagged"])}'
              "</div>" if seg.get("flagged") else "")
    scatters = "".join(
        f'<figure>{scatter_plot(s["points"], f"{score} vs {metric}, {label}", REF if label == "reference" else ACCENT)}'
        f'<figcaption>{label} window {s["start"]} – {s["end"]}: {len(s["points"])} creatives</figcaption></figure>'
        for label, s in seg.get("scatter", {}).items())
    deciles = seg.get("deciles")
    return (f'<section><h2>{_esc(seg["name"])}</h2><p class="meta">{seg["creatives"]} creatives</p>{status}'
            f'<div class="grid"><figure>{correlation_plot(seg, score)}<figcaption>Spearman ρ of {_esc(score)} with '
            f'{_esc(metric)} per window, 95% bootstrap band</figcaption></figure>{scatters}</div>'
            f"<h3>Drift: reference vs recent window</h3>{_drift_table(seg)}"
            + (f"<h3>{_esc(score)} bins → {_esc(metric)} (recent window)</h3><div class='grid'>"
               f"<figure>{decile_plot(deciles)}</figure>{_decile_table(deciles)}</div>" if deciles else "")
            + _threshold_table(seg) + "</section>")


def render_html(doc: dict[str, Any]) -> str:
    """The page for a ``calibration.json`` document."""
    s, d, m = doc["settings"], doc["data"], doc.get("model", {})
    mismatch = f'<div class="flag">{_esc(doc["norms_warning"])}</div>' if doc.get("norms_warning") else ""
    flags = "".join(f'<div class="flag">{_esc(f["message"])}</div>' for f in doc["flags"]) or (
        '<div class="ok">No segment\'s correlation fell by more than chance (Benjamini–Hochberg, '
        f'α={s["alpha"]}).</div>')
    by = ", ".join(s["by"]) or "all creatives together"
    head = (f"<h1>foveal calibration: {_esc(s['metric'])}</h1><p class='meta'>model {_esc(m.get('name'))} "
            f"({_esc(m.get('precision'))}, graph {_esc(str(m.get('graph_sha256'))[:12])}) · outcomes "
            f"{d['first_date']} – {d['last_date']} · {d['creatives']} creatives · segments by {_esc(by)} · "
            f"{s['window_days']}-day windows every {s['step_days']} days · at least {s['min_impressions']} impressions"
            f" and {s['min_creatives']} creatives · foveal {_esc(doc['foveal_version'])}</p>")
    segments = "".join(_segment(seg, s["score"], s["metric"]) for seg in doc["segments"])
    method = f"<h2>Method</h2><p class='note'>{_esc(doc['drift_method'])}</p>"
    if doc.get("thresholds_note"):
        method += f"<p class='note'>{_esc(doc['thresholds_note'])}</p>"
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f'<meta http-equiv="Content-Security-Policy" content="{DOCUMENT_CSP}"><title>foveal calibration</title>'
            f"<style>{CSS}</style></head><body>{head}{mismatch}{flags}{segments}{method}</body></html>\n")
