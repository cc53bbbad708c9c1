"""Every console page run by Streamlit's AppTest on the seeded state (tests/console/conftest.py),
asserting what a person reads: the culprit, the evidence rows, the GPU that is lost, the straggler."""

from __future__ import annotations

import io
import json
import re
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pynvml
import pytest
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df
from streamlit.testing.v1 import AppTest

from fleetscope.console.charts import CULPRIT_RED
from fleetscope.console.settings import ENV_CONSOLE_PROMETHEUS_URL, ENV_CONSOLE_TARGETS
from tests.console.conftest import JOB, OPEN_BUNDLE, Seeded, train
from tests.exporters.support import wait_for
from tests.servers import prometheus_server, promql

APP = Path(__file__).resolve().parents[2] / "fleetscope" / "console" / "app.py"

pytestmark = pytest.mark.integration


@pytest.fixture
def app(seeded: Seeded, monkeypatch: pytest.MonkeyPatch) -> Iterator[AppTest]:
    for name, value in seeded.env.items():
        monkeypatch.setenv(name, value)
    yield AppTest.from_file(str(APP), default_timeout=120)


def texts(at: AppTest) -> str:
    """Every piece of text the page shows, in one string."""
    parts = [e.value for kind in ("markdown", "subheader", "header", "caption", "info", "success", "warning",
                                  "error") for e in getattr(at, kind)]  # fmt: skip
    return "\n".join(str(p) for p in parts)


def tables(at: AppTest) -> list:
    return [frame.value for frame in at.dataframe]


def test_incidents_lists_open_ones_newest_first_and_filters(app: AppTest, seeded: Seeded) -> None:
    app.run()
    assert not app.exception
    (frame,) = tables(app)
    assert list(frame["id"]) == [seeded.open_id]
    assert frame["node"][0] == "node-02"
    app.radio[0].set_value("all").run()
    frame = tables(app)[0]
    assert list(frame["id"]) == [seeded.open_id, seeded.resolved_id]  # newest first
    assert list(frame["state"]) == ["open", "resolved"]
    layer = next(m for m in app.multiselect if m.label == "Layer")
    layer.set_value(["gpu_hardware"]).run()
    assert len(tables(app)[0]) == 2  # both are GPU hardware faults
    node = next(m for m in app.multiselect if m.label == "Node")
    node.set_value(["node-02"]).run()
    assert list(tables(app)[0]["id"]) == [seeded.open_id]
    job = next(s for s in app.selectbox if s.label == "Job")
    assert JOB in job.options  # the job's ranks report from node-01 in the live look
    job.set_value(JOB).run()
    assert "No incidents match these filters." in texts(app)


def test_incident_page_gives_the_answer_the_evidence_the_timeline_and_the_map(
    app: AppTest, seeded: Seeded
) -> None:
    app.switch_page("views/incident.py")
    app.query_params["incident"] = seeded.open_id
    app.run()
    assert not app.exception
    top = seeded.open_report["root_causes"][0]
    shown = texts(app)
    assert "Root cause: GPU hardware" in shown
    assert "**Culprit:** node-02 · GPU 3 · 0000:5d:00.0" in shown
    assert f"({top['certainty']})" in shown
    assert any(top["action"] in e.value for e in app.info)  # the whole action, not cut off
    evidence = tables(app)[0]
    assert list(evidence["source"]) == [e["source"] for e in top["evidence"]]
    assert "Xid" in evidence["line"][0]
    assert "Cluster map**: culprit **node-02** outlined" in shown
    cluster, gpus, timeline = (json.loads(chart.proto.spec) for chart in app.get("vega_lite_chart"))
    outlined = [layer for layer in cluster["layer"] if layer["mark"].get("stroke") == CULPRIT_RED]
    assert len(outlined) == 1  # the culprit's outline on the map
    assert "GPUs of node-02" in json.dumps(gpus)
    assert [layer["mark"]["type"] for layer in timeline["layer"]] == ["rule", "point"]  # symptom -> cause
    symptoms = next(t for t in tables(app) if "symptom" in t.columns)
    assert "cause 1" in list(symptoms["explained by"])
    touched = next(t for t in tables(app) if "run" in t.columns)
    assert set(touched["run"]) == {"run-17"}
    assert set(touched["produced"]) == {"ckpt-17-2000", "chat:2"}


