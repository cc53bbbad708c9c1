"""fleetscope lineage."""
