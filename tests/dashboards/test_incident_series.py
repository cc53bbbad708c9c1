"""The series the dashboards draw incidents from: one per open incident, gone once it resolves."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry

from fleetscope.collectors.incidents import IncidentStore
from fleetscope.collectors.live import ExporterSource, LiveCollector
from tests.exporters.support import KERNEL_LOGS, running_exporter, wait_for

SERIES = "fleetscope_collector_open_incident_info"


def _open_series(registry: CollectorRegistry) -> list[dict[str, str]]:
    return [
        sample.labels
        for family in registry.collect()
        for sample in family.samples
        if sample.name == SERIES and sample.value == 1
    ]


def test_an_open_incident_is_one_series_until_it_resolves(tmp_path: Path) -> None:
    kernel_log = tmp_path / "kern.log"
    kernel_log.write_text("")
    with running_exporter(kernel_log) as exporter:
        registry = CollectorRegistry()
        store = IncidentStore(tmp_path / "incidents.db")
        collector = LiveCollector(
            [ExporterSource([f"127.0.0.1:{exporter.port}"], window=timedelta(seconds=3))],
            store,
            tmp_path / "window",
            registry=registry,
            resolve_after=timedelta(seconds=1),
        )
        collector.run_once()
        assert _open_series(registry) == []
        kernel_log.write_text((KERNEL_LOGS / "fallen-off-bus-multiline.dmesg.log").read_text())
        wait_for(lambda: collector.run_once()["incident"] is True)
        [incident] = store.recent(state="open")
        assert _open_series(registry) == [
            {
                "fingerprint": incident.fingerprint,
                "layer": incident.layer or "",
                "node": "127.0.0.1",
                "gpu": "" if incident.gpu is None else str(incident.gpu),
            }
        ]
        time.sleep(4)  # the kernel-log lines leave the 3 s window; the fault is quiet past 1 s
        wait_for(lambda: collector.run_once() is not None and not store.recent(state="open"), timeout=20)
    assert _open_series(registry) == []
    assert registry.get_sample_value("fleetscope_collector_incidents_open") == 0
