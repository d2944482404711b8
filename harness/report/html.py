"""One self-contained HTML page: inline CSS, plots as PNG data URIs, no script,
no network reference. Every string that reaches the page goes through
:func:`html.escape`.
"""
from __future__ import annotations

import base64
from html import escape

from .blocks import Figure, Gallery, Note, Section, Table

TITLE = "R-CNN → Fast R-CNN → Faster R-CNN: benchmark report"

CSS = """
:root { --fg:#1d232a; --muted:#5b6672; --line:#d8dee4; --bg:#ffffff; --alt:#f5f7f9;
  --accent:#0173b2; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg);
  font: 15px/1.5 "Liberation Sans", "DejaVu Sans", Arial, Helvetica, sans-serif; }
header, main, footer { max-width: 1240px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 24px; border-bottom: 1px solid var(--line); }
h1 { font-size: 26px; margin: 0 0 6px; }
h2 { font-size: 21px; margin: 36px 0 8px; padding-top: 8px; border-top: 3px solid var(--accent); }
h3 { font-size: 16px; margin: 18px 0 6px; }
p { margin: 6px 0 10px; }
.meta, .intro, .caption { color: var(--muted); }
.caption { font-size: 13px; }
nav ol { display:flex; flex-wrap:wrap; gap: 4px 18px; padding:0; margin: 8px 0 14px;
  list-style:none; }
nav a { color: var(--accent); text-decoration: none; font-weight: 600; }
.note { background: var(--alt); border-left: 4px solid var(--line); padding: 6px 10px; }
.warning { background: #fff4e5; border-left: 4px solid #de8f05; padding: 6px 10px; }
.scroll { overflow-x: auto; border: 1px solid var(--line); border-radius: 4px; }
table { border-collapse: collapse; font-size: 13px; width: 100%; }
th, td { padding: 4px 7px; border-bottom: 1px solid var(--line); text-align: left;
  vertical-align: top; }
th { background: var(--alt); position: sticky; top: 0; }
td:first-child { min-width: 11em; }
tbody tr:nth-child(even) { background: #fafbfc; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.short { white-space: nowrap; }
td.long { min-width: 12em; }
figure { margin: 14px 0 18px; }
figure.plot img { display:block; max-width:100%; height:auto; border:1px solid var(--line);
  border-radius: 4px; }
figcaption { font-size: 14px; margin: 4px 0; }
figcaption a { font-size: 12px; color: var(--accent); }
.gallery-row { display:flex; flex-wrap:wrap; gap: 8px; align-items:flex-start; margin: 6px 0 12px; }
.gallery-key { width: 100%; font-size: 13px; font-weight: 600; }
figure.panel { margin: 0; flex: 1 1 0; min-width: 200px; max-width: 322px; }
figure.panel img { display:block; width: 100%; height: auto; border:1px solid var(--line); }
figure.panel figcaption { font-size: 12px; color: var(--muted); }
footer { color: var(--muted); font-size: 12px; padding: 24px; border-top: 1px solid var(--line);
  margin-top: 32px; }
"""


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _looks_numeric(s: str) -> bool:
    t = s.replace(",", "").replace("±", "").replace("×", "").replace(" ", "")
    t = t.replace("%", "").replace(".", "").replace("-", "").replace("—", "")
    return bool(s) and (t.isdigit() or s == "—")


def render_table(t: Table) -> str:
    cols = [str(c) for c in t.display.columns]
    head = "".join(f"<th>{escape(c)}</th>" for c in cols)
    body = []
    for _, row in t.display.iterrows():
        cells = []
        for v in row:
            s = str(v)
            cls = (' class="num"' if _looks_numeric(s) else ' class="short"' if len(s) <= 24
                   else ' class="long"' if len(s) > 60 else "")
            cells.append(f"<td{cls}>{escape(s)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    caption = f'<p class="caption">{escape(t.caption)}</p>' if t.caption else ""
    return (f'<figure class="table" id="table-{escape(t.name)}"><figcaption><strong>'
            f'{escape(t.title)}</strong> · <a href="{escape(t.csv_name)}">{escape(t.csv_name)}'
            f'</a></figcaption><div class="scroll"><table><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>{caption}</figure>')


def render_figure(f: Figure) -> str:
    width = f' width="{f.width_px}"' if f.width_px else ""
    caption = f"<figcaption>{escape(f.caption)}</figcaption>" if f.caption else ""
    return (f'<figure class="plot" id="fig-{escape(f.name)}"><img src="{data_uri(f.png)}" '
            f'alt="{escape(f.alt)}"{width}>{caption}</figure>')


def render_gallery(g: Gallery) -> str:
    rows = []
    for label, panels in zip(g.labels, g.rows):
        cells = "".join(
            f'<figure class="panel"><img src="data:image/jpeg;base64,{base64.b64encode(p.jpeg).decode("ascii")}" '
            f'alt="{escape(p.alt)}"' + (f' width="{p.width}" height="{p.height}"' if p.width else "") +
            f'><figcaption>{escape(p.title)}</figcaption></figure>' for p in panels)
        rows.append(f'<div class="gallery-row"><div class="gallery-key">{escape(label)}</div>{cells}</div>')
    caption = f'<p class="caption">{escape(g.caption)}</p>' if g.caption else ""
    return (f'<figure class="gallery" id="gallery-{escape(g.name)}"><figcaption><strong>{escape(g.title)}'
            f'</strong></figcaption>{"".join(rows)}{caption}</figure>')


def render_block(b) -> str:
    if isinstance(b, Note):
        cls = "warning" if b.kind == "warning" else "note"
        return f'<p class="{cls}">{escape(b.text)}</p>'
    if isinstance(b, Table):
        return render_table(b)
    if isinstance(b, Figure):
        return render_figure(b)
    if isinstance(b, Gallery):
        return render_gallery(b)
    raise TypeError(f"unknown block {type(b).__name__}")


def render(sections: list[Section], *, source: str, summary_line: str) -> str:
    nav = "".join(f'<li><a href="#{escape(s.anchor)}">{escape(s.title)}</a></li>'
                  for s in sections)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(TITLE)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<header><h1>{escape(TITLE)}</h1>",
        f'<p class="meta">Run records: {escape(source)} · {escape(summary_line)}. '
        "Every number below comes from these records or from the papers' published "
        "figures (harness/reference/published.csv). Each table is also written as CSV "
        "beside this page.</p>",
        f"<nav><ol>{nav}</ol></nav></header><main>",
    ]
    for s in sections:
        parts.append(f'<section id="{escape(s.anchor)}"><h2>{escape(s.title)}</h2>')
        if s.intro:
            parts.append(f'<p class="intro">{escape(s.intro)}</p>')
        parts.extend(render_block(b) for b in s.blocks)
        parts.append("</section>")
    parts.append("</main><footer>Generated by <code>harness report</code> from the run records "
                 "above; rerun it to refresh.</footer></body></html>")
    return "\n".join(parts) + "\n"
