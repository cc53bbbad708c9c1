"""Incident: one incident, the answer first; its evidence, its timeline across layers, the culprit on the
cluster map, and the runs, checkpoints and models it touched (from the lineage graph)."""

from __future__ import annotations

import streamlit as st

from fleetscope.console import ui
from fleetscope.lineage.schema import node_key

#: What the lineage graph says an incident touched: the runs linked to it (AFFECTED, written by the
#: collector: runs on its GPU or host while it was open, or of its job) and what those runs produced.
TOUCHED = """
MATCH (i:Incident {key: $key})-[:AFFECTED]->(r:Run)
OPTIONAL MATCH (r)-[:PRODUCED]->(x)
WHERE x:Model OR x:Checkpoint
RETURN r.id AS run, r.started_at AS run_started_at, r.ended_at AS run_ended_at,
       CASE WHEN x:Model THEN 'Model' WHEN x:Checkpoint THEN 'Checkpoint' END AS produced_kind,
       x.id AS produced
ORDER BY run, produced_kind, produced
"""

config = ui.start()
incidents = ui.load_incidents(config)
if incidents is not None:
    by_id = {i.fingerprint: i for i in incidents}
    wanted = st.query_params.get("incident", "")
    ids = list(by_id)
    if wanted and wanted not in by_id:
        older = ui.find_incident(config, wanted)  # a link to one older than the most recent
        if older is None:
            st.warning(f"No incident {wanted!r} in the store.")
        else:
            by_id = {wanted: older, **by_id}
    ids = list(by_id)
    if not ids:
        st.success("No incidents recorded.")
    else:
        chosen = st.selectbox(
            "Incident",
            ids,
            index=ids.index(wanted) if wanted in by_id else 0,
            format_func=lambda f: (
                f"{by_id[f].last_seen:%Y-%m-%d %H:%M} · {by_id[f].node or '?'} · {by_id[f].summary[:90]}"
            ),
        )
        st.query_params["incident"] = chosen
        incident = by_id[chosen]
        st.header(f"Incident {incident.fingerprint}")
        st.caption(
            f"{incident.state} · first seen {incident.first_seen:%Y-%m-%d %H:%M:%S} UTC · last seen "
            f"{incident.last_seen:%Y-%m-%d %H:%M:%S} UTC · reported {incident.occurrences} time(s)"
            + (f" · reopened {incident.reopened} time(s)" if incident.reopened else "")
        )
        report = incident.report
        top = ui.render_answer(report)
        live = ui.sampler(config)
        ui.render_map(report, live.latest() if live is not None else None, top)
        ui.render_timeline(report)
        st.markdown("**What it touched (lineage)**")
        if not ui.lineage_configured():
            st.caption("No lineage store is configured (FLEETSCOPE_LINEAGE_URI).")
        else:
            from fleetscope.lineage import StoreError

            try:
                rows = ui.lineage_service().query(
                    TOUCHED, {"key": node_key(f"incident-{incident.fingerprint}")}
                )
            except (StoreError, ValueError) as exc:
                st.error(f"The lineage store cannot be read: {exc}")
            else:
                if rows:
                    st.dataframe(rows, width="stretch", hide_index=True)
                else:
                    st.caption(
                        "The lineage graph links no runs to this incident (the collector records it there "
                        "when it runs with --lineage-store)."
                    )
