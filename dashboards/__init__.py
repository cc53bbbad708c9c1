"""fleetscope dashboards."""
