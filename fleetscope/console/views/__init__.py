"""The console's pages, one Streamlit script each; :mod:`fleetscope.console.app` lists them. (Not named
``pages``: Streamlit would run a ``pages/`` folder beside the app script as pages of its own, without the
app script's page list and layout.)"""
