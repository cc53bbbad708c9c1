"""Graph store backends behind one contract (see :mod:`lineage.store.base`)."""

from lineage.store.base import GraphStore, ReadOnlyViolation, StoreError, open_store

__all__ = ["GraphStore", "ReadOnlyViolation", "StoreError", "open_store"]
