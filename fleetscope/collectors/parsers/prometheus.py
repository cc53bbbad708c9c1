"""Prometheus text exposition: dcgm-exporter (``DCGM_FI_*``), fleetscope (``fleetscope_*``), node_exporter.

Parsed with ``prometheus_client.parser`` (the reference parser), streaming. DCGM's ``gpu`` label is the
NVML index and its ``pci_bus_id`` label the bus id, so every DCGM sample also maps one to the other;
fleetscope's ``fleetscope_gpu_info{gpu,pci_bus_id,uuid}`` does the same. fleetscope's kernel-log series
(``fleetscope_gpu_xid_errors_total{gpu,xid}``) label a GPU NVML could not map by its PCI bus id instead
of an index, so a ``gpu`` label holding a bus id is read as one. Series read back through the PromQL API
come back ``untyped`` under their full sample names; the evidence keeps the name as written either way.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Iterator
from typing import TextIO, cast

from prometheus_client.parser import text_fd_to_metric_families
from prometheus_client.samples import Sample

from fleetscope.collectors.evidence import Evidence
from fleetscope.collectors.parsers.base import DocumentParser, Line
from fleetscope.formats import canonical_bus_id

_SAMPLE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*(?:\{.*\})?\s+[-+0-9.eEnaNIif]+(?:\s+-?\d+)?\s*$")
#: Families kept as evidence; other exporters' series are not used by any detector.
_KEPT = (
    "DCGM_FI_",
    "fleetscope_",
    "node_infiniband_",
    "node_hwmon_",
    "nvidia_smi_",
    "accelerator_nvidia_",
    "node_cpu_seconds_total",
)


class PrometheusParser(DocumentParser):
    """Prometheus/OpenMetrics text."""

    name = "prometheus"

    @classmethod
    def sniff(cls, head: str) -> bool:
        lines = [ln for ln in head.splitlines()[:40] if ln.strip()]
        if not lines:
            return False
        good = sum(1 for ln in lines if ln.startswith(("# HELP ", "# TYPE ")) or _SAMPLE.match(ln))
        return good >= max(1, int(len(lines) * 0.8))

    def parse(self, lines: Iterable[Line]) -> Iterator[Evidence]:
        # The reference parser only iterates over its argument, so a generator of lines keeps it streaming.
        numbers: deque[tuple[int, str]] = deque()
        seen_identity: set[tuple[int, str]] = set()
        try:
            for family in text_fd_to_metric_families(cast(TextIO, _valid_lines(lines, numbers))):
                for sample in family.samples:
                    number, text = numbers.popleft() if numbers else (0, "")
                    if kept(family.name):
                        yield from self._sample(sample, number, text, seen_identity)
        except ValueError:
            # A line the reference parser rejects ends the file's reading; what came before is kept.
            return

    def _sample(
        self, sample: Sample, number: int, text: str, seen: set[tuple[int, str]]
    ) -> Iterator[Evidence]:
        labels = dict(sample.labels)
        # The name as exposed: the client library renames counter samples (adds "_total").
        name = text.split("{", 1)[0].split()[0] if text else sample.name
        node = self.ctx.node or labels.get("Hostname") or labels.get("hostname")
        yield from sample_evidence(
            name, labels, sample.value, node=node, source=f"{self.ctx.rel}:{number}", text=text, seen=seen
        )


def kept(name: str) -> bool:
    """Whether a series of this name can be evidence (the families some detector uses)."""
    return name.startswith(_KEPT)


def sample_evidence(
    name: str,
    labels: dict[str, str],
    value: float,
    *,
    node: str | None,
    source: str,
    text: str,
    seen: set[tuple[int, str]],
) -> Iterator[Evidence]:
    """The evidence one Prometheus sample gives: ``metric``, and ``gpu_identity`` where it maps an index
    to a bus id for the first time. The one mapping from samples to evidence, for a scraped exposition as
    for one read from a bundle file.

    Args:
        name: The sample's name as exposed (``DCGM_FI_DEV_XID_ERRORS``, ``fleetscope_gpu_up``).
        labels: Its labels; ``gpu`` is the NVML index (or a bus id where NVML could not map the GPU),
            ``pci_bus_id``/``PCI_BUS_ID`` the bus id, ``UUID``/``uuid`` the GPU's UUID.
        value: Its value.
        node: The node it belongs to, or None.
        source: Where it was read (``node-01/metrics.prom:12``, a scraped URL).
        text: The sample as written (quoted by findings).
        seen: ``(index, bus id)`` pairs already given as ``gpu_identity``; updated.
    """
    gpu = labels.get("gpu")
    bus = labels.get("pci_bus_id") or labels.get("PCI_BUS_ID")
    gpu_index = int(gpu) if gpu is not None and gpu.isdigit() else None
    bus_id = canonical_bus_id(bus) if bus else None
    if gpu is not None and gpu_index is None and bus_id is None:
        bus_id = canonical_bus_id(gpu)
    quoted = text.strip()[:1000]
    if gpu_index is not None and bus_id and (gpu_index, bus_id) not in seen:
        seen.add((gpu_index, bus_id))
        yield Evidence(
            kind="gpu_identity",
            text=quoted,
            source=source,
            node=node,
            gpu=gpu_index,
            gpu_pci_bus_id=bus_id,
            attrs={"uuid": labels.get("UUID") or labels.get("uuid")},
        )
    yield Evidence(
        kind="metric",
        text=quoted,
        source=source,
        node=node,
        gpu=gpu_index,
        gpu_pci_bus_id=bus_id,
        attrs={"name": name, "value": value, "labels": labels},
    )


def _valid_lines(lines: Iterable[Line], numbers: deque[tuple[int, str]]) -> Iterator[str]:
    """Feed the reference parser the comment and sample lines, noting each sample's line number."""
    for line in lines:
        text = line.text.strip()
        if text.startswith("#"):
            yield text + "\n"
        elif _SAMPLE.match(text):
            numbers.append((line.number, text))
            yield text + "\n"
