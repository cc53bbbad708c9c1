"""fleetscope collectors: the correlation engine shared by the live service and ``fleetscope investigate``.

Public entry points: :func:`investigate` (a bundle folder in, an :class:`Investigation` out), the evidence
model (:class:`Evidence`, :class:`Finding`, :data:`LAYERS`) and :class:`BundleError`; the incident store
(:class:`IncidentStore`, :class:`Incident`); the live collector (:class:`LiveCollector` with its
:class:`ExporterSource` and :class:`PromQLSource`).
"""

from __future__ import annotations

from collectors.bundle import BundleError
from collectors.evidence import LAYERS, Evidence, Finding
from collectors.incidents import Incident, IncidentStore
from collectors.investigate import Investigation, investigate
from collectors.live import CollectionError, ExporterSource, LiveCollector, PromQLSource, SourceError

__all__ = [
    "LAYERS",
    "BundleError",
    "CollectionError",
    "Evidence",
    "ExporterSource",
    "Finding",
    "Incident",
    "IncidentStore",
    "Investigation",
    "LiveCollector",
    "PromQLSource",
    "SourceError",
    "investigate",
]
