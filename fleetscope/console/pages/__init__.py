"""The console's pages, one Streamlit script each; :mod:`fleetscope.console.app` lists them."""
