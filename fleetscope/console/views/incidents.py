"""Incidents: open and recent, filtered by state, layer, node and job; newest first."""

from __future__ import annotations

import streamlit as st

from fleetscope.console import ui
from fleetscope.console.charts import LAYER_LABELS

config = ui.start()
st.header("Incidents")
shown = st.radio("Show", ["open", "resolved", "all"], horizontal=True)
incidents = ui.load_incidents(config, None if shown == "all" else shown)
if incidents is not None:
    left, middle, right = st.columns(3)
    layers = left.multiselect(
        "Layer", sorted({i.layer for i in incidents if i.layer}), format_func=lambda v: LAYER_LABELS.get(v, v)
    )
    nodes = middle.multiselect("Node", sorted({i.node for i in incidents if i.node}))
    # Reports name nodes, not jobs: a job's nodes are those its ranks report from in the live look.
    live = ui.sampler(config)
    job_nodes: dict[str, set[str]] = {}
    look = live.latest() if live is not None else None
    if look is not None:
        ranks = look.ranks
        for job, node in zip(ranks["job_id"], ranks["node"], strict=True):
            if job:
                job_nodes.setdefault(str(job), set()).add(str(node))
    job = right.selectbox("Job", ["(any)", *sorted(job_nodes)], help="Jobs the live source shows ranks of.")
    chosen = [
        i
        for i in incidents
        if (not layers or i.layer in layers)
        and (not nodes or i.node in nodes)
        and (job == "(any)" or i.node in job_nodes.get(str(job), set()))
    ]
    if not chosen:
        st.success("No incidents recorded." if not incidents else "No incidents match these filters.")
    else:
        st.caption(f"{len(chosen)} incident(s), the most recently seen first")
        st.dataframe(
            [
                {
                    "state": i.state,
                    "last seen": i.last_seen.isoformat(timespec="seconds"),
                    "layer": LAYER_LABELS.get(i.layer or "", i.layer),
                    "node": i.node,
                    "gpu": i.gpu,
                    "seen": i.occurrences,
                    "summary": i.summary,
                    "id": i.fingerprint,
                }
                for i in chosen
            ],
            width="stretch",
            hide_index=True,
            column_config={"summary": st.column_config.TextColumn(width="large")},
        )
        labels = {f"{i.last_seen:%Y-%m-%d %H:%M} · {i.node or '?'} · {i.summary[:90]}": i for i in chosen}
        pick = st.selectbox("Incident", list(labels))
        if pick:
            st.page_link(
                "views/incident.py",
                label="Open this incident",
                icon=":material/open_in_new:",
                query_params={"incident": labels[pick].fingerprint},
            )
