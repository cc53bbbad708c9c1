# One image for every fleetscope service (exporter, collector, console); docker-compose.yml picks the
# command. The exporter needs the NVIDIA container toolkit on a GPU host for NVML.
FROM python:3.11-slim
WORKDIR /opt/fleetscope
COPY pyproject.toml README.md ./
COPY fleetscope fleetscope
RUN pip install --no-cache-dir ".[lineage,console,kubernetes]"
ENTRYPOINT ["fleetscope"]
