"""Alertmanager-format webhook notifications on incident changes, to a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from fleetscope.collectors.alerting import WebhookSender, notification
from fleetscope.collectors.incidents import IncidentStore
from fleetscope.collectors.live import ExporterSource, LiveCollector
from tests.collectors.test_incidents import _report
from tests.exporters.support import KERNEL_LOGS, running_exporter, wait_for
from tests.servers import free_port


class _Receiver:
    """A webhook receiver: keeps every JSON body; answers with the next status in ``answers`` (then 200)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.answers: list[int] = []
        self.url = ""


@contextmanager
def receiver() -> Iterator[_Receiver]:
    state = _Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status = state.answers.pop(0) if state.answers else 200
            if status == 200:
                state.bodies.append(body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def test_open_and_resolve_are_sent_in_alertmanager_webhook_format(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.db")
    t0 = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    registry = CollectorRegistry()
    with receiver() as hook:
        sender = WebhookSender([hook.url], external_url="http://console:8501", registry=registry)
        opened = store.record(_report("node-01", 1), now=t0)
        updated = store.record(_report("node-01", 1), now=t0 + timedelta(minutes=1))
        assert opened is not None and updated is not None
        sender.send([opened, updated])  # an update is no notification
        sender.send(store.resolve_quiet(timedelta(minutes=5), now=t0 + timedelta(minutes=7)))

    firing, resolved = hook.bodies
    key = opened.incident.fingerprint
    assert firing["version"] == "4" and firing["status"] == "firing"
    assert firing["groupKey"] == f'{{}}:{{incident="{key}"}}'
    (alert,) = firing["alerts"]
    assert alert["labels"] == {
        "alertname": "FleetscopeIncident",
        "severity": "critical",
        "incident": key,
        "layer": "gpu_hardware",
        "node": "node-01",
        "gpu": "1",
    }
    assert alert["annotations"] == {
        "summary": "GPU 1 on node-01 fell off the bus (Xid 79)",
        "action": "drain the node",
    }
    assert alert["startsAt"] == "2026-03-04T05:06:07.000000Z"
    assert alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert alert["generatorURL"] == firing["externalURL"] == "http://console:8501"
    assert resolved["status"] == resolved["alerts"][0]["status"] == "resolved"
    assert resolved["alerts"][0]["endsAt"] == "2026-03-04T05:13:07.000000Z"
    assert registry.get_sample_value("fleetscope_collector_alerts_sent_total") == 2


def test_a_failing_receiver_keeps_its_notifications_for_the_next_cycle_in_order(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.db")
    registry = CollectorRegistry()
    with receiver() as hook:
        hook.answers = [503]
        sender = WebhookSender([hook.url], registry=registry)
        first = store.record(_report("node-01", 1))
        assert first is not None
        sender.send([first])
        assert (hook.bodies, sender.queued()) == ([], 1)
        second = store.record(_report("node-02", 2))
        assert second is not None
        sender.send([second])
    assert [body["alerts"][0]["labels"]["node"] for body in hook.bodies] == ["node-01", "node-02"]
    assert sender.queued() == 0
    assert registry.get_sample_value("fleetscope_collector_alert_send_failures_total") == 1


def test_a_refused_notification_is_dropped_and_an_unreachable_receiver_holds_up_no_other(
    tmp_path: Path,
) -> None:
    store = IncidentStore(tmp_path / "incidents.db")
    registry = CollectorRegistry()
    dead = f"http://127.0.0.1:{free_port()}/hook"
    with receiver() as hook:
        hook.answers = [400]
        sender = WebhookSender([dead, hook.url], timeout=2, registry=registry)
        first = store.record(_report("node-01", 1))
        second = store.record(_report("node-02", 2))
        assert first is not None and second is not None
        sender.send([first, second])
    assert [body["alerts"][0]["labels"]["node"] for body in hook.bodies] == ["node-02"]
    assert registry.get_sample_value("fleetscope_collector_alerts_refused_total") == 1
    assert sender.queued() == 2  # both wait for the unreachable receiver


def test_bad_urls_and_updates_are_refused() -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        WebhookSender(["ftp://example/hook"])
    store = IncidentStore(":memory:")
    store.record(_report("node-01", 1))
    update = store.record(_report("node-01", 1))
    assert update is not None
    with pytest.raises(ValueError, match="updated is not notified"):
        notification(update)


def test_the_live_collector_notifies_an_incident_it_opens(tmp_path: Path) -> None:
    kernel_log = tmp_path / "kern.log"
    kernel_log.write_text("")
    with running_exporter(kernel_log) as exporter, receiver() as hook:
        registry = CollectorRegistry()
        collector = LiveCollector(
            [ExporterSource([f"127.0.0.1:{exporter.port}"])],
            IncidentStore(tmp_path / "incidents.db"),
            tmp_path / "window",
            registry=registry,
            alerts=WebhookSender([hook.url], registry=registry),
        )
        collector.run_once()
        assert hook.bodies == []
        fallen = (KERNEL_LOGS / "fallen-off-bus-multiline.dmesg.log").read_text()
        kernel_log.write_text(fallen)
        wait_for(lambda: collector.run_once()["incident"] is True)
        collector.run_once()
    (body,) = hook.bodies
    assert body["status"] == "firing" and body["alerts"][0]["labels"]["node"] == "127.0.0.1"
    assert registry.get_sample_value("fleetscope_collector_incident_changes_total", {"change": "opened"}) == 1
    assert registry.get_sample_value("fleetscope_collector_incidents_open") == 1
