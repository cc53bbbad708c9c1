"""fleetscope collectors: the correlation engine shared by the live service and ``fleetscope investigate``.

Public entry points: :func:`investigate` (a bundle folder in, an :class:`Investigation` out), the evidence
model (:class:`Evidence`, :class:`Finding`, :data:`LAYERS`) and :class:`BundleError`; the incident store
(:class:`IncidentStore`, :class:`Incident`); the live collector (:class:`LiveCollector` with its
:class:`ExporterSource` and :class:`PromQLSource`).
"""

from __future__ import annotations

from fleetscope.collectors.bundle import BundleError
from fleetscope.collectors.evidence import LAYERS, Evidence, Finding
from fleetscope.collectors.incidents import Incident, IncidentStore
from fleetscope.collectors.investigate import Investigation, investigate
from fleetscope.collectors.live import (
    CollectionError,
    ExporterSource,
    LiveCollector,
    PromQLSource,
    SourceError,
)

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
