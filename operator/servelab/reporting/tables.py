"""A table as data (cells with an optional delta against the baseline), written as terminal text, Markdown
or HTML. The terminal form reuses the box layout of `servelab.report`."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from servelab.report import _table


@dataclass
class Cell:
    text: str
    delta: str | None = None  # e.g. "+12.5%", against the baseline's value
    better: bool | None = None  # True: the delta is an improvement; False: a regression; None: neither
    note: str | None = None  # e.g. a point's label (server-capped), shown after the value
    muted: bool = False  # an invalid point, a missing value

    def plain(self) -> str:
        out = self.text
        if self.delta:
            out += f" ({self.delta})"
        if self.note:
            out += f" [{self.note}]"
        return out


def cell(value: object) -> Cell:
    return value if isinstance(value, Cell) else Cell(str(value))


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    note: str | None = None  # what the deltas are against, what is left out
    wide: bool = False  # a page gives it the full width (narrow tables sit side by side)

    def add(self, *values: object) -> None:
        self.rows.append([cell(v) for v in values])

    def text(self) -> str:
        body = _table(self.header, [[c.plain() for c in r] for r in self.rows])
        lines = [self.title, body]
        if self.note:
            lines.append(self.note)
        return "\n".join(lines)

    def markdown(self) -> str:
        def esc(s: str) -> str:
            return s.replace("|", "\\|").replace("\n", " ")

        out = [f"**{esc(self.title)}**", ""]
        out.append("| " + " | ".join(esc(h) for h in self.header) + " |")
        out.append("|" + "|".join(":---" if i == 0 else "---:" for i in range(len(self.header))) + "|")
        out += ["| " + " | ".join(esc(c.plain()) for c in r) + " |" for r in self.rows]
        if self.note:
            out += ["", f"_{esc(self.note)}_"]
        return "\n".join(out)

    def html(self) -> str:
        e = html.escape
        head = "".join(f"<th>{e(h)}</th>" for h in self.header)
        rows = []
        for r in self.rows:
            cells = []
            for i, c in enumerate(r):
                classes = ["muted"] if c.muted else []
                inner = e(c.text)
                if c.delta:
                    tone = "" if c.better is None else (" good" if c.better else " bad")
                    inner += f' <span class="delta{tone}">{e(c.delta)}</span>'
                if c.note:
                    inner += f' <span class="tag tag-{e(c.note.split()[0])}">{e(c.note)}</span>'
                tag = "th" if i == 0 else "td"
                cls = f' class="{" ".join(classes)}"' if classes else ""
                cells.append(f"<{tag}{cls}>{inner}</{tag}>")
            rows.append("<tr>" + "".join(cells) + "</tr>")
        note = f'<p class="note">{e(self.note)}</p>' if self.note else ""
        return (f'<div class="table{" wide" if self.wide else ""}"><h4>{e(self.title)}</h4><table><thead><tr>{head}</tr></thead>'
                f"<tbody>{''.join(rows)}</tbody></table>{note}</div>")  # fmt: skip


__all__ = ["Cell", "Table", "cell"]
