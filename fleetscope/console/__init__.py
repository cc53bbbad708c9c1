"""fleetscope console: the ``fleetscope`` command line and the Streamlit app."""
