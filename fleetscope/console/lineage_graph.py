"""Lineage walks drawn as a Graphviz DOT graph for ``st.graphviz_chart`` (rendered in the browser).

A walk is the rows of the audit queries ``provenance`` (upstream) and ``impact`` (downstream): one row
per step, ``(depth, label, id, relation, from_label, from_id)`` (:mod:`fleetscope.lineage.queries`).
"""

from __future__ import annotations

from typing import Any

#: Fill colour of each entity label in the drawing.
COLOURS = {
    "Run": "#fde0c5",
    "Model": "#c6dbef",
    "Checkpoint": "#dadaeb",
    "DatasetVersion": "#c7e9c0",
    "Dataset": "#a1d99b",
    "Deployment": "#9ecae1",
    "Incident": "#fcbba1",
    "GPU": "#fdd0a2",
    "Host": "#fdae6b",
}


def _quote(text: str) -> str:
    """A DOT string literal (backslashes and quotes escaped; ids are any text)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def dot(
    start: str, start_label: str | None, upstream: list[dict[str, Any]], downstream: list[dict[str, Any]]
) -> str:
    """The walked neighbourhood of ``start`` as DOT: upstream steps point into what they feed, downstream
    steps out of it; the start node is drawn bold.

    Returns:
        DOT source text.
    """
    nodes: dict[tuple[str, str], None] = {}
    edges: list[str] = []
    start_key = (start_label or "", start)
    nodes[start_key] = None
    for row, direction in [(r, "up") for r in upstream] + [(r, "down") for r in downstream]:
        here = (str(row["label"]), str(row["id"]))
        there = (str(row["from_label"]), str(row["from_id"]))
        nodes.setdefault(here, None)
        nodes.setdefault(there, None)
        tail, head = (here, there) if direction == "up" else (there, here)
        style = ",style=dashed" if direction == "up" else ""
        relation = _quote(str(row["relation"]))
        edges.append(f"{_quote('|'.join(tail))} -> {_quote('|'.join(head))} [label={relation}{style}]")
    lines = [
        "digraph lineage {",
        "rankdir=LR;",
        'node [shape=box,style="rounded,filled",fontname=Helvetica];',
    ]
    for label, node_id in nodes:
        shown = f"{label}\n{node_id[:60]}" if label else node_id[:60]
        bold = (
            ",penwidth=3" if (label, node_id) == start_key or (not start_label and node_id == start) else ""
        )
        lines.append(
            f"{_quote(label + '|' + node_id)} [label={_quote(shown)},"
            f"fillcolor={_quote(COLOURS.get(label, '#eeeeee'))}{bold}];"
        )
    lines += sorted(set(edges))
    lines.append("}")
    return "\n".join(lines)


def neighbours(start: str, steps: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Every other node the walk reached, as ``(label, id)``, nearest first."""
    seen: dict[tuple[str, str], int] = {}
    for row in steps:
        key = (str(row["label"]), str(row["id"]))
        if key[1] != start:
            seen[key] = min(seen.get(key, 1 << 30), int(row.get("depth") or 0))
    return sorted(seen, key=lambda k: (seen[k], k))
