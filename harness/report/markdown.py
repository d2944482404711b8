"""The report as Markdown (``summary.md``), for pasting into a README or a paper.

Tables become GitHub pipe tables; figures are written as PNG files under
``figures/`` beside the Markdown and linked relatively. Data strings are
HTML-escaped (so ``<script>`` shows as text) and pipes are escaped.
"""
from __future__ import annotations

from html import escape
from pathlib import Path

from .blocks import Figure, Gallery, Note, Section, Table
from .html import TITLE

FIGURES_DIR = "figures"


def md_text(s: object) -> str:
    t = escape(str(s), quote=False)
    for ch in ("\\", "`", "*", "[", "]"):
        t = t.replace(ch, "\\" + ch)
    return t.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def render_table(t: Table) -> str:
    cols = [str(c) for c in t.display.columns]
    lines = [f"**{md_text(t.title)}** ([{t.csv_name}]({t.csv_name}))", "",
             "| " + " | ".join(md_text(c) for c in cols) + " |",
             "|" + "|".join("---" for _ in cols) + "|"]
    for _, row in t.display.iterrows():
        lines.append("| " + " | ".join(md_text(v) for v in row) + " |")
    if t.caption:
        lines += ["", f"_{md_text(t.caption)}_"]
    return "\n".join(lines)


def render_gallery(g: Gallery, fig_dir: Path) -> list[str]:
    """A gallery as one pipe table: a row per image, its pictures written under ``figures/``."""
    fig_dir.mkdir(parents=True, exist_ok=True)
    width = max((len(r) for r in g.rows), default=0)
    lines = [f"**{md_text(g.title)}**", "", "| image |" + " |" * width, "|---|" + "---|" * width]
    for i, (label, panels) in enumerate(zip(g.labels, g.rows)):
        cells = []
        for j, p in enumerate(panels):
            name = f"{g.name}_{i}_{j}.jpg"
            (fig_dir / name).write_bytes(p.jpeg)
            cells.append(f"![{md_text(p.alt)}]({FIGURES_DIR}/{name})<br>{md_text(p.title)}")
        lines.append(f"| {md_text(label)} | " + " | ".join(cells) + " |")
    if g.caption:
        lines += ["", f"_{md_text(g.caption)}_"]
    return lines + [""]


def render(sections: list[Section], out_dir: Path, *, source: str, summary_line: str) -> str:
    fig_dir = out_dir / FIGURES_DIR
    parts = [f"# {md_text(TITLE)}", "",
             f"Run records: `{md_text(source)}` · {md_text(summary_line)}. "
             "Every number comes from these records or from the papers' published figures "
             "(harness/reference/published.csv); each table is also a CSV beside this file.", ""]
    for s in sections:
        parts += [f"## {md_text(s.title)}", ""]
        if s.intro:
            parts += [md_text(s.intro), ""]
        for b in s.blocks:
            if isinstance(b, Note):
                prefix = "**Warning:** " if b.kind == "warning" else ""
                parts += [f"> {prefix}{md_text(b.text)}", ""]
            elif isinstance(b, Table):
                parts += [render_table(b), ""]
            elif isinstance(b, Figure):
                fig_dir.mkdir(parents=True, exist_ok=True)
                (fig_dir / f"{b.name}.png").write_bytes(b.png)
                parts += [f"![{md_text(b.alt)}]({FIGURES_DIR}/{b.name}.png)", ""]
                if b.caption:
                    parts += [f"_{md_text(b.caption)}_", ""]
            elif isinstance(b, Gallery):
                parts += render_gallery(b, fig_dir)
    return "\n".join(parts).rstrip() + "\n"
