"""A tiny document model rendered to Markdown and to standalone HTML (no markdown library needed)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Heading", "Paragraph", "Table", "Image", "BulletList", "Document"]


@dataclass
class Heading:
    """A section heading."""

    text: str
    """Heading text."""
    level: int = 2
    """1 = title, 2 = section, 3 = subsection."""


@dataclass
class Paragraph:
    """A paragraph of plain text (``**bold**`` is kept in Markdown and rendered in HTML)."""

    text: str
    """The text."""


@dataclass
class BulletList:
    """An unordered list."""

    items: list[str]
    """One string per bullet."""


@dataclass
class Table:
    """A table with a header row."""

    header: Sequence[str]
    """Column titles."""
    rows: Sequence[Sequence[str]]
    """Cells (already formatted)."""


@dataclass
class Image:
    """A PNG next to the report."""

    path: str
    """Path relative to the report."""
    alt: str
    """Alternative text / caption."""


Block = Heading | Paragraph | BulletList | Table | Image


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _html_text(text: str) -> str:
    parts = html.escape(str(text)).split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))


@dataclass
class Document:
    """An ordered list of blocks."""

    title: str
    """Document title (first heading, HTML title)."""
    blocks: list[Block] = field(default_factory=list)
    """Content in order."""

    def add(self, *blocks: Block) -> None:
        """Append blocks."""
        self.blocks.extend(blocks)

    def headings(self) -> list[str]:
        """Section headings (level 2) in order."""
        return [b.text for b in self.blocks if isinstance(b, Heading) and b.level == 2]

    def to_markdown(self) -> str:
        """Render as GitHub-flavoured Markdown."""
        out = [f"# {self.title}", ""]
        for b in self.blocks:
            if isinstance(b, Heading):
                out += ["#" * b.level + " " + b.text, ""]
            elif isinstance(b, Paragraph):
                out += [b.text, ""]
            elif isinstance(b, BulletList):
                out += [f"- {item}" for item in b.items] + [""]
            elif isinstance(b, Table):
                out.append("| " + " | ".join(_md_cell(h) for h in b.header) + " |")
                out.append("|" + "|".join("---" for _ in b.header) + "|")
                out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
                out.append("")
            elif isinstance(b, Image):
                out += [f"![{b.alt}]({b.path})", ""]
        return "\n".join(out).rstrip() + "\n"

    def to_html(self) -> str:
        """Render as one standalone HTML page (images referenced by relative path)."""
        body = [f"<h1>{_html_text(self.title)}</h1>"]
        for b in self.blocks:
            if isinstance(b, Heading):
                body.append(f"<h{b.level}>{_html_text(b.text)}</h{b.level}>")
            elif isinstance(b, Paragraph):
                body.append(f"<p>{_html_text(b.text)}</p>")
            elif isinstance(b, BulletList):
                body.append("<ul>" + "".join(f"<li>{_html_text(i)}</li>" for i in b.items) + "</ul>")
            elif isinstance(b, Table):
                head = "".join(f"<th>{_html_text(h)}</th>" for h in b.header)
                rows = "".join("<tr>" + "".join(f"<td>{_html_text(c)}</td>" for c in row) + "</tr>" for row in b.rows)
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            elif isinstance(b, Image):
                src = html.escape(b.path, quote=True)
                body.append(f'<figure><img src="{src}" alt="{html.escape(b.alt, quote=True)}">'
                            f"<figcaption>{_html_text(b.alt)}</figcaption></figure>")
        style = ("body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#222}"
                 "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;"
                 "text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}"
                 "img{max-width:100%}figcaption{color:#666;font-size:90%}")
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(self.title)}</title><style>{style}</style></head><body>\n"
                + "\n".join(body) + "\n</body></html>\n")
