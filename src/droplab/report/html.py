"""Self-contained HTML pages: one file, images embedded as base64 PNG, no server, no scripts.

Every report (demo, train, sweep, mc) is built from ``Section`` objects and written with
``write_page``, atomically.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

from droplab._io import atomic_write_text

CSS = """
body { font: 15px/1.5 system-ui, -apple-system, Segoe UI, sans-serif; max-width: 1600px;
       margin: 2em auto; padding: 0 1em; color: #1d1d1f; }
h1 { font-size: 1.7em; margin-bottom: .2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.meta { color: #666; font-size: .9em; }
table { border-collapse: collapse; margin: .8em 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ccc; padding: .3em .7em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(460px, 1fr)); gap: 0 1.5em;
        align-items: start; }
.grid figure { margin: .5em 0; }
.provenance td, .provenance th { font-size: .9em; } .provenance code { white-space: pre-wrap; }
figcaption { color: #555; font-size: .9em; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; }
"""


@dataclass
class Section:
    """One titled part of a report; ``body`` is trusted HTML built with the helpers below."""

    title: str
    body: str = ""
    parts: list[str] = field(default_factory=list)

    def add(self, fragment: str) -> Section:
        self.parts.append(fragment)
        return self

    def render(self) -> str:
        return f"<section><h2>{esc(self.title)}</h2>\n{self.body}\n{''.join(self.parts)}</section>"


def esc(text) -> str:
    """HTML-escape any value's ``str``."""
    return html.escape(str(text))


def paragraph(text: str) -> str:
    return f"<p>{esc(text)}</p>"


def number(v) -> str:
    """A number as a person writes it: ``45``, ``50.2``, ``0.8471``, ``0.999``, ``1e-05``.

    At most 4 decimals, trailing zeros dropped; magnitudes below 0.001 in 3 significant digits.
    """
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int) or not math.isfinite(v):
        return str(v)
    if v != 0 and abs(v) < 1e-3:
        return f"{v:.3g}"
    text = f"{v:.4f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def table(headers: list[str], rows: list[list], *, table_id: str | None = None) -> str:
    """An HTML table; numbers are shown with ``number``, everything else with ``str``."""

    def cell(v) -> str:
        return esc(number(v)) if isinstance(v, float) else esc(v)

    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    ident = f' id="{esc(table_id)}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure_png(fig, *, dpi: int = 110) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def image(png: bytes, caption: str = "", *, alt: str | None = None) -> str:
    """An embedded PNG with a caption."""
    alt_text = esc(alt or caption or "plot")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{alt_text}" src="{png_data_uri(png)}">{cap}</figure>'


def grid(fragments: list[str]) -> str:
    """Figures side by side on a wide page, one column on a narrow one."""
    return f'<div class="grid">{"".join(fragments)}</div>'


def provenance_section(prov: dict | None) -> Section:
    """What produced the result, ending with the command that reproduces it."""
    from droplab.provenance import FIELDS, describe_value

    section = Section("How this was made")
    if not prov:
        return section.add(paragraph("No provenance recorded (a result from an older droplab)."))
    rows = [[k, describe_value(k, prov.get(k))] for k in FIELDS if k != "command"]
    section.add(
        table(["", "value"], rows, table_id="provenance").replace(
            "<table ", '<table class="provenance" ', 1
        )
    )
    return section.add(
        f'<p>Reproduce with:</p><pre id="reproduce"><code>{esc(prov.get("command", "-"))}'
        "</code></pre>"
    )


def render_page(title: str, sections: list[Section], *, subtitle: str = "") -> str:
    """The whole HTML document."""
    sub = f'<p class="meta">{esc(subtitle)}</p>' if subtitle else ""
    body = "\n".join(s.render() for s in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n"
        f"<body><h1>{esc(title)}</h1>{sub}\n{body}\n</body></html>\n"
    )


def write_page(path, title: str, sections: list[Section], *, subtitle: str = "") -> Path:
    """Render and write a report atomically; returns the path."""
    return atomic_write_text(path, render_page(title, sections, subtitle=subtitle))
