"""The document written out: terminal text, Markdown (plots as SVG files next to it when it is a file), and
one self-contained HTML page (styles and SVG plots inline; no script, no font, nothing fetched)."""

from __future__ import annotations

import html
import re
from pathlib import Path

from servelab.reporting.compare import Document

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:24px auto;max-width:1180px;
     color:#1d2330;padding:0 16px;line-height:1.4}
h1{font-size:26px;margin:0 0 4px} h2{font-size:20px;margin:32px 0 8px;border-bottom:2px solid #dfe3ea;padding-bottom:4px}
h4{font-size:14px;margin:18px 0 6px;color:#344054}
.meta{color:#5b6474;font-size:13px;margin:0 0 12px;padding-left:18px}
nav{font-size:13px;margin:8px 0 16px} nav a{margin-right:14px;color:#2456a6;text-decoration:none}
figure{margin:10px 0 14px;padding:8px;border:1px solid #e4e7ec;border-radius:6px;background:#fff}
figure svg{width:100%;height:auto;display:block}
figcaption{font-size:12px;color:#5b6474;margin-top:4px}
.tables{display:flex;flex-wrap:wrap;gap:4px 22px;align-items:flex-start}
.table{overflow-x:auto;max-width:100%} .table.wide{flex-basis:100%}
table{border-collapse:collapse;font-size:13px;margin:2px 0 6px;font-variant-numeric:tabular-nums}
th,td{border:1px solid #dfe3ea;padding:4px 8px;text-align:right;white-space:nowrap}
thead th{background:#f2f4f7;text-align:center} tbody th{text-align:left;background:#fafbfc;font-weight:600}
td.muted,th.muted{color:#98a2b3}
.delta{font-size:11px;color:#5b6474} .delta.good{color:#1a7f37} .delta.bad{color:#c4320a}
.tag{font-size:10px;border-radius:8px;padding:0 5px;margin-left:4px;background:#eef0f4;color:#344054}
.tag-invalid{background:#fde8e8;color:#b42318}
.note{font-size:12px;color:#5b6474;margin:0 0 10px}
p{margin:6px 0}
"""


def text(doc: Document) -> str:
    out = [doc.title, "=" * len(doc.title), *doc.meta, ""]
    for sec in doc.sections:
        out += [sec.title, "-" * len(sec.title), *sec.paragraphs]
        for t in sec.tables:
            out += ["", t.text()]
        if sec.figures:
            out.append("(plots: --format html, or --format markdown -o FILE)")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def markdown(doc: Document, out: Path | None = None) -> str:
    """Markdown; with `out`, each plot is written as OUT_STEM-plots/NAME.svg and linked."""
    lines = [f"# {doc.title}", "", *(f"- {m}" for m in doc.meta), ""]
    plots_dir = out.parent / f"{out.stem}-plots" if out is not None else None
    for sec in doc.sections:
        lines += [f"## {sec.title}", "", *(p + "\n" for p in sec.paragraphs)]
        for fig in sec.figures:
            if plots_dir is None:
                continue
            svg = fig.draw()
            if svg is None:
                continue
            plots_dir.mkdir(parents=True, exist_ok=True)
            (plots_dir / f"{fig.name}.svg").write_text(svg)
            lines += [f"![{fig.title}]({plots_dir.name}/{fig.name}.svg)", ""]
        for t in sec.tables:
            lines += [t.markdown(), ""]
    return "\n".join(lines).rstrip() + "\n"


def _anchor(i: int) -> str:
    return f"s{i}"


def scoped(svg: str, prefix: str) -> str:
    """An SVG's element ids prefixed, so several inline in one page never share one (clip paths, glyphs)."""
    ids = set(re.findall(r'\bid="([^"]+)"', svg))
    if not ids:
        return svg

    def ref(m: re.Match[str]) -> str:
        name = m.group(2)
        return f"{m.group(1)}{prefix}-{name}" if name in ids else m.group(0)

    svg = re.sub(r'(\bid=")([^"]+)', ref, svg)
    return re.sub(r"((?:url\(|href=\")#)([^)\"]+)", ref, svg)


def page(doc: Document) -> str:
    """One HTML file with everything inline."""
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(doc.title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{e(doc.title)}</h1>",
        '<ul class="meta">' + "".join(f"<li>{e(m)}</li>" for m in doc.meta) + "</ul>",
        "<nav>"
        + "".join(f'<a href="#{_anchor(i)}">{e(s.title)}</a>' for i, s in enumerate(doc.sections))
        + "</nav>",
    ]
    for i, sec in enumerate(doc.sections):
        parts.append(f'<section id="{_anchor(i)}"><h2>{e(sec.title)}</h2>')
        parts += [f"<p>{e(p)}</p>" for p in sec.paragraphs]
        for fig in sec.figures:
            svg = fig.draw()
            if svg is None:
                parts.append(f'<p class="note">{e(fig.title)}: not drawn (matplotlib is not installed: pip install '
                             "'servelab[chart]')</p>")  # fmt: skip
                continue
            parts.append(f'<figure data-plot="{e(fig.name)}" role="img" aria-label="{e(fig.alt or fig.title)}">'
                         f"{scoped(svg, fig.name)}"
                         f"<figcaption>{e(fig.title)}</figcaption></figure>")  # fmt: skip
        if sec.tables:
            parts.append('<div class="tables">' + "".join(t.html() for t in sec.tables) + "</div>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


__all__ = ["CSS", "markdown", "page", "text"]
