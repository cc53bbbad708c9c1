"""fleetscope dashboards: Grafana provisioning and Prometheus rules, as files.

``provisioning/datasources/prometheus.yml`` gives Grafana (in ``docker-compose.yml``) the Prometheus
data source; ``rules/fleetscope-alerts.yml`` and ``rules/fleetscope-recording.yml`` are Prometheus
alerting and recording rules for the exporter's and collector's metrics (``promtool check rules``).
Nothing here runs inside fleetscope; the package exists so the files ship with it.
"""
