"""Prometheus text exposition: dcgm-exporter (``DCGM_FI_*``), fleetscope (``fleetscope_*``), node_exporter.

Parsed with ``prometheus_client.parser`` (the reference parser), streaming. DCGM's ``gpu`` label is the
NVML index and its ``pci_bus_id`` label the bus id, so every DCGM sample also maps one to the other;
fleetscope's ``fleetscope_gpu_info{gpu,pci_bus_id,uuid}`` does the same. fleetscope's kernel-log series
(``fleetscope_gpu_xid_errors_total{gpu,xid}``) label a GPU NVML could not map by its PCI bus id instead
of an index, so a ``gpu`` label holding a bus id is read as one. Series read back through the PromQL API
come back ``untyped`` under their full sample names; the evidence keeps the name as written either way.

Only what is used becomes evidence: a ``metric`` for a sample some detector declares it reads at its
value (:func:`fleetscope.collectors.kinds.series_readers`; some series are read only above zero), a
``gpu_identity`` where such a sample, or one of a series that states GPU identities
(:data:`IDENTITY_SERIES`), maps an index to a bus id for the first time. Samples of the other recognised
families (:func:`kept`) are understood and skipped before any per-sample work: a line of a bundle's file
before the reference parser reads it, a family of a live window before its samples are looked at (and a
zero sample of a series read only above zero, that maps no identity, with no more work than its value).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any, TextIO, cast

from prometheus_client.core import Metric
from prometheus_client.parser import text_fd_to_metric_families
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from fleetscope.collectors.evidence import Evidence
from fleetscope.collectors.kinds import series_readers
from fleetscope.collectors.parsers.base import DocumentParser, Line
from fleetscope.formats import canonical_bus_id

_SAMPLE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*(?:\{.*\})?\s+[-+0-9.eEnaNIif]+(?:\s+-?\d+)?\s*$")
#: Families recognised (understood); other exporters' series are not used by any detector.
_KEPT = (
    "DCGM_FI_",
    "fleetscope_",
    "node_infiniband_",
    "node_hwmon_",
    "nvidia_smi_",
    "accelerator_nvidia_",
    "node_cpu_",
)
#: Series that map GPU indexes to bus ids and UUIDs whether or not a detector reads them: fleetscope's
#: ``_info`` gauge, and every series of dcgm-exporter, nvidia_gpu_exporter and gpud (their GPU labels).
IDENTITY_SERIES = ("fleetscope_gpu_info", "DCGM_FI_", "nvidia_smi_", "accelerator_nvidia_")
#: The sample names a family may hold besides its own (prometheus-client's parser names families without
#: them): counters, histograms, summaries, OpenMetrics gauge histograms and info.
_SAMPLE_SUFFIXES = ("_total", "_created", "_sum", "_count", "_bucket", "_gsum", "_gcount", "_info")
#: What a sample is used for (:func:`sample_use`): nothing, its GPU identity only, a detector reads it
#: where it is above zero (and it may map a GPU identity), a detector reads it whatever its value.
UNUSED, IDENTITY, READ_ABOVE_ZERO, READ = 0, 1, 2, 3


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
        numbers: deque[tuple[int, str, int]] = deque()
        seen_identity: set[tuple[int, str]] = set()
        try:
            for family in text_fd_to_metric_families(cast(TextIO, self._used_lines(lines, numbers))):
                for sample in family.samples:
                    number, text, use = numbers.popleft() if numbers else (0, "", UNUSED)
                    found = self._sample(sample, number, text, use, seen_identity)
                    if not found:
                        self.recognised += 1  # a sample of a read family that gave nothing new
                    yield from found
        except ValueError:
            # A line the reference parser rejects ends the file's reading; what came before is kept.
            return

    def _sample(
        self, sample: Sample, number: int, text: str, use: int, seen: set[tuple[int, str]]
    ) -> list[Evidence]:
        labels = dict(sample.labels)
        # The name as exposed: the client library renames counter samples (adds "_total").
        name = text.split("{", 1)[0].split()[0] if text else sample.name
        node = self.ctx.node or labels.get("Hostname") or labels.get("hostname")
        return sample_evidence(
            name,
            labels,
            sample.value,
            node=node,
            source=f"{self.ctx.rel}:{number}",
            seen=seen,
            text=text,
            metric=_metric(use, sample.value),
        )

    def _used_lines(self, lines: Iterable[Line], numbers: deque[tuple[int, str, int]]) -> Iterator[str]:
        """Feed the reference parser the comment lines and the samples some reader uses, noting each
        sample's line number; count the recognised samples nobody uses as understood."""
        for line in lines:
            text = line.text.strip()
            if text.startswith("#"):
                yield text + "\n"
            elif _SAMPLE.match(text):
                name = text.split("{", 1)[0].split()[0]
                use = sample_use(name)
                if use:
                    numbers.append((line.number, text, use))
                    yield text + "\n"
                elif kept(name):
                    self.recognised += 1


