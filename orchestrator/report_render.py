"""Markdown and self-contained HTML from one list of report blocks.

Both formats are written from the same blocks, so their content is identical. The
HTML page embeds its figures as base64 PNG data URIs and forbids every network request
with a Content-Security-Policy, so it can be mailed or archived as one file. A small
inline script sets ``data-images-loaded`` on ``<body>`` to ``"all"`` once every image
has decoded (or ``"missing"``), which lets a headless browser check the page.
"""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Code:
    text: str


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]
    numeric: frozenset[int] = frozenset()
    highlight: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Figure:
    path: Path
    caption: str


Block = Heading | Paragraph | Bullets | Code | Table | Figure


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(blocks: list[Block], out_dir: Path) -> str:
    """Return the Markdown text; figure links are relative to ``out_dir``."""
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, Bullets):
            parts.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Code):
            parts.append(f"```\n{block.text}\n```")
        elif isinstance(block, Table):
            align = ["---:" if i in block.numeric else "---" for i in range(len(block.header))]
            lines = [
                "| " + " | ".join(_md_cell(c) for c in block.header) + " |",
                "| " + " | ".join(align) + " |",
            ]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            parts.append("\n".join(lines))
        else:
            link = Path(os.path.relpath(block.path, out_dir)).as_posix()
            parts.append(f"![{block.caption}]({link})\n\n*{block.caption}*")
    return "\n\n".join(parts) + "\n"


_STYLE = """
body { font-family: "DejaVu Sans", Arial, sans-serif; font-size: 15px; line-height: 1.45;
       max-width: 1100px; margin: 1.5em auto; padding: 0 1em; color: #111; }
h1 { font-size: 1.7em; } h2 { font-size: 1.35em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.15em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: left; }
td { white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #eee; }
tr.best td { background: #fff3c4; font-weight: bold; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-style: italic; color: #333; }
pre { background: #f4f4f4; padding: 0.6em; overflow-x: auto; }
@media print { body { max-width: none; } figure { break-inside: avoid; } }
"""

_SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var loaded = images.filter(function (img) { return img.complete && img.naturalWidth > 0; });
  document.body.setAttribute("data-image-count", String(images.length));
  document.body.setAttribute("data-images-decoded", String(loaded.length));
  document.body.setAttribute("data-images-loaded",
                             loaded.length === images.length ? "all" : "missing");
});
"""

_POLICY = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
)


def _html_table(block: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in block.header)
    rows = []
    for number, row in enumerate(block.rows):
        marked = number in block.highlight
        cells = "".join(
            f'<td class="num">{html.escape(c)}</td>'
            if i in block.numeric
            else f"<td>{html.escape(c)}</td>"
            for i, c in enumerate(row)
        )
        rows.append(f'<tr class="best">{cells}</tr>' if marked else f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _html_block(block: Block) -> str:
    if isinstance(block, Heading):
        return f"<h{block.level}>{html.escape(block.text)}</h{block.level}>"
    if isinstance(block, Paragraph):
        return f"<p>{html.escape(block.text)}</p>"
    if isinstance(block, Bullets):
        items = "".join(f"<li>{html.escape(item)}</li>" for item in block.items)
        return f"<ul>{items}</ul>"
    if isinstance(block, Code):
        return f"<pre>{html.escape(block.text)}</pre>"
    if isinstance(block, Table):
        return _html_table(block)
    data = base64.b64encode(block.path.read_bytes()).decode("ascii")
    caption = html.escape(block.caption)
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{caption}">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def render_html(blocks: list[Block], title: str) -> str:
    """Return a self-contained HTML page with every figure embedded."""
    body = "\n".join(_html_block(block) for block in blocks)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n"
        f"<script>{_SCRIPT}</script>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )
