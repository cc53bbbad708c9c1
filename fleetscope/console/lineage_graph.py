"""Lineage walks drawn as a clickable Altair graph: upstream to the left of the focus, downstream to the
right, one column per hop.

A walk is the rows of the audit queries ``provenance`` (upstream) and ``impact`` (downstream): one row
per node reached, at its first discovery, ``(depth, label, id, relation, from_label, from_id)``
(:mod:`fleetscope.lineage.queries`). Each direction is therefore a tree rooted at the focus; ordering
every column by its parents' order draws it without crossing edges. The positions come from
networkx's ``multipartite_layout`` (one column per hop, nodes spread evenly in each).

A click on a node selects its ``label`` and ``id`` in the chart's :data:`PICK` selection, which the page
reads to move the focus there.
"""

from __future__ import annotations

from typing import Any

import altair as alt
import networkx as nx
import pandas as pd

from fleetscope.console.charts import AnyChart

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
#: Name of the chart's click selection; its points carry ``label`` and ``id``.
PICK = "pick"
#: Characters of an id written under its node (the tooltip has it whole).
SHOWN_ID = 40


def _key(label: str, node_id: str) -> str:
    return f"{label}|{node_id}"


def layout(
    start: str, start_label: str | None, upstream: list[dict[str, Any]], downstream: list[dict[str, Any]]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Place the walked neighbourhood of ``start``.

    Args:
        start: the focus's id.
        start_label: its label, or None when not established.
        upstream: the ``provenance`` walk's rows.
        downstream: the ``impact`` walk's rows.

    Returns:
        ``(nodes, edges)``. ``nodes``: ``key`` (``label|id``), ``label``, ``id``, ``shown`` (the id cut
        to :data:`SHOWN_ID` characters), ``hop`` (negative upstream, 0 the focus), ``focus`` (bool),
        ``x``, ``y``. ``edges``: ``x``, ``y``, ``x2``,
        ``y2`` (tail to head, in the direction data flows), ``mid_x``, ``mid_y``, ``relation``,
        ``direction`` (``upstream`` or ``downstream``).
    """
    focus = _key(start_label or "", start)
    graph = nx.DiGraph()
    graph.add_node(focus, label=start_label or "", id=start, hop=0)
    order = {focus: 0.0}
    for rows, sign in ((upstream, -1), (downstream, 1)):
        # Rows come breadth first; within a column, children follow their parents' order.
        by_depth: dict[int, list[dict[str, Any]]] = {}
        for row in rows:
            by_depth.setdefault(int(row.get("depth") or 1), []).append(row)
        for depth in sorted(by_depth):
            column = []
            for row in by_depth[depth]:
                here = _key(str(row["label"]), str(row["id"]))
                there = _key(str(row["from_label"]), str(row["from_id"]))
                if here == focus or here in graph:
                    continue
                if there not in graph:
                    if str(row["from_id"]) != start:
                        continue  # a walk names each parent before its children; never reached
                    there = focus  # the start, whose label was not established
                column.append((order.get(there, 0.0), here, there, row))
            for rank, (_, here, there, row) in enumerate(sorted(column, key=lambda c: (c[0], c[1]))):
                order[here] = float(rank)
                graph.add_node(here, label=str(row["label"]), id=str(row["id"]), hop=sign * depth)
                tail, head = (here, there) if sign < 0 else (there, here)
                direction = "upstream" if sign < 0 else "downstream"
                graph.add_edge(tail, head, relation=str(row["relation"]), direction=direction)
    # multipartite_layout spreads each column's nodes in the order of its list (a node attribute would
    # group them in sets, unordered); y grows upwards, so it is flipped to put the first on top.
    columns: dict[int, list[str]] = {}
    for key, hop in graph.nodes(data="hop"):
        columns.setdefault(hop, []).append(key)
    positions = nx.multipartite_layout(graph, subset_key=columns, align="vertical")
    nodes = pd.DataFrame(
        [
            {
                "key": key,
                "label": data["label"],
                "id": data["id"],
                "shown": data["id"][:SHOWN_ID],
                "hop": data["hop"],
                "focus": key == focus,
                "x": float(positions[key][0]),
                "y": -float(positions[key][1]),
            }
            for key, data in graph.nodes(data=True)
        ],
        columns=["key", "label", "id", "shown", "hop", "focus", "x", "y"],
    )
    at = nodes.set_index("key")
    edges = pd.DataFrame(
        [
            {
                "x": at.at[tail, "x"],
                "y": at.at[tail, "y"],
                "x2": at.at[head, "x"],
                "y2": at.at[head, "y"],
                "mid_x": (at.at[tail, "x"] + at.at[head, "x"]) / 2,
                "mid_y": (at.at[tail, "y"] + at.at[head, "y"]) / 2,
                "relation": data["relation"],
                "direction": data["direction"],
            }
            for tail, head, data in graph.edges(data=True)
        ],
        columns=["x", "y", "x2", "y2", "mid_x", "mid_y", "relation", "direction"],
    )
    return nodes, edges


def lineage_chart(nodes: pd.DataFrame, edges: pd.DataFrame) -> AnyChart:
    """The graph :func:`layout` placed: edges (dashed upstream) named by their relation, each node a
    square coloured by its label and named by its id, the focus outlined; a click selects a node.

    The chart's selection :data:`PICK` holds the clicked node's ``label`` and ``id``.
    """
    x = alt.X("x:Q", axis=None, scale=alt.Scale(padding=70))
    y = alt.Y("y:Q", axis=None, scale=alt.Scale(padding=30))
    links = (
        alt.Chart(edges)
        .mark_rule(color="#888", strokeWidth=1.5)
        .encode(
            x=x,
            y=y,
            x2="x2:Q",
            y2="y2:Q",
            strokeDash=alt.StrokeDash(
                "direction:N",
                scale=alt.Scale(domain=["upstream", "downstream"], range=[[5, 4], [1, 0]]),
                title="walk",
            ),
        )
    )
    relations = (
        alt.Chart(edges)
        .mark_text(fontSize=10, color="#666", dy=-6)
        .encode(x=alt.X("mid_x:Q", axis=None), y=alt.Y("mid_y:Q", axis=None), text="relation:N")
    )
    shown = sorted(set(nodes["label"]))  # the legend lists only the labels drawn
    pick = alt.selection_point(fields=["label", "id"], name=PICK, on="click")
    squares = (
        alt.Chart(nodes)
        .mark_square(size=500, stroke="#333", cursor="pointer")
        .encode(
            x=x,
            y=y,
            color=alt.Color(
                "label:N",
                scale=alt.Scale(domain=shown, range=[COLOURS.get(name, "#eeeeee") for name in shown]),
                title="entity",
            ),
            strokeWidth=alt.condition("datum.focus", alt.value(4), alt.value(1)),
            opacity=alt.value(1),
            tooltip=["label:N", "id:N", alt.Tooltip("hop:Q", title="hops (negative: upstream)")],
        )
        .add_params(pick)
    )
    names = alt.Chart(nodes).mark_text(dy=22, fontSize=11).encode(x=x, y=y, text="shown:N")
    tallest = int(nodes.groupby("hop").size().max()) if not nodes.empty else 1
    return alt.layer(links, relations, squares, names).properties(height=max(260, 70 * tallest))


def neighbours(start: str, steps: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Every other node the walk reached, as ``(label, id)``, nearest first."""
    seen: dict[tuple[str, str], int] = {}
    for row in steps:
        key = (str(row["label"]), str(row["id"]))
        if key[1] != start:
            seen[key] = min(seen.get(key, 1 << 30), int(row.get("depth") or 0))
    return sorted(seen, key=lambda k: (seen[k], k))
