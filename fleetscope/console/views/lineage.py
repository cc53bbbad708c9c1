"""Lineage: upstream and downstream of any entity, drawn as a graph, with its properties; click a node
(or choose a neighbour) to move there."""

from __future__ import annotations

from typing import Any

import streamlit as st

from fleetscope.console import ui
from fleetscope.console.lineage_graph import PICK, layout, lineage_chart, neighbours
from fleetscope.lineage import ENTITIES, LineageError, StoreError
from fleetscope.lineage.schema import node_key

ID_KEY = "lineage.id"
LABEL_KEY = "lineage.label"
ANY = "(any)"

if ID_KEY not in st.session_state:
    st.session_state[ID_KEY] = st.query_params.get("id", "")


def _graph_key(entity: str) -> str:
    """The graph's widget key: one per focus, so a click made around the last focus is not read again
    around the next (Streamlit forgets the state of a widget a run does not draw)."""
    return f"lineage.graph:{entity}"


def _focus(label: str, node_id: str) -> None:
    """Move to a node the walk reached: its id, and its label, which the walk named."""
    st.session_state[ID_KEY] = node_id
    st.session_state[LABEL_KEY] = label if label in ENTITIES else ANY


def _move() -> None:
    _focus(*st.session_state["lineage.move"].split(":", 1))


# A click on the graph reruns the page with the node it selected; move there before the fields are drawn.
# A click on the focus itself stays selected on every rerun and moves nothing (the fields stay free).
clicked = st.session_state.get(_graph_key(st.session_state[ID_KEY]))
points = clicked.get("selection", {}).get(PICK) if clicked else None
if points and str(points[0]["id"]) != st.session_state[ID_KEY]:
    _focus(str(points[0]["label"]), str(points[0]["id"]))


ui.start()
st.header("Lineage")
lineage = ui.lineage_or_stop()
left, middle, right = st.columns([3, 2, 1])
entity = left.text_input("Entity id", key=ID_KEY, help="A model, run, dataset version, GPU ... by its id.")
label = middle.selectbox("Label (when the id is used by more than one)", [ANY, *ENTITIES], key=LABEL_KEY)
depth = right.number_input("Hops", min_value=1, max_value=10, value=2)
if entity:
    params: dict[str, Any] = {"id": entity, "max_depth": int(depth)}
    if label != ANY:
        params["label"] = label
    try:
        upstream = lineage.audit("provenance", params)
        downstream = lineage.audit("impact", params)
    except (LineageError, StoreError) as exc:
        st.error(str(exc))
        st.stop()
    st.query_params["id"] = entity
    start_label = label if label != ANY else None
    if start_label is None:
        # The walk's first steps name the start's label; a node with no neighbours is looked up by label,
        # one indexed lookup each, never by a scan of the whole graph.
        starts = {str(r["from_label"]) for r in [*upstream, *downstream] if r.get("depth") == 1}
        candidates = sorted(starts) if starts else list(ENTITIES)
        found = [
            name
            for name in candidates
            if lineage.query(
                f"MATCH (n:{name} {{key: $key}}) RETURN count(n) AS c", {"key": node_key(entity)}
            )[0]["c"]
        ]
        start_label = found[0] if len(found) == 1 else None
    nodes, edges = layout(entity, start_label, upstream, downstream)
    st.altair_chart(lineage_chart(nodes, edges), width="stretch", on_select="rerun", key=_graph_key(entity))
    st.caption(
        f"{len(upstream)} upstream and {len(downstream)} downstream step(s), up to {depth} hop(s); "
        "click a node to move there"
    )
    if start_label:
        rows = lineage.query(
            f"MATCH (n:{start_label} {{key: $key}}) RETURN properties(n) AS props", {"key": node_key(entity)}
        )
        if rows:
            props = {k: v for k, v in dict(rows[0]["props"]).items() if k != "key"}
            st.markdown(f"**{start_label} {entity}**")
            st.json(props)
    near = neighbours(entity, [*upstream, *downstream])
    if near:
        st.selectbox(
            "Move to",
            [f"{lab}:{node}" for lab, node in near],
            index=None,
            placeholder="choose a neighbour",
            key="lineage.move",
            on_change=_move,
        )
    with st.expander("Every step"):
        st.dataframe(
            [{"direction": "upstream", **r} for r in upstream]
            + [{"direction": "downstream", **r} for r in downstream],
            width="stretch",
            hide_index=True,
        )
