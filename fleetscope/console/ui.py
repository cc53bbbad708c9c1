"""What the console's pages share: settings, the user's role, the stores and the live sampler, and the
rendering of an investigation report (the answer first).

Long-lived handles (the lineage service, the sampler) are Streamlit resources: one per console
process, shared by every browser session.
"""

from __future__ import annotations

import atexit
import csv
import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from fleetscope.collectors.incidents import Incident, IncidentStore
from fleetscope.console import auth
from fleetscope.console.charts import LAYER_LABELS, cluster_map, gpu_strip, node_health, timeline_chart
from fleetscope.console.cluster_state import ClusterState, Sampler
from fleetscope.console.investigate_report import verdict_sentence
from fleetscope.console.settings import ConsoleSettings

#: Incidents the console reads from the store at most.
INCIDENT_LIMIT = 500


def start() -> ConsoleSettings:
    """What every page calls first: the console's settings, and the login gate
    (:func:`fleetscope.console.auth.gate`), which stops the page until a required login is done.

    Settings are read again on every run, so an edited config file is picked up; a bad setting stops
    the page with its message.
    """
    try:
        config = ConsoleSettings()
    except ValueError as exc:
        st.error(f"The console's settings are not valid: {exc}")
        st.stop()
    auth.gate(config.auth)
    return config


def role() -> str:
    """The session's role, as the login gate decided it."""
    return str(st.session_state.get(auth.ROLE_KEY, auth.VIEWER))


def load_incidents(config: ConsoleSettings, state: str | None = None) -> list[Incident] | None:
    """The store's incidents, newest first; None (with the reason on the page) when it cannot be read."""
    if not Path(config.incident_store).exists():
        st.info(f"No incident store at {config.incident_store} yet: start `fleetscope collect`.")
        return None
    try:
        store = IncidentStore(config.incident_store)
        try:
            return store.recent(limit=INCIDENT_LIMIT, state=state)
        finally:
            store.close()
    except sqlite3.Error as exc:
        st.error(f"The incident store {config.incident_store} cannot be read: {exc}")
        return None


def find_incident(config: ConsoleSettings, fingerprint: str) -> Incident | None:
    """One incident by its whole fingerprint, however old; None when the store has no such incident or
    cannot be read (:func:`load_incidents` has said why)."""
    try:
        store = IncidentStore(config.incident_store)
        try:
            return store.get(fingerprint)
        finally:
            store.close()
    except sqlite3.Error:
        return None


@st.cache_resource
def _sampler(
    targets: tuple[str, ...],
    targets_file: str | None,
    prometheus_url: str | None,
    window: float,
    refresh: float,
) -> Sampler | None:
    return Sampler.in_process_of_its_own(
        targets, Path(targets_file) if targets_file else None, prometheus_url, window, refresh_seconds=refresh
    )


def sampler(config: ConsoleSettings) -> Sampler | None:
    """The console's one sampler of the live source its settings name; None when none is named.

    A bad target stops the page with its message.
    """
    try:
        return _sampler(
            tuple(config.console_targets),
            str(config.console_targets_file) if config.console_targets_file else None,
            config.console_prometheus_url,
            config.console_window_seconds,
            config.console_refresh_seconds,
        )
    except ValueError as exc:
        st.error(f"The console's live source is not valid: {exc}")
        st.stop()


def live_state(config: ConsoleSettings) -> ClusterState | None:
    """The latest look at the cluster, or None (with a hint on the page) when no live source is set."""
    live = sampler(config)
    if live is None:
        st.info(
            "No live source: start the console with `--target HOST:PORT` (an exporter), `--targets-file` "
            "or `--prometheus-url` to see the cluster."
        )
        return None
    state = live.latest()
    if state is None:
        st.error(f"No look at the cluster yet: {live.error}")
    return state


@st.cache_resource
def _lineage(key: str, _config: Any) -> Any:
    service = _config.open()
    # Streamlit exits normally on SIGTERM/SIGINT, so this stops an embedded server the console started.
    atexit.register(service.close)
    return service


def lineage_service() -> Any:
    """One lineage service per configured store for the console's lifetime (opening an embedded store
    starts its server).

    Raises:
        fleetscope.lineage.StoreError, ValueError: the store named by ``FLEETSCOPE_LINEAGE_*`` cannot be
            opened.
    """
    from fleetscope.lineage.config import LineageConfig

    config = LineageConfig.load()
    return _lineage(repr(config), config)


def lineage_or_stop() -> Any:
    """The lineage service for a page that needs one; without a configured store, or with one that
    cannot be opened, the page says so and stops (``st.stop``)."""
    from fleetscope.lineage import StoreError

    if not lineage_configured():
        st.info(
            "No lineage store is configured (FLEETSCOPE_LINEAGE_URI); "
            "record lineage with `fleetscope lineage`."
        )
        st.stop()
    try:
        return lineage_service()
    except (StoreError, ValueError) as exc:
        st.error(f"The lineage store cannot be opened: {exc}")
        st.stop()


