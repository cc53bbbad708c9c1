"""Audit: pick a query of the audit pack, fill its parameters, see the rows, download CSV and JSON;
free-form read-only Cypher for admins."""

from __future__ import annotations

import streamlit as st

from fleetscope.console import auth, ui
from fleetscope.lineage import QUERIES, LineageError, StoreError

ui.start()
st.header("Audit")
lineage = ui.lineage_or_stop()
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
            ui.show_rows(lineage.audit(name, given), name)
        except (LineageError, StoreError) as exc:
            st.error(str(exc))
st.subheader("Free-form query (read-only)")
if ui.role() != auth.ADMIN:
    st.caption("Free-form Cypher is for the admin role.")
else:
    cypher = st.text_area("Cypher", placeholder="MATCH (r:Run)-[:USED]->(d:DatasetVersion) RETURN r.id, d.id")
    if st.button("Run query") and cypher.strip():
        try:
            ui.show_rows(lineage.query(cypher), "query")
        except Exception as exc:  # a typed query's error is the user's to read, whatever raised it
            st.error(f"{type(exc).__name__}: {exc}")