def kept(name: str) -> bool:
    """Whether a series of this name is recognised (a family of an exporter fleetscope reads)."""
    return name.startswith(_KEPT)


@lru_cache(maxsize=65536)
def sample_use(name: str) -> int:
    """What a sample of this name is used for: :data:`READ` (a detector reads its every sample),
    :data:`READ_ABOVE_ZERO` (detectors read only its samples above zero), :data:`IDENTITY` (a series
    that may map a GPU's index to its bus id), or :data:`UNUSED`. Cached: names are few."""
    if not kept(name):
        return UNUSED
    readers = series_readers(name)
    if readers.every:
        return READ
    if readers.above_zero:
        return READ_ABOVE_ZERO
    return _identity(name)


def _identity(name: str) -> int:
    return IDENTITY if name.startswith(IDENTITY_SERIES) else UNUSED


def _metric(use: int, value: float) -> bool:
    """Whether a sample of this use and value is ``metric`` evidence."""
    return use == READ or (use == READ_ABOVE_ZERO and value > 0)


@lru_cache(maxsize=65536)
def family_used(name: str) -> bool:
    """Whether any sample a family of this name may hold (its name, ``_total``, ``_sum`` ...) is used."""
    return any(sample_use(name + suffix) for suffix in ("", *_SAMPLE_SUFFIXES))


def window_evidence(families: Iterable[Metric], *, node: str, rel: str) -> tuple[list[Evidence], int]:
    """The evidence of one node's samples as the live collector hands them over (no text round trip).

    Args:
        families: The node's metric families in the window.
        node: The node.
        rel: Where the samples are said to come from (``node-01/metrics``); a sample's source is
            ``rel:N``, N its 1-based position among all the node's samples.

    Returns:
        ``(evidence, understood)``: what :func:`sample_evidence` makes of the used samples (families no
        reader uses are skipped whole), and how many samples were understood (those of recognised
        families, used or not).
    """
    found: list[Evidence] = []
    seen: set[tuple[int, str]] = set()
    understood = position = 0
    for family in families:
        samples = family.samples
        start = position
        position += len(samples)
        if not kept(family.name):
            continue
        understood += len(samples)
        if not family_used(family.name):
            continue
        last, use = "", UNUSED
        for i, s in enumerate(samples, start + 1):
            if s.name != last:  # a family's samples mostly share one name
                last, use = s.name, sample_use(s.name)
            if use == READ_ABOVE_ZERO and not s.value > 0:
                if _identity(s.name) == UNUSED:
                    continue  # at this value nobody reads it: no per-sample work
            elif not use:
                continue
            found += sample_evidence(
                s.name,
                s.labels,
                s.value,
                node=node,
                source=f"{rel}:{i}",
                seen=seen,
                metric=_metric(use, s.value),
            )
    return found, understood


def sample_line(name: str, labels: dict[str, str], value: float) -> str:
    """One sample as prometheus-client's writer puts it in an exposition (labels escaped, Go floats)."""
    if not labels:
        return f"{name} {floatToGoString(value)}"
    pairs = ",".join(
        '{}="{}"'.format(k, v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\""))
        for k, v in labels.items()
    )
    return f"{name}{{{pairs}}} {floatToGoString(value)}"


#: The slot that holds :attr:`Evidence.text`.
_TEXT = Evidence.__dict__["text"]


