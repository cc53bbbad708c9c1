"""The console's pictures, as Altair charts built from small, already aggregated tables.

Each builder takes plain data (an investigation report, a table of a
:class:`~fleetscope.console.cluster_state.ClusterState`) and returns an Altair chart; the pages only
place them. Every builder bounds the marks it draws, so a 2,048-node cluster costs the browser what a
small one does:

- :func:`timeline_chart`: one lane per layer, at most :data:`TIMELINE_POINTS` events.
- :func:`cluster_map`: one cell per node (2,048 nodes are 2,048 small squares), the culprit outlined.
- :func:`gpu_heatmap`: nodes × GPUs for the :data:`HEATMAP_NODES` nodes worst on the chosen measure.
"""

from __future__ import annotations

import math
from typing import Any

import altair as alt
import pandas as pd

from fleetscope.console.cluster_state import GPU_MEASURES

#: What a builder returns: a chart, or a chart of layers.
AnyChart = alt.Chart | alt.LayerChart | alt.FacetChart

#: Timeline events drawn at most; the table under the chart has them all.
TIMELINE_POINTS = 2_000
#: Nodes drawn at GPU detail in the heatmap (the worst first); the map shows every node.
HEATMAP_NODES = 64
#: Ranks drawn as their own line in a job's charts (the slowest first); the rest are one median line.
JOB_LINES = 8

LAYER_LABELS = {
    "gpu_hardware": "GPU hardware",
    "gpu_memory": "GPU memory",
    "nvlink": "NVLink",
    "thermal_power": "thermal / power",
    "network": "network",
    "host_software": "host software",
    "framework": "framework",
    "storage": "storage",
    "data_pipeline": "data pipeline",
    "job": "job",
}

#: The colour a culprit (node, GPU) is outlined and named in.
CULPRIT_RED = "#d62728"

_HEALTH_COLOURS = alt.Scale(
    domain=["ok", "needs action", "lost or silent", "exporter down", "not read"],
    range=["#59a14f", "#f28e2b", "#e15759", "#7f7f7f", "#d9d9d9"],
)


def _roles(report: dict[str, Any]) -> dict[str, str]:
    """Evidence source (``file:line``) -> ``cause N`` or ``symptom of cause N`` (1-based)."""
    roles: dict[str, str] = {}
    for symptom in report.get("symptoms") or []:
        cause = symptom.get("explained_by")
        role = f"symptom of cause {cause + 1}" if cause is not None else "unexplained symptom"
        for evidence in symptom.get("evidence") or []:
            roles[str(evidence.get("source"))] = role
    for number, cause in enumerate(report.get("root_causes") or [], start=1):
        for evidence in cause.get("evidence") or []:
            roles[str(evidence.get("source"))] = f"cause {number}"
    return roles


def timeline_frame(report: dict[str, Any]) -> pd.DataFrame:
    """The report's timeline as a table: ``order``, ``time`` (UTC or NaT), ``layer``, ``node``, ``role``,
    ``source``, ``text``; at most :data:`TIMELINE_POINTS` rows, the causes' own lines always kept."""
    roles = _roles(report)
    rows = []
    for order, item in enumerate(report.get("timeline") or []):
        source = str(item.get("source"))
        rows.append(
            {
                "order": order,
                "time": pd.to_datetime(item.get("time"), utc=True, errors="coerce"),
                "layer": LAYER_LABELS.get(str(item.get("layer")), item.get("layer") or "unknown"),
                "node": item.get("node") or "",
                "role": roles.get(source, "other evidence"),
                "source": source,
                "text": str(item.get("text", ""))[:300],
            }
        )
    frame = pd.DataFrame(rows, columns=["order", "time", "layer", "node", "role", "source", "text"])
    if len(frame) > TIMELINE_POINTS:
        causes = frame[frame["role"].str.startswith("cause")]
        rest = frame[~frame.index.isin(causes.index)].head(TIMELINE_POINTS - len(causes))
        frame = pd.concat([causes, rest]).sort_values("order")
    return frame


