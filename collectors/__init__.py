"""fleetscope collectors."""
