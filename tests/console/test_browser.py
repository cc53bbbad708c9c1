"""The console in a real browser, driven by Playwright in Debian's Chromium.

Two set-ups, each a module fixture of real processes:

- the whole flow a new user follows: ``fleetscope simulate`` serving a small cluster with a fault
  injected and a file_sd list of its exporters, and ``fleetscope up --targets-file`` (exporter,
  collector, console) watching it; the test waits for the collector to record the incident and opens it;
- ``fleetscope console`` alone, fed by real exporter processes (the fake NVML, one GPU lost, one node
  down) and the seeded incident store and lineage graph (tests/console/conftest.py), for every page.

Screenshots go to ``test-artifacts/console/`` at the top of the clone (``FLEETSCOPE_TEST_ARTIFACTS``
to put them elsewhere), one per test, so a CI run can keep them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from fleetscope.collectors.incidents import IncidentStore
from fleetscope.console.charts import CULPRIT_RED
from fleetscope.simulate.cluster import BUS_IDS
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
#: Seconds the collector gets to record the injected fault (two scrapes, then the investigation).
INCIDENT_WITHIN = 180

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed"),
]


def _wait_for_url(url: str, process: subprocess.Popen[bytes], what: str, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{what} exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"{what} did not answer {url} within {within:.0f} s")


def _artifact(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name


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
            tab.screenshot(path=str(_artifact(f"{request.node.name}.png")), full_page=True)
            browser.close()


@dataclass
class SimulatedStack:
    """A running ``fleetscope up`` watching a simulated cluster with one fault injected.

    Attributes:
        url: the console.
        node: the node the fault is on.
        gpu: the GPU index.
    """

    url: str
    node: str
    gpu: int


def _wait_for_incident(
    store: Path, node: str, summary: str, processes: list[subprocess.Popen[bytes]]
) -> None:
    """Until the collector has recorded an open incident on ``node`` whose summary says ``summary`` (its
    first cycles need the counters of two scrapes, then the engine's investigation; a loaded machine is
    slow)."""
    deadline = time.monotonic() + INCIDENT_WITHIN
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                pytest.fail(f"{' '.join(map(str, process.args))} exited with status {process.returncode}")
        if store.is_file():
            incidents = IncidentStore(store)
            try:
                if any(i.node == node and summary in i.summary for i in incidents.recent(state="open")):
                    return
            finally:
                incidents.close()
        time.sleep(1)
    pytest.fail(f"the collector recorded no open {summary!r} incident on {node} within {INCIDENT_WITHIN} s")


@pytest.fixture(scope="module")
def simulated_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatedStack]:
    state = tmp_path_factory.mktemp("simulated")
    targets = state / "sim.json"
    # No lineage store: the page must say so rather than fail.
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETSCOPE_")}
    env |= {"HOME": str(state), "PYTHONPATH": str(ROOT)}
    node, gpu = "sim-node-0002", 3
    simulate = [
        *("simulate", "--nodes", "4", "--fault", f"xid79@{node}:{gpu}+5"),
        *("--file-sd", str(targets)),
    ]
    console_port = free_port()
    up = [
        *("up", "--data-dir", str(state / "data"), "--interval", "2", "--targets-file", str(targets)),
        *("--exporter-port", str(free_port()), "--collector-port", str(free_port())),
        *("--console-port", str(console_port)),
    ]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for args in (simulate, up):
            if args is up:
                deadline = time.monotonic() + 60
                while not targets.is_file() and time.monotonic() < deadline and processes[0].poll() is None:
                    time.sleep(0.2)
                assert targets.is_file(), "fleetscope simulate wrote no targets file"
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "fleetscope.console.cli", *args],
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        url = f"http://127.0.0.1:{console_port}"
        # up starts the exporter, then the collector, then the console, each once the last answers.
        _wait_for_url(url + "/_stcore/health", processes[1], "fleetscope up", within=240)
        _wait_for_incident(state / "data" / "incidents.db", node, "Xid 79", processes)
        yield SimulatedStack(url, node, gpu)
    finally:
        for process in reversed(processes):
            _stop(process)


def test_a_fault_simulate_injects_shows_in_the_console_up_started(page, simulated_stack) -> None:
    node, gpu = simulated_stack.node, simulated_stack.gpu
    page.goto(simulated_stack.url)
    page.get_by_text("the most recently seen first").wait_for(timeout=SHOWN_WITHIN)
    # Filter by the node, as on-call would (this machine's own exporter may report something too), and
    # pick the Xid: the job's ranks stop with the GPU, which the collector may report on its own.
    page.get_by_label("Node").click()
    page.get_by_role("option", name=node).click()
    page.keyboard.press("Escape")
    page.get_by_text("incident(s), the most recently seen first").wait_for(timeout=SHOWN_WITHIN)
    page.get_by_label("Incident", exact=True).click()
    page.get_by_role("option", name=re.compile(f"{node} · Xid 79")).click()
    page.get_by_text("Open this incident").click()
    # The answer first: layer, then culprit node, GPU and the bus id the simulated driver logged.
    page.get_by_text("Root cause: GPU hardware").wait_for(timeout=SHOWN_WITHIN)
    page.get_by_text(f"{node} · GPU {gpu} · {BUS_IDS[gpu]}").wait_for(timeout=SHOWN_WITHIN)
    page.get_by_text(f"Xid 79 (GPU has fallen off the bus) on GPU {gpu}", exact=False).first.wait_for(
        timeout=SHOWN_WITHIN
    )
    # The evidence: the kernel-log line from the node's /events, with its source (the data grid draws
    # its cells on a canvas and keeps them in the DOM, hidden).
    page.get_by_text("Evidence", exact=True).wait_for(timeout=SHOWN_WITHIN)
    page.get_by_text(f"{node}/events:", exact=False).first.wait_for(state="attached", timeout=SHOWN_WITHIN)
    page.get_by_text("GPU has fallen off the bus.", exact=False).first.wait_for(
        state="attached", timeout=SHOWN_WITHIN
    )
    # The map: every simulated node a square, the culprit outlined in red and named above it.
    page.get_by_text(f"Cluster map: culprit {node} outlined").wait_for(timeout=SHOWN_WITHIN)
    charts = page.locator("[data-testid='stVegaLiteChart']")
    cluster_map = charts.filter(has=page.locator("text", has_text=node)).first
    outline = cluster_map.locator(f"path[stroke='{CULPRIT_RED}'][aria-label*='node: {node}']")
    outline.wait_for(timeout=SHOWN_WITHIN)
    assert cluster_map.locator("path[aria-roledescription='square']").count() == 4 + 1  # + the outline
    cluster_map.screenshot(path=str(_artifact("simulated_cluster_map.png")))
    # Under it, the culprit node's GPUs, the culprit GPU outlined.
    strip = charts.filter(has=page.locator("text", has_text=f"GPUs of {node}")).first
    strip.locator(f"path[stroke='{CULPRIT_RED}'][aria-label*='gpu: {gpu}']").wait_for(timeout=SHOWN_WITHIN)
    # The timeline: a lane for the GPU hardware layer holding the cause's events.
    page.get_by_text("Timeline", exact=True).wait_for(timeout=SHOWN_WITHIN)
    timeline = charts.filter(has=page.locator("text", has_text="GPU hardware")).first
    timeline.locator("[aria-label*='role: cause 1']").first.wait_for(timeout=SHOWN_WITHIN)
    timeline.screenshot(path=str(_artifact("simulated_timeline.png")))
    page.get_by_text("No lineage store is configured", exact=False).wait_for(timeout=SHOWN_WITHIN)


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
    above = heatmap.locator("text", has_text="node-02").first.bounding_box()
    assert box is not None and label is not None and above is not None
    # Each node's row is tall enough to read and to click (it was about 22 px here, and 11 px at four
    # nodes, where every other node's label went missing).
    assert label["y"] - above["y"] >= 25, (above, label)
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


def test_the_lineage_page_draws_the_graph_around_a_run_and_moves_on_a_click(page, console_url: str) -> None:
    page.goto(console_url + "/lineage?id=run-17")  # a link straight to a page gets the app's page list
    page.get_by_role("link", name="Incidents").wait_for(timeout=SHOWN_WITHIN)
    graph = page.locator("[data-testid='stVegaLiteChart'] .marks")
    graph.wait_for(timeout=SHOWN_WITHIN)
    for name in ("web@v3", "chat:2", "ckpt-17-2000", "GPU-node02-3"):
        graph.locator("text", has_text=name).first.wait_for(timeout=SHOWN_WITHIN)
    page.get_by_text("Run run-17").wait_for(timeout=SHOWN_WITHIN)
    # Click the dataset version's square: it becomes the focus, its properties shown.
    square = graph.locator("path[aria-roledescription='square'][aria-label*='id: web@v3']")
    square.click()
    page.get_by_text("DatasetVersion web@v3").wait_for(timeout=SHOWN_WITHIN)
    page.get_by_text("contains_personal_data", exact=False).first.wait_for(timeout=SHOWN_WITHIN)
    assert page.get_by_label("Entity id", exact=True).input_value() == "web@v3"
