"""Reviewed knowledge the detectors rely on, each entry with its source.

Files (YAML, in this package):

* ``xid.yaml`` — NVIDIA's Xid catalogue: ``xids: {N: {name, layer, origin, severity, consequence_of_other,
  action, meaning, source}}``.
* ``ib_wc_status.yaml`` — ``statuses: {code: {name, status_str, meaning, likely_cause, layer, severity,
  consequence_of_other, action, source}}`` (libibverbs ``enum ibv_wc_status``).
* ``cuda_errors.yaml``, ``nccl_errors.yaml``, ``libfabric_errors.yaml`` — error names and messages with
  layer, role and action.
* ``signatures.yaml`` — log message shapes (see its header), loaded as :class:`Signature`.

A missing file loads as empty, so the engine still runs (with less knowledge) from a partial checkout.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

__all__ = ["Signature", "ib_wc_status", "load", "signatures", "xid"]


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


def xid(number: int) -> dict[str, Any] | None:
    """Catalogue entry of one Xid (``xid.yaml``), or ``None`` if NVIDIA does not document it."""
    return load("xid.yaml").get("xids", {}).get(number)


def ib_wc_status(code: int) -> dict[str, Any] | None:
    """Entry of one ``ibv_wc_status`` value (``ib_wc_status.yaml``), or ``None``."""
    return load("ib_wc_status.yaml").get("statuses", {}).get(code)


@dataclass(frozen=True, slots=True)
class Signature:
    """One log message shape from ``signatures.yaml`` (field meanings in that file's header)."""

    id: str
    keywords: tuple[str, ...]
    regex: re.Pattern[str]
    layer: str
    role: str
    severity: str
    weight: float
    summary: str
    action: str
    source: str


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
                layer=raw["layer"],
                role=raw["role"],
                severity=raw["severity"],
                weight=float(raw["weight"]),
                summary=raw["summary"],
                action=raw.get("action", ""),
                source=raw["source"],
            )
        )
    return tuple(out)
