"""Investigate: the correlation engine on a bundle folder on this machine or an uploaded zip or tar.gz."""

from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

from fleetscope.collectors import BundleError, investigate
from fleetscope.console import ui
from fleetscope.console.archives import ArchiveError, unpack


def show(bundle: Path) -> None:
    with st.spinner(f"Investigating {bundle.name} ..."):
        try:
            report = investigate(bundle).to_dict()
        except BundleError as exc:
            st.warning(f"Nothing readable: {exc}")
            return
    ui.render_answer(report)
    ui.render_timeline(report)
    unparsed = report.get("unparsed") or {}
    st.caption(
        f"Read without evidence: {unparsed.get('files', 0)} file(s), {unparsed.get('lines', 0)} line(s)."
    )
    for note in report.get("notes", []):
        st.caption(f"note: {note}")


config = ui.start()
st.header("Investigate a bundle")
folder_tab, upload_tab = st.tabs(["A folder on this machine", "Upload a zip or tar.gz"])
with folder_tab:
    examples = sorted(p for p in Path(config.examples).glob("*") if p.is_dir())
    choice = st.selectbox("Example bundle", ["(type a path below)"] + [p.name for p in examples])
    default = str(Path(config.examples) / choice) if choice and not choice.startswith("(") else ""
    path = st.text_input("Bundle folder", value=default)
    if path.strip():
        bundle = Path(path)
        if not bundle.is_dir():
            st.error(f"{bundle} is not a folder")
        else:
            show(bundle)
with upload_tab:
    upload = st.file_uploader("Bundle archive", type=["zip", "tar.gz", "tgz", "tar"])
    if upload is not None:
        with tempfile.TemporaryDirectory(prefix="fleetscope-upload-") as scratch:
            try:
                root = unpack(upload, upload.name, Path(scratch))
            except ArchiveError as exc:
                st.warning(f"Nothing readable: {exc}")
            else:
                show(root)
