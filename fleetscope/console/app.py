"""fleetscope console: the Streamlit app for on-call root-cause work.

Start it with ``fleetscope console`` (which runs ``streamlit run`` on this file). This script sets the
page up and lists the pages, one script each under ``fleetscope/console/views/``; each page starts with
:func:`fleetscope.console.ui.start`, which asks for a login where one is configured
(:mod:`fleetscope.console.auth`):

- **Incidents** (``incidents.py``): what the collector recorded, newest first, filtered by state, layer,
  node and job.
- **Incident** (``incident.py``): one incident, the answer first; evidence, timeline, the culprit on the
  cluster map and what it touched in the lineage graph.
- **Cluster** (``cluster.py``): nodes × GPUs, interconnect error rates, exporters down, one node over time.
- **Job** (``job.py``): per-rank step time and collective wait, the straggler first.
- **Lineage** (``lineage.py``): upstream and downstream of any entity, drawn as a graph.
- **Audit** (``audit.py``): the audit query pack; free-form read-only Cypher for admins.
- **Investigate** (``investigate.py``): the engine on a bundle folder or an uploaded archive.

Settings come from the environment or a YAML file (:mod:`fleetscope.console.settings`; the lineage store
from ``FLEETSCOPE_LINEAGE_*``, see :mod:`fleetscope.lineage.config`).
"""

from __future__ import annotations

import streamlit as st

PAGES = [
    ("views/incidents.py", "Incidents"),
    ("views/incident.py", "Incident"),
    ("views/cluster.py", "Cluster"),
    ("views/job.py", "Job"),
    ("views/lineage.py", "Lineage"),
    ("views/audit.py", "Audit"),
    ("views/investigate.py", "Investigate"),
]

# Streamlit runs this script as the module ``__main__``. The Cluster page's reader is a process started
# with multiprocessing's spawn, which imports the main script again as ``__mp_main__``: there the pages
# must not run (Streamlit would warn "missing ScriptRunContext" for every call and read the stores).
if __name__ == "__main__":
    st.set_page_config(page_title="fleetscope", layout="wide")
    st.navigation([st.Page(path, title=title, default=i == 0) for i, (path, title) in enumerate(PAGES)]).run()
