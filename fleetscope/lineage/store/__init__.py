"""Graph store backends behind one contract (see :mod:`fleetscope.lineage.store.base`)."""

from fleetscope.lineage.store.base import (
    GraphStore,
    ReadOnlyViolation,
    StoreError,
    StoreUnavailable,
    open_store,
)

__all__ = ["GraphStore", "ReadOnlyViolation", "StoreError", "StoreUnavailable", "open_store"]
