"""report.html beside a nightly summary: per cell and test the verdict, the figures, and the
direct map ("Low Kernel Mapping") before and after the workload, drawn as strips coloured by
mapping level. One self-contained file: inline CSS and SVG, a few lines of script that count
the pictures drawn (the tests read that count in a headless browser)."""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

from harness.suite.summary import Summary

COLOURS = {"pud": "#2b6cb0", "pmd": "#38a169", "pte": "#dd6b20"}
LEVEL_NAMES = {"pud": "1G", "pmd": "2M", "pte": "4K"}
UNMAPPED = "#e2e8f0"
VERDICT_COLOURS = {"PASS": "#2f855a", "FAIL": "#c53030", "ERROR": "#b7791f", "SKIP": "#718096"}
STRIP_WIDTH = 960
STRIP_HEIGHT = 22
MIB = 1 << 20

STYLE = """
body { font: 14px sans-serif; margin: 1.5em; color: #1a202c; }
table { border-collapse: collapse; margin: .5em 0 1em; }
td, th { border: 1px solid #cbd5e0; padding: 3px 8px; text-align: left; vertical-align: top; }
.verdict { color: #fff; font-weight: bold; padding: 1px 6px; border-radius: 3px; }
.figures { font-family: monospace; font-size: 12px; white-space: nowrap; }
.strip { margin: 2px 0 6px; }
.strip-label { font-family: monospace; font-size: 12px; }
.legend span { display: inline-block; width: 14px; height: 14px; vertical-align: middle; margin: 0 4px 0 12px; }
"""

