"""fleetscope exporters."""