def timeline_chart(report: dict[str, Any]) -> AnyChart | None:
    """One lane per layer, each event a point coloured by what it is (a cause, a symptom of one), and a
    line from each symptom's first event to its cause's first event.

    Events are placed on the wall clock when every one has a time; a kernel line stamped only with
    uptime has none, and then the x axis is the order the engine put the events in.

    Returns:
        The chart, or None when the timeline is empty.
    """
    frame = timeline_frame(report)
    if frame.empty:
        return None
    timed = bool(frame["time"].notna().all())
    x_field = "time" if timed else "order"
    x = (
        alt.X("time:T", title="time (UTC)")
        if timed
        else alt.X("order:Q", title="event, in order", axis=alt.Axis(tickMinStep=1, format="d"))
    )
    points = (
        alt.Chart(frame)
        .mark_point(filled=True, size=90)
        .encode(
            x=x,
            y=alt.Y("layer:N", title=None),
            color=alt.Color("role:N", title="what it is"),
            shape=alt.Shape("role:N", legend=None),
            tooltip=["node", "layer", "role", "source", "text", alt.Tooltip("time:T", format="%H:%M:%S")],
        )
    )
    firsts = frame.sort_values("order").groupby("role").head(1).set_index("role")
    links = []
    for role, first in firsts.iterrows():
        cause = str(role).removeprefix("symptom of ")
        if str(role).startswith("symptom of ") and cause in firsts.index:
            links.append(
                {
                    "x": first[x_field],
                    "layer": first["layer"],
                    "x2": firsts.loc[cause, x_field],
                    "layer2": firsts.loc[cause, "layer"],
                    "link": f"{role} → {cause}",
                }
            )
    chart = alt.layer(points)
    if links:
        x_type = "T" if timed else "Q"
        rules = (
            alt.Chart(pd.DataFrame(links))
            .mark_rule(strokeDash=[4, 3], color="#888")
            .encode(
                x=alt.X(f"x:{x_type}"),
                x2="x2",
                y=alt.Y("layer:N"),
                y2="layer2",
                tooltip=["link"],
            )
        )
        chart = alt.layer(rules, points)
    return chart.properties(height=max(120, 40 * frame["layer"].nunique()))


def node_health(state_gpus: pd.DataFrame, down: dict[str, str], nodes: list[str]) -> pd.DataFrame:
    """One row per node: ``node``, ``health`` (words, the worst of its GPUs), ``gpus`` read, ``x``, ``y``
    (its cell on a near-square grid, in node-name order)."""
    worst = state_gpus.groupby("node")["health"].max() if not state_gpus.empty else pd.Series(dtype=float)
    words = {0: "ok", 1: "needs action", 2: "lost or silent"}
    counts = state_gpus.groupby("node").size() if not state_gpus.empty else pd.Series(dtype=int)
    width = max(1, math.ceil(math.sqrt(len(nodes))))
    rows = []
    for position, node in enumerate(nodes):
        if node in down:
            health = "exporter down"
        elif node in worst.index:
            health = words.get(int(worst[node]), "ok")
        else:
            health = "not read"
        rows.append(
            {
                "node": node,
                "health": health,
                "gpus": int(counts.get(node, 0)),
                "x": position % width,
                "y": position // width,
            }
        )
    return pd.DataFrame(rows, columns=["node", "health", "gpus", "x", "y"])


