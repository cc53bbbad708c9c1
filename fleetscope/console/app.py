"""fleetscope console: the Streamlit app for on-call root-cause work.

Start it with ``fleetscope console`` (which runs ``streamlit run`` on this file). Pages:

- **Incidents**: what the collector recorded in its SQLite store, newest first; pick one to see its
  ranked root cause, the evidence lines behind it and the timeline across layers.
- **Investigate**: run the correlation engine on a bundle of logs on this machine (a folder laid out as
  in ``fleetscope/examples/incidents/``) and show the same view.
- **Audit**: the lineage graph's audit query pack (:mod:`fleetscope.lineage.queries`) with its
  parameters, and a free-form Cypher box; both run in read-only sessions with bound parameters, and the
  rows download as CSV or JSON.

Settings come from the environment (see :mod:`fleetscope.console.settings`; the lineage store from
``FLEETSCOPE_LINEAGE_*``, see :mod:`fleetscope.lineage.config`).
"""

from __future__ import annotations

import atexit
import csv
import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import streamlit as st

from fleetscope.collectors import investigate
from fleetscope.collectors.incidents import IncidentStore
from fleetscope.console.investigate_report import verdict_sentence
from fleetscope.console.settings import ConsoleSettings

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


def render_report(report: dict[str, Any]) -> None:
    """Show one investigation report (docs/design.md JSON contract): the answer first, then the evidence."""
    if not report.get("incident"):
        sentence = verdict_sentence(report)
        if report.get("verdict", "healthy") == "healthy":
            st.success(sentence)
        else:
            st.warning(sentence)
        return
    causes = report.get("root_causes") or []
    if not causes:
        st.warning("An incident, but no root cause could be ranked.")
        return
    top = causes[0]
    layer = top.get("layer")
    where = ", ".join(
        part
        for part in (
            top.get("node"),
            f"GPU {top['gpu']}" if top.get("gpu") is not None else None,
            top.get("gpu_pci_bus_id"),
        )
        if part
    )
    st.subheader(f"Root cause: {LAYER_LABELS.get(layer, 'unknown layer') if layer else 'unsure'}")
    columns = st.columns(3)
    columns[0].metric("Layer", layer or "unsure")
    columns[1].metric("Culprit", where or "not established")
    columns[2].metric("Confidence", f"{float(top.get('confidence', 0.0)):.0%}")
    st.write(top.get("summary", ""))
    st.info(f"Action: {top.get('action', 'none given')}")
    st.markdown("**Evidence**")
    st.dataframe(
        [{"source": e.get("source"), "line": e.get("text")} for e in top.get("evidence", [])],
        width="stretch",
        hide_index=True,
    )
    if len(causes) > 1:
        st.markdown("**Other candidates, ranked**")
        st.dataframe(
            [
                {
                    "layer": c.get("layer"),
                    "node": c.get("node"),
                    "gpu": c.get("gpu"),
                    "confidence": c.get("confidence"),
                    "summary": c.get("summary"),
                }
                for c in causes[1:]
            ],
            width="stretch",
            hide_index=True,
        )
    if report.get("timeline"):
        st.markdown("**Timeline**")
        st.dataframe(report["timeline"], width="stretch", hide_index=True)
    unparsed = report.get("unparsed") or {}
    if unparsed.get("files") or unparsed.get("lines"):
        st.caption(f"Not understood: {unparsed.get('files', 0)} files, {unparsed.get('lines', 0)} lines.")


