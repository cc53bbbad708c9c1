"""The console in a real browser: ``fleetscope console`` as its own process, fed by real exporter
processes (the fake NVML, one GPU lost, one node down) and the seeded incident store and lineage graph
(tests/console/conftest.py), driven by Playwright in Debian's Chromium.

Screenshots go to ``test-artifacts/console/`` at the top of the clone (``FLEETSCOPE_TEST_ARTIFACTS``
to put them elsewhere), one per test, so a CI run can keep them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.console.conftest import OPEN_BUNDLE, seed_lineage, seed_store
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("FLEETSCOPE_TEST_ARTIFACTS") or ROOT / "test-artifacts") / "console"
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
#: Milliseconds a page gets to show what the test waits for (the first run reads every exporter).
SHOWN_WITHIN = 60_000

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed"),
]


def _wait_for_url(url: str, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{what} exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"{what} did not answer {url} within 60 s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def console_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    state = tmp_path_factory.mktemp("browser")
    store = state / "incidents.db"
    _, open_id, _ = seed_store(store)
    lineage_dir = state / "lineage"
    uri = seed_lineage(lineage_dir, store, open_id)
    env = dict(os.environ, HOME=str(state), FLEETSCOPE_LINEAGE_URI=uri, PYTHONPATH=str(ROOT))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        targets = []
        for name, extra in (("node-01", []), ("node-02", ["--lose-gpu", "3"])):
            port = free_port()
            node = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.console.fake_node",
                    "--port",
                    str(port),
                    "--state",
                    str(state / name),
                    *extra,
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            processes.append(node)
            _wait_for_url(f"http://127.0.0.1:{port}/metrics", node, f"the exporter of {name}")
            targets += ["--target", f"{name}=127.0.0.1:{port}"]
        targets += ["--target", f"node-03=127.0.0.1:{free_port()}"]  # a node whose exporter is down
        port = free_port()
        console = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fleetscope.console.cli",
                "console",
                "--port",
                str(port),
                "--store",
                str(store),
                *targets,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes.append(console)
        url = f"http://127.0.0.1:{port}"
        _wait_for_url(url + "/_stcore/health", console, "the console")
        yield url
    finally:
        for process in reversed(processes):
            _stop(process)
    # The console stops the embedded graph server it started.
    servers = [
        p for p in psutil.process_iter(["cmdline"]) if str(lineage_dir) in " ".join(p.info["cmdline"] or [])
    ]
    assert servers == []


@pytest.fixture
def page(request: pytest.FixtureRequest) -> Iterator:
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            yield tab
        finally:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            tab.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
            browser.close()


def test_an_incident_opened_from_the_list_shows_its_culprit_on_the_map(page, console_url: str) -> None:
    page.goto(console_url)
    page.get_by_text("1 incident(s), the most recently seen first").wait_for(timeout=SHOWN_WITHIN)
    page.get_by_text("Open this incident").click()
    page.get_by_text("Root cause: GPU hardware").wait_for(timeout=SHOWN_WITHIN)
    page.get_by_text("node-02 · GPU 3 · 0000:5d:00.0").wait_for(timeout=SHOWN_WITHIN)
    page.get_by_text("Cluster map: culprit node-02 outlined").wait_for(timeout=SHOWN_WITHIN)
    # Vega draws each chart (marks in an SVG or a canvas): the map, the culprit node's GPUs, the timeline.
    charts = page.locator("[data-testid='stVegaLiteChart'] .marks")
    charts.nth(2).wait_for(timeout=SHOWN_WITHIN)
    map_box = charts.nth(0).bounding_box()
    assert map_box is not None and map_box["width"] > 200 and map_box["height"] > 50
    # What it touched: the data grid draws its cells on a canvas and keeps them in the DOM, hidden.
    page.get_by_text("run-17", exact=True).first.wait_for(state="attached", timeout=SHOWN_WITHIN)


def test_the_cluster_page_names_the_node_that_is_down(page, console_url: str) -> None:
    page.goto(console_url)
    page.get_by_role("link", name="Cluster").click()
    page.get_by_text("Exporters down: 1").wait_for(timeout=SHOWN_WITHIN)
    page.get_by_text("Node node-02").wait_for(timeout=SHOWN_WITHIN)  # the worst node first
    heatmap = page.locator("[data-testid='stVegaLiteChart'] .marks").nth(1)
    heatmap.wait_for(timeout=SHOWN_WITHIN)
    # Click node-01's row, level with its axis label, in the middle of the plot.
    box = heatmap.bounding_box()
    label = heatmap.locator("text", has_text="node-01").first.bounding_box()
    assert box is not None and label is not None
    page.mouse.click(box["x"] + box["width"] / 2, label["y"] + label["height"] / 2)
    page.get_by_text("Node node-01").wait_for(timeout=SHOWN_WITHIN)


def test_investigate_page_runs_the_engine_on_an_example_bundle(page, console_url: str) -> None:
    page.goto(console_url)
    page.get_by_role("link", name="Investigate").click()
    field = page.get_by_label("Bundle folder")
    field.fill(str(OPEN_BUNDLE))
    field.press("Enter")
    page.get_by_text("Root cause: GPU hardware").wait_for(timeout=SHOWN_WITHIN)
    page.get_by_text("node-02 · GPU 3", exact=False).first.wait_for(timeout=SHOWN_WITHIN)


def test_audit_page_runs_the_pack_and_refuses_writes(page, console_url: str) -> None:
    page.goto(console_url)
    page.get_by_role("link", name="Audit").click()
    page.get_by_text("Free-form query (read-only)").wait_for(timeout=SHOWN_WITHIN)
    page.get_by_label("Audit query").click()
    page.get_by_role("option", name="impact").click()
    page.get_by_label("id", exact=True).fill("web@v3")
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("3 row(s)").wait_for(timeout=SHOWN_WITHIN)
    cypher = page.get_by_label("Cypher")  # the local user of a loopback console is an admin
    cypher.fill("CREATE (:Model {id: 'forged'})")
    page.get_by_role("button", name="Run query").click()
    page.get_by_text("ReadOnlyViolation", exact=False).wait_for(timeout=SHOWN_WITHIN)


def test_an_uploaded_tar_gz_is_investigated_and_junk_is_nothing_readable(
    page, console_url: str, tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle.tar.gz"
    with tarfile.open(bundle, "w:gz") as archive:
        archive.add(OPEN_BUNDLE, arcname=OPEN_BUNDLE.name)
    junk = tmp_path / "notes.tar.gz"
    junk.write_bytes(b"these are not the logs you are looking for\n")
    page.goto(console_url)
    page.get_by_role("link", name="Investigate").click()
    page.get_by_role("tab", name="Upload a zip or tar.gz").click()
    page.locator("input[type='file']").set_input_files(str(bundle))
    page.get_by_text("Root cause: GPU hardware").wait_for(timeout=SHOWN_WITHIN)
    page.get_by_text("node-02 · GPU 3", exact=False).first.wait_for(timeout=SHOWN_WITHIN)
    page.locator("input[type='file']").set_input_files(str(junk))
    page.get_by_text(
        "Nothing readable: notes.tar.gz is not a zip, tar or tar.gz archive", exact=False
    ).wait_for(timeout=SHOWN_WITHIN)
    assert page.get_by_text("healthy", exact=False).count() == 0


def test_the_lineage_page_draws_the_graph_around_a_run(page, console_url: str) -> None:
    page.goto(console_url + "/lineage?id=run-17")  # a link straight to a page gets the app's page list
    page.get_by_role("link", name="Incidents").wait_for(timeout=SHOWN_WITHIN)
    graph = page.locator("[data-testid='stGraphVizChart'] svg")
    graph.wait_for(timeout=SHOWN_WITHIN)
    for name in ("web@v3", "chat:2", "ckpt-17-2000", "GPU-node02-3"):
        graph.locator("g.node text", has_text=name).first.wait_for(timeout=SHOWN_WITHIN)