SCRIPT = """
window.addEventListener("load", function () {
  var drawn = 0;
  document.querySelectorAll("svg.dmap").forEach(function (svg) {
    var box = svg.getBoundingClientRect();
    if (box.width > 0 && box.height > 0 && svg.querySelectorAll("rect.run").length > 0) drawn++;
  });
  document.body.setAttribute("data-pictures-drawn", String(drawn));
});
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _verdict(text: str) -> str:
    return f'<span class="verdict" style="background:{VERDICT_COLOURS.get(text, "#4a5568")}">{_e(text)}</span>'


def strip_svg(runs: list[list], extent: int, label: str) -> str:
    """One direct-map snapshot as an SVG strip: x is the address offset, colour the level."""
    scale = STRIP_WIDTH / extent
    parts = [f'<svg class="dmap" width="{STRIP_WIDTH}" height="{STRIP_HEIGHT}" '
             f'viewBox="0 0 {STRIP_WIDTH} {STRIP_HEIGHT}" role="img" aria-label="{_e(label)}">',
             f'<rect x="0" y="0" width="{STRIP_WIDTH}" height="{STRIP_HEIGHT}" fill="{UNMAPPED}"/>']
    for start, end, level in runs:
        x = start * scale
        width = max((end - start) * scale, 1.0)
        parts.append(f'<rect class="run" x="{x:.2f}" y="0" width="{width:.2f}" '
                     f'height="{STRIP_HEIGHT}" fill="{COLOURS.get(level, "#000")}">'
                     f'<title>{start:#x}-{end:#x} {_e(LEVEL_NAMES.get(level, level))}</title></rect>')
    parts.append("</svg>")
    return "".join(parts)


def _totals(runs: list[list]) -> str:
    totals: dict[str, int] = {}
    for start, end, level in runs:
        totals[level] = totals.get(level, 0) + end - start
    return ", ".join(f"{LEVEL_NAMES.get(level, level)}: {size / MIB:.1f} MiB"
                     for level, size in sorted(totals.items(), key=lambda kv: kv[0], reverse=True))


PHASES = ("before", "during", "after")


def _snapshot_order(item: tuple[str, list]) -> tuple[str, int, str]:
    """Labels are "bootN[ (args)] PHASE": by boot, then before/during/after."""
    boot, _, phase = item[0].rpartition(" ")
    return boot, PHASES.index(phase) if phase in PHASES else len(PHASES), phase


def maps_html(maps: dict[str, list[list]]) -> str:
    if not maps:
        return ""
    extent = max((run[1] for runs in maps.values() for run in runs), default=0)
    extent = max(2 * MIB, -(-extent // (2 * MIB)) * 2 * MIB)
    rows = []
    for label, runs in sorted(maps.items(), key=_snapshot_order):
        rows.append(f'<div class="strip-label">{_e(label)} &mdash; {_e(_totals(runs))}</div>'
                    f'<div class="strip">{strip_svg(runs, extent, label)}</div>')
    return (f'<div class="maps"><div class="strip-label">direct map, 0 to {extent // MIB} MiB '
            f'(Low Kernel Mapping of the page-table dump)</div>{"".join(rows)}</div>')


def _figures(figures: dict) -> str:
    return "<br>".join(f"{_e(k)} = {_e(json.dumps(v))}" for k, v in figures.items())


def cell_html(name: str, cell: dict, maps: dict[str, dict]) -> str:
    spec = cell.get("spec", {})
    verdict = cell.get("verdict") or cell.get("status", "pending").upper()
    head = (f'<h2 id="{_e(name)}">{_verdict(verdict)} {_e(name)}</h2>'
            f'<p>tree {_e(spec.get("tree"))}, series {_e(spec.get("series"))}, '
            f'fragments {_e(spec.get("kconfig") or "default")}, tests {_e(spec.get("tests") or "all")}; '
            f'results <code>{_e(cell.get("results"))}</code></p>')
    if cell.get("error"):
        head += f'<p><b>could not tell:</b> <code>{_e(cell["error"])}</code></p>'
    rows = []
    for nodeid, test in cell.get("tests", {}).items():
        rows.append(f'<tr><td>{_verdict(test["result"])}</td><td>{_e(nodeid.split("::", 1)[-1])}</td>'
                    f'<td>{_e(test.get("seconds"))}s</td>'
                    f'<td class="figures">{_figures(test.get("figures", {}))}</td>'
                    f'<td>{_e(test.get("message", ""))}</td></tr>')
        if maps.get(nodeid):
            rows.append(f'<tr><td></td><td colspan="4">{maps_html(maps[nodeid])}</td></tr>')
    table = ("<table><tr><th>result</th><th>test</th><th>time</th><th>figures</th><th>message</th></tr>"
             + "".join(rows) + "</table>") if rows else "<p>no test results</p>"
    return f"<section>{head}{table}</section>"


def _compare_html(combined: dict) -> str:
    if "compare" not in combined:
        return ""
    compared = combined["compare"]
    head = f'<h2>Figures moved since {_e(compared["previous"])}</h2>'
    if not compared["moved"]:
        return f'{head}<p>none beyond {compared["tolerance"]:.0%}</p>'
    rows = "".join(f'<tr><td>{_e(m["cell"])}</td><td>{_e(m["test"].split("::", 1)[-1])}</td>'
                   f'<td>{_e(m["figure"])}</td><td>{_e(m["before"])}</td><td>{_e(m["after"])}</td>'
                   f'<td>{_e(m["change"])}</td></tr>' for m in compared["moved"])
    return (f'{head}<table><tr><th>cell</th><th>test</th><th>figure</th><th>before</th>'
            f'<th>after</th><th>change</th></tr>{rows}</table>')


def render(combined: dict, maps_by_cell: dict[str, dict[str, dict]]) -> str:
    cells = combined.get("cells", {})
    unfinished = [name for name, cell in cells.items() if cell.get("status") != "done"]
    state = "finished" if combined.get("finished") else (
        f"in progress or interrupted: {len(unfinished)} cell(s) not finished ({', '.join(unfinished)})")
    overview = "".join(
        f'<tr><td>{_verdict(cell.get("verdict") or cell.get("status", "pending").upper())}</td>'
        f'<td><a href="#{_e(name)}">{_e(name)}</a></td><td>{_e(cell.get("spec", {}).get("tree"))}</td>'
        f'<td>{_e(", ".join(f"{n} {k}" for k, n in sorted(cell.get("counts", {}).items())))}</td>'
        f'<td>{_e(cell.get("seconds", ""))}</td><td>{_e(cell.get("error") or "")}</td></tr>'
        for name, cell in cells.items())
    legend = "".join(f'<span style="background:{colour}"></span>{LEVEL_NAMES[level]} ({level})'
                     for level, colour in COLOURS.items())
    legend += f'<span style="background:{UNMAPPED}"></span>not mapped'
    sections = "".join(cell_html(name, cell, maps_by_cell.get(name, {})) for name, cell in cells.items())
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<title>pte-harness nightly: {_e(combined.get("matrix"))}</title>'
            f'<style>{STYLE}</style><script>{SCRIPT}</script></head><body>'
            f'<h1>pte-harness nightly</h1><p>matrix <code>{_e(combined.get("matrix"))}</code>, '
            f'shard {_e(combined.get("shard"))}, started {_e(combined.get("started"))}, '
            f'updated {_e(combined.get("updated"))}: {_e(state)}</p>'
            f'<table><tr><th>verdict</th><th>cell</th><th>tree</th><th>tests</th><th>seconds</th>'
            f'<th>could not tell</th></tr>{overview}</table>{_compare_html(combined)}'
            f'<p class="legend">direct map levels:{legend}</p>{sections}</body></html>\n')


def cell_maps(cell: dict) -> dict[str, dict]:
    """Direct-map snapshots by test id from a cell's own summary.json."""
    summary = Summary.read(Path(cell.get("results", "")) / "summary.json")
    return {nodeid: entry.direct_maps for nodeid, entry in (summary.tests if summary else {}).items()
            if entry.direct_maps}


def write(results: Path, combined: dict) -> Path:
    """Write results/report.html atomically."""
    maps = {name: cell_maps(cell) for name, cell in combined.get("cells", {}).items()
            if cell.get("status") == "done"}
    target = results / "report.html"
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(render(combined, maps))
    os.replace(tmp, target)
    return target