class SampleEvidence(Evidence):
    """Evidence from a sample handed over without its text: its exposition line (:func:`sample_line`) is
    written when something first reads :attr:`text` (a finding that quotes it), not for every sample."""

    __slots__ = ("_sample",)

    def __init__(
        self,
        sample: tuple[str, dict[str, str], float],
        kind: str,
        source: str,
        node: str | None,
        gpu: int | None,
        gpu_pci_bus_id: str | None,
        attrs: dict[str, Any],
    ) -> None:
        # Every field but the text, which the first read of :attr:`text` writes.
        self._sample: tuple[str, dict[str, str], float] | None = sample
        self.kind = kind
        self.source = source
        self.node = node
        self.time = None
        self.time_raw = None
        self.gpu = gpu
        self.gpu_pci_bus_id = gpu_pci_bus_id
        self.layer = None
        self.severity = "info"
        self.attrs = attrs

    @property
    def text(self) -> str:
        if self._sample is not None:
            _TEXT.__set__(self, sample_line(*self._sample)[:1000])
            self._sample = None
        line: str = _TEXT.__get__(self)
        return line

    @text.setter
    def text(self, value: str) -> None:
        _TEXT.__set__(self, value)
        self._sample = None


def sample_evidence(
    name: str,
    labels: dict[str, str],
    value: float,
    *,
    node: str | None,
    source: str,
    seen: set[tuple[int, str]],
    text: str | None = None,
    metric: bool = True,
) -> list[Evidence]:
    """The evidence one Prometheus sample gives: ``metric`` (where ``metric``), and ``gpu_identity`` where
    it maps an index to a bus id for the first time. The one mapping from samples to evidence, for a
    scraped exposition as for one read from a bundle file.

    Args:
        name: The sample's name as exposed (``DCGM_FI_DEV_XID_ERRORS``, ``fleetscope_gpu_up``).
        labels: Its labels; ``gpu`` is the NVML index (or a bus id where NVML could not map the GPU),
            ``pci_bus_id``/``PCI_BUS_ID`` the bus id, ``UUID``/``uuid`` the GPU's UUID.
        value: Its value.
        node: The node it belongs to, or None.
        source: Where it was read (``node-01/metrics.prom:12``, a scraped URL).
        seen: ``(index, bus id)`` pairs already given as ``gpu_identity``; updated.
        text: The sample as written (quoted by findings); None: written from the sample when quoted.
        metric: Whether to give its ``metric`` evidence (some detector reads it), or only its identity.

    Returns:
        The evidence, ``gpu_identity`` first; the types match :mod:`fleetscope.collectors.kinds`' entries by
        construction (``tests/collectors/test_kinds.py`` checks it), so callers need not check each item.
    """
    gpu = labels.get("gpu")
    bus = labels.get("pci_bus_id") or labels.get("PCI_BUS_ID")
    gpu_index = int(gpu) if gpu is not None and gpu.isdigit() else None
    bus_id = canonical_bus_id(bus) if bus else None
    if gpu is not None and gpu_index is None and bus_id is None:
        bus_id = canonical_bus_id(gpu)
    sample = (name, labels, value)
    found: list[Evidence] = []
    if gpu_index is not None and bus_id and (gpu_index, bus_id) not in seen:
        seen.add((gpu_index, bus_id))
        uuid = {"uuid": labels.get("UUID") or labels.get("uuid")}
        found.append(_evidence(sample, text, "gpu_identity", source, node, gpu_index, bus_id, uuid))
    if metric:
        attrs = {"name": name, "value": value, "labels": labels}
        found.append(_evidence(sample, text, "metric", source, node, gpu_index, bus_id, attrs))
    return found


def _evidence(
    sample: tuple[str, dict[str, str], float],
    text: str | None,
    kind: str,
    source: str,
    node: str | None,
    gpu: int | None,
    bus_id: str | None,
    attrs: dict[str, Any],
) -> Evidence:
    if text is None:
        return SampleEvidence(sample, kind, source, node, gpu, bus_id, attrs)
    return Evidence(kind, text.strip()[:1000], source, node, gpu=gpu, gpu_pci_bus_id=bus_id, attrs=attrs)