def test_cluster_page_shows_the_lost_gpu_and_the_dead_exporter(app: AppTest, seeded: Seeded) -> None:
    app.switch_page("views/cluster.py").run()
    assert not app.exception
    shown = texts(app)
    assert "Exporters down: 1" in shown
    down = tables(app)[0]
    assert list(down["node"]) == [seeded.dead]
    measure = next(s for s in app.selectbox if s.label == "Colour GPUs by")
    measure.set_value("health").run()
    node = next(s for s in app.selectbox if s.label == "Node")
    assert node.value == "node-02"  # the worst node on health comes first
    gpus = next(t for t in tables(app) if "status" in t.columns)
    lost = gpus[gpus["gpu"] == 3]
    assert list(lost["status"]) == ["lost (fallen off the bus)"]
    assert (gpus[gpus["gpu"] != 3]["status"] == "ok").all()
    wait_for(lambda: _looks(app) >= 2, timeout=30)  # more looks (read in the background): series over time
    seeded.node01.set_nvlink_errors(0, 0, pynvml.NVML_NVLINK_ERROR_DL_REPLAY, 120)
    wait_for(lambda: _link_errors(app) == [("node-01", "nvlink", 120.0)], timeout=30)
    rates = next(t for t in tables(app) if "errors_per_second" in t.columns)
    assert rates["errors_per_second"].iloc[0] == pytest.approx(120 / 300)
    assert len(app.get("vega_lite_chart")) == 2 + 1 + 4  # map, heatmap, link errors, four series of the node