def cluster_map(cells: pd.DataFrame, culprit: str | None = None) -> AnyChart:
    """Every node as one square coloured by its health; the culprit node outlined and named.

    Args:
        cells: :func:`node_health`'s table.
        culprit: the node to mark, if any.
    """
    side = max(1, int(cells["x"].max()) + 1) if not cells.empty else 1
    size = max(12, min(40, 600 // side))
    base = alt.Chart(cells).encode(
        x=alt.X("x:O", axis=None), y=alt.Y("y:O", axis=None), tooltip=["node", "health", "gpus"]
    )
    squares = base.mark_square(size=size * size * 0.8).encode(
        color=alt.Color("health:N", scale=_HEALTH_COLOURS, title="node health")
    )
    layers: list[alt.Chart] = [squares]
    if culprit:
        marked = cells[cells["node"] == culprit]
        if not marked.empty:
            outline = (
                alt.Chart(marked)
                .mark_square(size=size * size * 2.2, filled=False, stroke=CULPRIT_RED, strokeWidth=3)
                .encode(x="x:O", y="y:O", tooltip=["node", "health"])
            )
            label = (
                alt.Chart(marked)
                .mark_text(dy=-size, fontWeight="bold", color=CULPRIT_RED)
                .encode(x="x:O", y="y:O", text="node")
            )
            layers += [outline, label]
    # Rows a little taller than a square, so the outline and the name above it clear the next row; at
    # least tall enough for the legend's five entries.
    rows = max(1, int(cells["y"].max()) + 1) if not cells.empty else 1
    height = max(140, min(600, int(rows * size * 1.7) + 20))
    return alt.layer(*layers).properties(height=height, width="container")


def gpu_strip(gpus: pd.DataFrame, node: str, gpu: int | None) -> AnyChart | None:
    """The GPUs of one node in a row, coloured by health, the culprit GPU outlined; None when the node's
    GPUs were not read."""
    row = gpus[gpus["node"] == node].copy()
    if row.empty:
        return None
    row["gpu"] = row["gpu"].astype(str)
    row["culprit"] = row["gpu"] == (str(gpu) if gpu is not None else "")
    row["health_words"] = row["health"].map({0: "ok", 1: "needs action", 2: "lost or silent"})
    base = alt.Chart(row).encode(
        x=alt.X("gpu:N", title=f"GPUs of {node}"),
        tooltip=["gpu", "status", "temperature_celsius", "xid_errors", "ecc_errors", "throttle_reasons"],
    )
    cells = base.mark_rect(height=30).encode(
        color=alt.Color("health_words:N", scale=_HEALTH_COLOURS, title="GPU health")
    )
    outline = base.transform_filter("datum.culprit").mark_rect(
        height=30, filled=False, stroke=CULPRIT_RED, strokeWidth=3
    )
    return alt.layer(cells, outline).properties(height=90)


def worst_nodes(gpus: pd.DataFrame, measure: str, limit: int = HEATMAP_NODES) -> list[str]:
    """The ``limit`` nodes with the highest value of ``measure`` on any of their GPUs, worst first."""
    if gpus.empty:
        return []
    by_node = gpus.groupby("node")[measure].max().fillna(float("-inf"))
    return list(by_node.sort_values(ascending=False, kind="stable").index[:limit])


def gpu_heatmap(gpus: pd.DataFrame, measure: str, nodes: list[str]) -> AnyChart:
    """Nodes (rows) × GPUs (columns) coloured by ``measure``; a click selects a node (``node`` field).

    Args:
        gpus: the GPU table of a :class:`~fleetscope.console.cluster_state.ClusterState`.
        measure: one of :data:`~fleetscope.console.cluster_state.GPU_MEASURES`.
        nodes: the nodes to draw, in order.
    """
    rows = gpus[gpus["node"].isin(nodes)].copy()
    rows["gpu"] = rows["gpu"].astype(str)
    pick = alt.selection_point(fields=["node"], name="node_pick")
    return (
        alt.Chart(rows)
        .mark_rect()
        .encode(
            x=alt.X("gpu:N", title="GPU"),
            y=alt.Y("node:N", sort=nodes, title=None),
            color=alt.Color(f"{measure}:Q", title=GPU_MEASURES[measure], scale=alt.Scale(scheme="orangered")),
            tooltip=[
                "node",
                "gpu",
                "status",
                "temperature_celsius",
                "xid_errors",
                "ecc_errors",
                "throttle_reasons",
            ],
        )
        .add_params(pick)
        # Streamlit fits a stretched chart's height around its axes too: about 90 px go to the GPU axis,
        # its labels and the padding, so each node row gets its 22 px on top of them.
        .properties(height=90 + 22 * len(nodes))
    )


def series_chart(frame: pd.DataFrame, y: str, colour: str, title: str) -> AnyChart:
    """Lines over ``time``: one per value of ``colour``."""
    return (
        alt.Chart(frame)
        .mark_line(point=True)
        .encode(
            x=alt.X("time:T", title="time (UTC)"),
            y=alt.Y(f"{y}:Q", title=title),
            color=alt.Color(f"{colour}:N"),
            tooltip=[colour, alt.Tooltip(f"{y}:Q", format=".3f"), "time:T"],
        )
        .properties(height=260)
    )


def job_lines(series: pd.DataFrame, y: str, slowest: list[Any]) -> pd.DataFrame:
    """A job's per-rank series cut to what a chart can hold: the ``slowest`` ranks each as their own
    line, every other rank folded into one ``median of the rest`` line per time."""
    own = series[series["rank"].isin(slowest)].assign(line=lambda f: "rank " + f["rank"].astype(str))
    rest = series[~series["rank"].isin(slowest)]
    if rest.empty:
        return own[["time", "line", y]]
    median = rest.groupby("time", as_index=False)[y].median().assign(line="median of the other ranks")
    return pd.concat([own[["time", "line", y]], median[["time", "line", y]]], ignore_index=True)
