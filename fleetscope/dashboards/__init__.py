"""fleetscope dashboards: Grafana provisioning as files.

``provisioning/datasources/prometheus.yml`` gives Grafana (in ``docker-compose.yml``) the Prometheus
data source. Nothing here runs inside fleetscope; the package exists so the files ship with it.
"""
