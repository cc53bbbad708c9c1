"""The console in a real browser: Streamlit served on 127.0.0.1, driven by Playwright in Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from fleetscope.collectors.incidents import IncidentStore
from fleetscope.lineage import AuditLog, Lineage, Link, open_store
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed"),
]


@pytest.fixture(scope="module")
def console_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    state = tmp_path_factory.mktemp("console")
    store = IncidentStore(state / "incidents.db")
    report = {
        "incident": True,
        "root_causes": [
            {
                "layer": "gpu_hardware",
                "node": "node-07",
                "gpu": 5,
                "gpu_pci_bus_id": "0000:b3:00.0",
                "confidence": 0.93,
                "summary": "GPU 5 on node-07 fell off the bus (Xid 79)",
                "action": "drain node-07; reseat or replace GPU 5",
                "evidence": [{"source": "node-07/dmesg.log:3", "text": "NVRM: Xid (PCI:0000:b3:00): 79"}],
            }
        ],
        "timeline": [],
        "symptoms": [],
        "unparsed": {"files": 0, "lines": 0},
    }
    store.record(report)
    store.close()
    lineage_dir = state / "lineage"
    lineage = Lineage(
        open_store(f"embedded://{lineage_dir}"), AuditLog(state / "audit.jsonl"), state / "q.jsonl"
    )
    lineage.record("DatasetVersion", "web@v3", {"contains_personal_data": True})
    lineage.record(
        "Run", "run-42", links=[Link("USED", "DatasetVersion", "web@v3"), Link("PRODUCED", "Model", "chat:1")]
    )
    lineage.close()
    port = free_port()
    env = dict(os.environ, HOME=str(state), FLEETSCOPE_LINEAGE_URI=f"embedded://{lineage_dir}")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fleetscope.console.cli",
            "console",
            "--port",
            str(port),
            "--store",
            str(state / "incidents.db"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("the console did not answer its health check within 60 s")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)
    # The console stops the embedded graph server it started.
    servers = [
        p for p in psutil.process_iter(["cmdline"]) if str(lineage_dir) in " ".join(p.info["cmdline"] or [])
    ]
    assert servers == []


def test_incidents_page_shows_the_recorded_root_cause(console_url: str, tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        page.goto(console_url)
        page.get_by_text("Root cause: GPU hardware").wait_for(timeout=60_000)
        page.get_by_text("drain node-07; reseat or replace GPU 5").wait_for(timeout=60_000)
        page.screenshot(path=str(tmp_path / "incidents.png"))
        browser.close()


def test_investigate_page_runs_the_engine_on_an_example_bundle(console_url: str, tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    bundle = ROOT / "fleetscope/examples/incidents/50-multinode-xid119-gsp-timeout-collective-hang"
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        page.goto(console_url)
        page.get_by_text("Investigate", exact=True).click()
        field = page.get_by_label("Bundle folder")
        field.fill(str(bundle))
        field.press("Enter")
        page.get_by_text("Root cause: GPU hardware").wait_for(timeout=60_000)
        # Streamlit draws the answer in steps: wait for the culprit, not for a fixed time.
        page.get_by_text("node-02", exact=False).first.wait_for(timeout=60_000)
        page.get_by_text("Xid 119", exact=False).first.wait_for(timeout=60_000)
        page.screenshot(path=str(tmp_path / "investigate.png"), full_page=True)
        browser.close()


def test_audit_page_runs_the_pack_and_refuses_writes(console_url: str, tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        page.goto(console_url)
        page.get_by_text("Audit", exact=True).click()
        page.get_by_text("Free-form query (read-only)").wait_for(timeout=60_000)
        page.get_by_label("Audit query").click()
        page.get_by_role("option", name="impact").click()
        page.get_by_label("id", exact=True).fill("web@v3")
        page.get_by_role("button", name="Run", exact=True).click()
        page.get_by_text("2 row(s)").wait_for(timeout=60_000)
        cypher = page.get_by_label("Cypher")
        cypher.fill("CREATE (:Model {id: 'forged'})")
        page.get_by_role("button", name="Run query").click()
        page.get_by_text("ReadOnlyViolation", exact=False).wait_for(timeout=60_000)
        cypher.fill("MATCH (m:Model {id: 'forged'}) RETURN m.id AS id")
        page.get_by_role("button", name="Run query").click()
        page.get_by_text("0 row(s)").wait_for(timeout=60_000)
        page.screenshot(path=str(tmp_path / "audit.png"), full_page=True)
        browser.close()