def lineage_configured() -> bool:
    """Whether a lineage store is set up: a server URI, or an embedded store whose folder exists (so a
    console on a machine that never recorded lineage does not start a graph server for nothing)."""
    from fleetscope.lineage.config import LineageConfig
    from fleetscope.lineage.store.base import embedded_data_dir

    try:
        uri = LineageConfig.load().store_uri
    except ValueError:
        return True  # opening it will say what is wrong
    folder = embedded_data_dir(uri)
    return folder is None or folder.exists()


def where(cause: dict[str, Any]) -> str:
    """The culprit in words: node, GPU index and PCI bus id, as far as they are known."""
    parts = [
        cause.get("node"),
        f"GPU {cause['gpu']}" if cause.get("gpu") is not None else None,
        cause.get("gpu_pci_bus_id"),
    ]
    return " · ".join(str(part) for part in parts if part) or "not established"


def render_answer(report: dict[str, Any]) -> dict[str, Any] | None:
    """The answer first: the verdict for a report without an incident, else the top root cause's layer,
    culprit, certainty and action (in full: text, not metric tiles, so nothing is cut off), then its
    evidence with sources and the other candidates.

    Returns:
        The top root cause, or None when there is none.
    """
    if not report.get("incident"):
        sentence = verdict_sentence(report)
        if report.get("verdict", "healthy") == "healthy":
            st.success(sentence)
        else:
            st.warning(sentence)
        return None
    causes = report.get("root_causes") or []
    if not causes:
        st.warning("An incident, but no root cause could be ranked.")
        return None
    top: dict[str, Any] = causes[0]
    layer = top.get("layer")
    st.subheader(f"Root cause: {LAYER_LABELS.get(layer, layer) if layer else 'layer not determined'}")
    certainty = f" ({top['certainty']})" if top.get("certainty") else ""
    st.markdown(
        f"**Culprit:** {where(top)}  \n"
        f"**Confidence:** {float(top.get('confidence', 0.0)):.0%}{certainty}  \n"
        f"**Kind:** {top.get('kind') or 'not given'}"
    )
    st.write(top.get("summary", ""))
    st.info(f"Action: {top.get('action') or 'none given'}")
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
                    "culprit": where(c),
                    "confidence": c.get("confidence"),
                    "summary": c.get("summary"),
                }
                for c in causes[1:]
            ],
            width="stretch",
            hide_index=True,
        )
    return top


def render_timeline(report: dict[str, Any]) -> None:
    """The timeline chart (one lane per layer, symptoms linked to their cause) and its table."""
    chart = timeline_chart(report)
    if chart is None:
        return
    st.markdown("**Timeline**")
    st.altair_chart(chart, width="stretch")
    symptoms = report.get("symptoms") or []
    if symptoms:
        st.dataframe(
            [
                {
                    "symptom": s.get("summary"),
                    "explained by": f"cause {s['explained_by'] + 1}"
                    if s.get("explained_by") is not None
                    else "",
                }
                for s in symptoms
            ],
            width="stretch",
            hide_index=True,
        )
    with st.expander(f"Every timeline event ({len(report.get('timeline') or [])})"):
        st.dataframe(report["timeline"], width="stretch", hide_index=True)


def render_map(report: dict[str, Any], state: ClusterState | None, culprit: dict[str, Any] | None) -> None:
    """The cluster map with the culprit node outlined and, under it, the culprit node's GPUs.

    Nodes come from the live look when there is one, plus every node the report names.
    """
    named = {str(item["node"]) for item in report.get("timeline") or [] if item.get("node")}
    named |= {str(c["node"]) for c in report.get("root_causes") or [] if c.get("node")}
    nodes = sorted(named | set(state.nodes if state is not None else []))
    if not nodes:
        return
    cells = node_health(
        state.gpus if state is not None else pd.DataFrame(columns=["node", "gpu", "health"]),
        state.down if state is not None else {},
        nodes,
    )
    node = culprit.get("node") if culprit else None
    st.markdown("**Cluster map**" + (f": culprit **{node}** outlined" if node else ""))
    st.altair_chart(cluster_map(cells, node), width="stretch")
    if culprit and node and state is not None:
        strip = gpu_strip(state.gpus, str(node), culprit.get("gpu"))
        if strip is not None:
            st.altair_chart(strip, width="stretch")


def show_rows(rows: list[dict[str, Any]], name: str) -> None:
    """A query's rows as a table with CSV and JSON downloads."""
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
