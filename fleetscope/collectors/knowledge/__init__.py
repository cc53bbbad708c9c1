"""Reviewed knowledge the detectors rely on, each entry with its source.

Files (YAML, in this package):

* ``xid.yaml`` — NVIDIA's Xid catalogue: ``xids: {N: {name, layer, origin, severity, consequence_of_other,
  action, meaning, source}}``.
* ``ib_wc_status.yaml`` — ``statuses: {code: {name, status_str, meaning, likely_cause, layer, severity,
  consequence_of_other, action, source}}`` (libibverbs ``enum ibv_wc_status``).
* ``cuda_errors.yaml``, ``nccl_errors.yaml``, ``libfabric_errors.yaml`` — error names and messages with
  layer, role and action.
* ``signatures.yaml`` — log message shapes (see its header), loaded as :class:`Signature`.
* ``scoring.yaml`` — weights, thresholds and confidence rules of detectors and correlator, and default
  texts (actions by layer), each with its reason (:func:`scoring`, :func:`scoring_text`).

A missing file loads as empty, so the engine still runs (with less knowledge) from a partial checkout.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

__all__ = [
    "CUDA_ERROR_KEYWORDS",
    "Signature",
    "cuda_errors",
    "ib_wc_status",
    "libfabric_error",
    "libfabric_message",
    "load",
    "nccl_messages",
    "nccl_result",
    "scoring",
    "scoring_list",
    "scoring_text",
    "signatures",
    "xid",
]

#: Words that mark a line as a CUDA error report; CUDA's messages ("unknown error", "out of memory") are
#: too generic to be matched on any other line.
CUDA_ERROR_KEYWORDS = (
    "CUDA error",
    "CUDA_ERROR_",
    "cudaError",
    "Cuda failure",
    "CUDA failure",
    "CUDA driver version",
    "CUDA-capable",
    "NVIDIA driver on your system",
    # PyTorch's lazy-init warning, the legacy THC/cutorch report and tools' init failures.
    "CUDA initialization",
    "cuda runtime error",
    "initialize CUDA",
    "init CUDA",
)


@cache
def load(name: str) -> dict[str, Any]:
    """Load one knowledge file.

    Args:
        name: File name in this package, e.g. ``"xid.yaml"``.

    Returns:
        The parsed mapping, or ``{}`` if the file is absent.

    Raises:
        yaml.YAMLError: The file exists but is not valid YAML.
    """
    path = resources.files(__package__).joinpath(name)
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


@cache
@cache
def scoring(name: str) -> float:
    """One weight or threshold of ``scoring.yaml`` (cached per name, as the file is: detectors read
    thresholds inside their loops over a cluster's GPUs and ranks).

    Args:
        name: ``"section.entry"``, e.g. ``"correlator.max_confidence"``.

    Returns:
        Its ``value``.

    Raises:
        KeyError: no such entry (a programming error: every name used in the code has an entry).
    """
    section, _, entry = name.partition(".")
    return float(load("scoring.yaml")[section][entry]["value"])


def scoring_list(name: str) -> list[Any]:
    """One list-valued entry of ``scoring.yaml`` (metrics in priority order, counter limits): its ``value``.

    Raises:
        KeyError: no such entry.
    """
    section, _, entry = name.partition(".")
    return list(load("scoring.yaml")[section][entry]["value"])


def scoring_text(name: str) -> str:
    """One default text of ``scoring.yaml`` (an action by layer ...): ``"section.entry"``'s ``text``.

    Raises:
        KeyError: no such entry.
    """
    section, _, entry = name.partition(".")
    return str(load("scoring.yaml")[section][entry]["text"])


def xid(number: int) -> dict[str, Any] | None:
    """Catalogue entry of one Xid (``xid.yaml``), or ``None`` if NVIDIA does not document it."""
    return load("xid.yaml").get("xids", {}).get(number)


def ib_wc_status(code: int) -> dict[str, Any] | None:
    """Entry of one ``ibv_wc_status`` value (``ib_wc_status.yaml``), or ``None``."""
    return load("ib_wc_status.yaml").get("statuses", {}).get(code)


def cuda_errors() -> list[dict[str, Any]]:
    """CUDA runtime/driver errors (``cuda_errors.yaml``): name, driver_name, messages, layer, role, action."""
    return list(load("cuda_errors.yaml").get("errors", []))


def nccl_result(name: str) -> dict[str, Any] | None:
    """Entry of one ``ncclResult_t`` by name (``nccl_errors.yaml``), or ``None``."""
    for entry in load("nccl_errors.yaml").get("results", {}).values():
        if entry.get("name") == name:
            return dict(entry)
    return None


@cache
def nccl_messages() -> tuple[tuple[re.Pattern[str], dict[str, Any]], ...]:
    """NCCL WARN message shapes (``nccl_errors.yaml`` ``messages``), compiled, with their entries."""
    return tuple((re.compile(m["pattern"]), m) for m in load("nccl_errors.yaml").get("messages", []))


def libfabric_error(table: str, code: int) -> dict[str, Any] | None:
    """Entry of a libfabric error (``libfabric_errors.yaml``).

    Args:
        table: ``"fi_errno"`` (libfabric's ``FI_E*``) or ``"efa_prov_errno"`` (the EFA provider's codes).
        code: The error number.
    """
    return load("libfabric_errors.yaml").get(table, {}).get(code)


@cache
def _libfabric_messages() -> tuple[tuple[re.Pattern[str], dict[str, Any]], ...]:
    return tuple((re.compile(m["pattern"]), m) for m in load("libfabric_errors.yaml").get("messages", []))


def libfabric_message(line: str, error: str = "") -> dict[str, Any] | None:
    """The ``libfabric_errors.yaml`` entry that explains a libfabric/aws-ofi-nccl failure line.

    Args:
        line: The log line.
        error: The ``fi_strerror()`` text the line quotes, if any (``"No data available"``).

    Returns:
        The first ``messages`` entry whose pattern matches ``line``, else the ``fi_errno`` entry whose
        text is ``error``, else ``None``.
    """
    for pattern, entry in _libfabric_messages():
        if pattern.search(line):
            return entry
    codes = load("libfabric_errors.yaml").get("fi_errno", {}).values()
    return next((e for e in codes if error and e.get("text") == error), None)


@dataclass(frozen=True, slots=True)
class Signature:
    """One log message shape from ``signatures.yaml`` (field meanings in that file's header)."""

    id: str
    keywords: tuple[str, ...]
    regex: re.Pattern[str]
    layer: str | None
    role: str
    severity: str
    weight: float
    summary: str
    action: str
    source: str
    unless: re.Pattern[str] | None = None
    scope: str = "node"


@cache
def signatures() -> tuple[Signature, ...]:
    """All log signatures, compiled.

    Raises:
        re.error: A signature's regex does not compile (a bug in the reviewed file).
    """
    out = []
    for raw in load("signatures.yaml").get("signatures", []):
        out.append(
            Signature(
                id=raw["id"],
                keywords=tuple(raw["keywords"]),
                regex=re.compile(raw["regex"]),
                layer=raw.get("layer"),
                role=raw["role"],
                severity=raw["severity"],
                weight=float(raw["weight"]),
                summary=raw["summary"],
                action=raw.get("action", ""),
                source=raw["source"],
                unless=re.compile(raw["unless"]) if raw.get("unless") else None,
                scope=raw.get("scope", "node"),
            )
        )
    return tuple(out)
