"""Cluster: nodes × GPUs (temperature, health, Xid, ECC, throttle), interconnect error rates, exporters
down; choose or click a node to see its GPUs over time."""

from __future__ import annotations

import altair as alt
import streamlit as st

from fleetscope.console import ui
from fleetscope.console.charts import cluster_map, gpu_heatmap, node_health, series_chart, worst_nodes
from fleetscope.console.cluster_state import GPU_MEASURES

#: Nodes listed in the interconnect chart at most (the highest error rates).
LINK_NODES = 20

config = ui.start()
st.header("Cluster")
state = ui.live_state(config)
if state is not None:
    nodes = state.nodes
    st.caption(
        f"Read {state.time:%H:%M:%S} UTC · {len(nodes)} node(s), {len(state.gpus)} GPU(s) · counts over the "
        f"last {state.window_seconds:.0f} s · read again after {config.console_refresh_seconds:.0f} s"
    )
    if state.down:
        st.error(f"Exporters down: {len(state.down)}")
        st.dataframe(
            [{"node": node, "why": why} for node, why in sorted(state.down.items())],
            width="stretch",
            hide_index=True,
        )
    else:
        st.success("Every exporter answered.")
    st.markdown("**Every node, by the worst of its GPUs**")
    st.altair_chart(cluster_map(node_health(state.gpus, state.down, nodes)), width="stretch")

    measure: str = st.selectbox(
        "Colour GPUs by", list(GPU_MEASURES.keys()), format_func=lambda key: GPU_MEASURES[key]
    )
    shown = worst_nodes(state.gpus, measure)
    picked = None
    if shown:
        st.markdown(f"**GPUs of the {len(shown)} node(s) worst on {GPU_MEASURES[measure]}** (click a row)")
        clicked = st.altair_chart(
            gpu_heatmap(state.gpus, measure, shown), width="stretch", on_select="rerun", key="heatmap"
        )
        points = clicked.get("selection", {}).get("node_pick", []) if clicked else []
        picked = points[0].get("node") if points else None
    else:
        st.info("No GPU series read: the exporters report no GPUs (no NVIDIA driver?).")

    st.markdown("**Interconnect errors per second** (NVLink, InfiniBand, EFA)")
    links = state.links[state.links["errors"] > 0]
    if links.empty:
        st.caption("No interconnect error counter rose in the window.")
    else:
        top = links.sort_values("errors_per_second", ascending=False).head(LINK_NODES)
        st.altair_chart(
            alt.Chart(top)
            .mark_bar()
            .encode(
                x=alt.X("errors_per_second:Q", title="errors per second"),
                y=alt.Y("node:N", sort="-x", title=None),
                color=alt.Color("fabric:N"),
                tooltip=["node", "fabric", "errors", "errors_per_second"],
            ),
            width="stretch",
        )
        st.dataframe(top, width="stretch", hide_index=True)

    if nodes:
        default = nodes.index(picked) if picked in nodes else (nodes.index(shown[0]) if shown else 0)
        node = st.selectbox("Node", nodes, index=default)
        st.subheader(f"Node {node}")
        if node in state.down:
            st.error(f"Its exporter did not answer: {state.down[node]}")
        now = state.gpus[state.gpus["node"] == node].drop(columns=["node"])
        st.dataframe(now, width="stretch", hide_index=True)
        live = ui.sampler(config)
        history = live.series("gpus") if live is not None else None
        if history is not None and not history.empty:
            mine = history[history["node"] == node].assign(gpu=lambda f: "GPU " + f["gpu"].astype(str))
            looks = mine["time"].nunique()
            st.caption(f"{looks} look(s) since the console started watching")
            left, right = st.columns(2)
            left.altair_chart(
                series_chart(mine, "temperature_celsius", "gpu", "temperature (°C)"), width="stretch"
            )
            right.altair_chart(
                series_chart(mine, "xid_errors", "gpu", "Xid errors in the window"), width="stretch"
            )
            left.altair_chart(
                series_chart(mine, "ecc_errors", "gpu", "uncorrectable ECC in the window"), width="stretch"
            )
            right.altair_chart(series_chart(mine, "throttled", "gpu", "throttled (0/1)"), width="stretch")
    st.button("Read again")
