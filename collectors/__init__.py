"""fleetscope collectors: the correlation engine shared by the live service and ``fleetscope investigate``.

Public entry points: :func:`investigate` (a bundle folder in, an :class:`Investigation` out), the evidence
model (:class:`Evidence`, :class:`Finding`, :data:`LAYERS`) and :class:`BundleError`.
"""

from __future__ import annotations

from collectors.bundle import BundleError
from collectors.evidence import LAYERS, Evidence, Finding
from collectors.investigate import Investigation, investigate

__all__ = ["LAYERS", "BundleError", "Evidence", "Finding", "Investigation", "investigate"]