def test_cluster_page_names_a_target_prometheus_cannot_scrape(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A real Prometheus scrapes the seeded exporters and the dead target (--prometheus-url's source).
    targets = dict(target.split("=", 1) for target in seeded.env[ENV_CONSOLE_TARGETS].split(","))
    dead = targets[seeded.dead]
    with prometheus_server(tmp_path, list(targets.values())) as url:

        def scraped() -> bool:
            up = {r["metric"]["instance"]: r["value"][1] for r in promql(url, "up")}
            return len(up) == 3 and up[dead] == "0" and bool(promql(url, "fleetscope_gpu_up"))

        wait_for(scraped, timeout=60)
        for name, value in seeded.env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv(ENV_CONSOLE_TARGETS)
        monkeypatch.setenv(ENV_CONSOLE_PROMETHEUS_URL, url)
        app = AppTest.from_file(str(APP), default_timeout=120)
        app.switch_page("views/cluster.py").run()
        assert not app.exception
        assert "Exporters down: 1" in texts(app)
        down = tables(app)[0]
        # Every target is on 127.0.0.1, so Prometheus's instance (host:port) names each node.
        assert list(down["node"]) == [dead]
        assert "up is 0" in down["why"][0]
        node = next(s for s in app.selectbox if s.label == "Node")
        assert len(node.options) == 3  # the two that answer and the one down


def _link_errors(app: AppTest) -> list[tuple[str, str, float]]:
    app.run()
    found = [t for t in tables(app) if "errors_per_second" in t.columns]
    return (
        [tuple(row) for row in found[0][["node", "fabric", "errors"]].itertuples(index=False)]
        if found
        else []
    )


def _looks(app: AppTest) -> int:
    app.run()
    looks = re.search(r"(\d+) look\(s\) since the console started watching", texts(app))
    return int(looks.group(1)) if looks else 0


def test_job_page_puts_the_straggler_first(app: AppTest, seeded: Seeded) -> None:
    app.switch_page("views/job.py").run()
    assert not app.exception
    # The first look is the window's baseline: steps taken before it are not in the window.
    assert "Straggler" not in texts(app)
    train(seeded.hooks, 3)
    wait_for(lambda: _steps_in_window(app) == [3.0] * 4, timeout=30)
    assert "Straggler: rank 5 on node-01" in texts(app)
    ranks = tables(app)[0]
    assert list(ranks["rank"]) == [5, 6, 4, 7]
    assert ranks["step time (s)"].iloc[0] == pytest.approx(2.5)
    assert ranks["collective wait per step (s)"].iloc[0] == pytest.approx(1.9)
    assert ranks["collective wait per step (s)"].iloc[-1] == pytest.approx(0.3)
    assert len(app.get("vega_lite_chart")) == 2  # step time and collective wait over time


def _steps_in_window(app: AppTest) -> list[float]:
    app.run()
    return list(tables(app)[0]["steps in the window"])


def _graph_nodes(app: AppTest) -> dict[str, dict]:
    """The nodes the lineage page's graph draws, by ``label|id``, from the chart's Vega-Lite spec."""
    (graph,) = app.get("vega_lite_chart")
    # Streamlit sends each of the chart's data sets as Arrow bytes beside the spec.
    frames = [convert_arrow_bytes_to_pandas_df(d.data.data) for d in graph.proto.datasets]
    (nodes,) = [frame for frame in frames if "key" in frame]
    return {row["key"]: row for row in nodes.to_dict("records")}


def test_lineage_page_draws_the_neighbourhood_and_moves_on_a_click(app: AppTest) -> None:
    app.switch_page("views/lineage.py")
    app.query_params["id"] = "run-17"
    app.run()
    assert not app.exception
    nodes = _graph_nodes(app)
    assert [key for key, node in nodes.items() if node["focus"]] == ["Run|run-17"]
    # Upstream to the left of the run, downstream to the right.
    assert nodes["DatasetVersion|web@v3"]["x"] < nodes["Run|run-17"]["x"]
    for name in ("Model|chat:2", "Checkpoint|ckpt-17-2000"):
        assert nodes[name]["x"] > nodes["Run|run-17"]["x"]
    assert "GPU|GPU-node02-3" in nodes
    assert "Run run-17" in texts(app)
    # A click on the dataset version's square: the browser sends the chart's selection, which AppTest
    # can only place in the session state the page reads.
    app.session_state["lineage.graph:run-17"] = {
        "selection": {"pick": [{"label": "DatasetVersion", "id": "web@v3"}]}
    }
    app.run()
    assert not app.exception
    assert app.text_input(key="lineage.id").value == "web@v3"
    assert app.selectbox(key="lineage.label").value == "DatasetVersion"
    assert "DatasetVersion web@v3" in texts(app)
    assert "contains_personal_data" in app.json[0].value
    nodes = _graph_nodes(app)
    assert [key for key, node in nodes.items() if node["focus"]] == ["DatasetVersion|web@v3"]
    assert nodes["Run|run-17"]["x"] > nodes["DatasetVersion|web@v3"]["x"]  # now downstream of the focus
    # The click around the last focus is not read again: a rerun stays where it moved.
    app.run()
    assert app.text_input(key="lineage.id").value == "web@v3"
    # A click on the focus itself moves nothing, and leaves the label free to change.
    app.session_state["lineage.graph:web@v3"] = {
        "selection": {"pick": [{"label": "DatasetVersion", "id": "web@v3"}]}
    }
    app.selectbox(key="lineage.label").set_value("(any)").run()
    assert app.selectbox(key="lineage.label").value == "(any)"
    assert "DatasetVersion web@v3" in texts(app)  # the label, found again
    move = next(s for s in app.selectbox if s.label == "Move to")
    move.set_value("Run:run-17").run()
    assert app.text_input(key="lineage.id").value == "run-17"
    assert "Run run-17" in texts(app)


def test_audit_page_runs_a_query_and_keeps_cypher_for_admins(app: AppTest) -> None:
    app.switch_page("views/audit.py").run()
    query = next(s for s in app.selectbox if s.label == "Audit query")
    query.set_value("impact").run()
    app.text_input(key="impact.id").set_value("web@v3")
    app.button(key="run.impact").click().run()
    assert not app.exception
    rows = tables(app)[0]
    assert set(rows["id"]) == {"run-17", "ckpt-17-2000", "chat:2"}
    assert [b.label for b in app.get("download_button")] == ["Download CSV", "Download JSON"]
    # AppTest's server address is not loopback and no login is configured: a viewer.
    assert "Free-form Cypher is for the admin role." in texts(app)
    assert not app.text_area


def test_an_admin_gets_read_only_cypher(app: AppTest) -> None:
    app.secrets["auth"] = {"redirect_uri": "http://127.0.0.1/oauth2callback", "cookie_secret": "s"}
    app.user = {"is_logged_in": True, "email": "ana@example.com", "groups": ["fleetscope-admin", "ops"]}
    app.switch_page("views/audit.py").run()
    assert not app.exception
    app.text_area[0].set_value("CREATE (:Model {id: 'forged'})")
    next(b for b in app.button if b.label == "Run query").click().run()
    assert "ReadOnlyViolation" in texts(app)


def test_with_a_provider_configured_nothing_shows_before_login(app: AppTest) -> None:
    app.secrets["auth"] = {"redirect_uri": "http://127.0.0.1/oauth2callback", "cookie_secret": "s"}
    app.user = {"is_logged_in": False}
    app.run()
    assert not app.exception
    assert [b.label for b in app.button] == ["Log in"]
    assert not app.dataframe


def test_investigate_a_folder_and_uploads(app: AppTest, tmp_path: Path) -> None:
    app.switch_page("views/investigate.py").run()
    app.text_input[0].set_value(str(OPEN_BUNDLE)).run()
    assert not app.exception
    assert "Root cause: GPU hardware" in texts(app)
    empty = tmp_path / "empty"
    empty.mkdir()
    app.text_input[0].set_value(str(empty)).run()
    shown = texts(app)
    assert "Nothing readable" in shown
    assert "healthy" not in shown.lower()


def _tar_gz(folder: Path) -> bytes:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as archive:
        archive.add(folder, arcname=folder.name)
    return data.getvalue()


def _zip(folder: Path) -> bytes:
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        for path in sorted(folder.rglob("*")):
            archive.write(path, f"{folder.name}/{path.relative_to(folder)}")
    return data.getvalue()


@pytest.mark.parametrize("pack", [_tar_gz, _zip], ids=["tar.gz", "zip"])
def test_an_uploaded_bundle_is_investigated(pack, tmp_path: Path) -> None:
    from fleetscope.console.archives import unpack

    root = unpack(io.BytesIO(pack(OPEN_BUNDLE)), "bundle", tmp_path)
    assert root == tmp_path / OPEN_BUNDLE.name
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == sorted(
        p.relative_to(OPEN_BUNDLE) for p in OPEN_BUNDLE.rglob("*")
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is not a zip, tar or tar.gz archive"),
        (b"not an archive at all\n" * 10, "is not a zip, tar or tar.gz archive"),
        (b"\x1f\x8b\x08\x00broken gzip", "is not a zip, tar or tar.gz archive"),
    ],
)
def test_an_unreadable_upload_is_nothing_readable(content: bytes, message: str, tmp_path: Path) -> None:
    from fleetscope.console.archives import ArchiveError, unpack

    with pytest.raises(ArchiveError, match=message):
        unpack(io.BytesIO(content), "upload.tar.gz", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_archive_reaching_outside_its_folder_is_refused(tmp_path: Path) -> None:
    from fleetscope.console.archives import ArchiveError, unpack

    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        archive.writestr("../escaped.log", "NVRM: Xid 79")
    with pytest.raises(ArchiveError, match="outside the bundle"):
        unpack(data, "evil.zip", tmp_path / "in")
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as archive:
        link = tarfile.TarInfo("bundle/etc")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc"
        archive.addfile(link)
    data.seek(0)
    with pytest.raises(ArchiveError):
        unpack(data, "evil.tar.gz", tmp_path / "in")
    assert not (tmp_path / "escaped.log").exists()


def test_the_sampler_reads_the_first_look_at_once_and_later_ones_in_the_background(seeded: Seeded) -> None:
    from fleetscope.console.cluster_state import Sampler

    now = [0.0]
    targets = seeded.env["FLEETSCOPE_CONSOLE_TARGETS"].split(",")
    # The console's sampler: reads in a process of its own, which owns the exporter source.
    sampler = Sampler.in_process_of_its_own(
        targets, None, None, 300, refresh_seconds=10, clock=lambda: now[0]
    )
    assert sampler is not None
    first = sampler.latest()
    assert first is not None and first.down == {seeded.dead: first.down[seeded.dead]}
    assert sampler.latest() is first and len(sampler.history) == 1  # fresh: no read
    now[0] = 11.0
    assert sampler.latest() is first  # stale: answered at once with the look in hand ...
    wait_for(lambda: len(sampler.history) == 2)  # ... while the next one is read
    assert sampler.latest() is sampler.history[-1] is not first
    assert len(sampler.series("gpus")) == 2 * (1 + 8)  # two looks at node-01's GPU and node-02's 8


def test_an_incident_link_opens_an_older_incident_and_a_wrong_one_says_so(
    app: AppTest, seeded: Seeded
) -> None:
    app.switch_page("views/incident.py")
    app.query_params["incident"] = seeded.resolved_id
    app.run()
    assert f"Incident {seeded.resolved_id}" in texts(app)
    assert "resolved · first seen" in texts(app)
    app.query_params["incident"] = "0123456789abcdef"
    app.run()
    assert "No incident '0123456789abcdef' in the store." in texts(app)


def test_a_bad_target_is_refused_before_a_reader_starts() -> None:
    from fleetscope.console.cluster_state import Sampler

    with pytest.raises(ValueError, match="not an HTTP address"):
        Sampler.in_process_of_its_own(["node-01=ftp://x:1"], None, None, 300)
    assert Sampler.in_process_of_its_own([], None, None, 300) is None