def incidents_page(settings: ConsoleSettings) -> None:
    """The incidents the collector recorded."""
    st.header("Incidents")
    if not Path(settings.incident_store).exists():
        st.info(f"No incident store at {settings.incident_store} yet: start `fleetscope collect`.")
        return
    shown = st.radio("Show", ["open", "resolved", "all"], horizontal=True)
    try:
        store = IncidentStore(settings.incident_store)
        try:
            incidents = store.recent(limit=200, state=None if shown == "all" else shown)
        finally:
            store.close()
    except sqlite3.Error as exc:
        st.error(f"The incident store {settings.incident_store} cannot be read: {exc}")
        return
    if not incidents:
        st.success("No incidents recorded." if shown == "all" else f"No {shown} incidents.")
        return
    st.dataframe(
        [
            {
                "state": i.state,
                "last seen": i.last_seen.isoformat(timespec="seconds"),
                "layer": i.layer,
                "node": i.node,
                "gpu": i.gpu,
                "seen": i.occurrences,
                "summary": i.summary,
            }
            for i in incidents
        ],
        width="stretch",
        hide_index=True,
    )
    labels = {f"{i.last_seen:%Y-%m-%d %H:%M} · {i.summary[:90]}": i for i in incidents}
    chosen = st.selectbox("Incident", list(labels))
    if chosen:
        render_report(labels[chosen].report)


def investigate_page(settings: ConsoleSettings) -> None:
    """Run the correlation engine on a bundle folder on this machine."""
    st.header("Investigate a bundle")
    examples = sorted(p for p in Path(settings.examples).glob("*") if p.is_dir())
    choice = st.selectbox("Example bundle", ["(type a path below)"] + [p.name for p in examples])
    default = str(Path(settings.examples) / choice) if choice and not choice.startswith("(") else ""
    path = st.text_input("Bundle folder", value=default)
    if path:
        bundle = Path(path)
        if not bundle.is_dir():
            st.error(f"{bundle} is not a folder")
            return
        with st.spinner(f"Investigating {bundle} ..."):
            report = investigate(bundle).to_dict()
        render_report(report)
        for note in report.get("notes", []):
            st.caption(f"note: {note}")


@st.cache_resource
def _lineage() -> Any:
    """One lineage service for the app's lifetime (opening an embedded store starts its server)."""
    from fleetscope.lineage.config import LineageConfig

    service = LineageConfig.load().open()
    # Streamlit exits normally on SIGTERM/SIGINT, so this stops an embedded server the console started.
    atexit.register(service.close)
    return service


def _show_rows(rows: list[dict[str, Any]], name: str) -> None:
    st.caption(f"{len(rows)} row(s)")
    st.dataframe(rows, width="stretch", hide_index=True)
    if rows:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        left, right = st.columns(2)
        left.download_button("Download CSV", text.getvalue(), f"{name}.csv", "text/csv")
        right.download_button(
            "Download JSON", json.dumps(rows, indent=2, default=str), f"{name}.json", "application/json"
        )


def audit_page() -> None:
    """The audit query pack and a read-only Cypher box over the lineage graph."""
    from fleetscope.lineage import QUERIES, LineageError, StoreError

    st.header("Audit")
    try:
        lineage = _lineage()
    except (StoreError, ValueError) as exc:
        st.error(f"The lineage store cannot be opened: {exc}")
        return
    name = st.selectbox("Audit query", sorted(QUERIES))
    if name:
        query = QUERIES[name]
        st.write(query.description)
        given = {}
        for param in query.params:
            label = f"{param.name}{'' if param.required else ' (optional)'}"
            value = st.text_input(label, help=param.help, key=f"{name}.{param.name}")
            if value:
                given[param.name] = value
        if st.button("Run", key=f"run.{name}"):
            try:
                _show_rows(lineage.audit(name, given), name)
            except (LineageError, StoreError) as exc:
                st.error(str(exc))
    st.subheader("Free-form query (read-only)")
    cypher = st.text_area("Cypher", placeholder="MATCH (r:Run)-[:USED]->(d:DatasetVersion) RETURN r.id, d.id")
    if st.button("Run query") and cypher.strip():
        try:
            _show_rows(lineage.query(cypher), "query")
        except Exception as exc:  # a typed query's error is the user's to read, whatever raised it
            st.error(f"{type(exc).__name__}: {exc}")


def main() -> None:
    """Lay out the app; Streamlit re-runs this on every interaction."""
    st.set_page_config(page_title="fleetscope", layout="wide")
    settings = ConsoleSettings()
    page = st.sidebar.radio("fleetscope", ["Incidents", "Investigate", "Audit"])
    if page == "Incidents":
        incidents_page(settings)
    elif page == "Investigate":
        investigate_page(settings)
    else:
        audit_page()


main()
