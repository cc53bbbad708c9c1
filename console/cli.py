"""The ``fleetscope`` command line.

Each sub-command is a thin layer over the package that does the work: ``exporter`` over
:mod:`exporters`, ``investigate`` over :mod:`collectors`, ``lineage`` over :mod:`lineage`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from prometheus_client import start_http_server

app = typer.Typer(
    name="fleetscope",
    help="Observability and lineage for GPU training clusters.",
    no_args_is_help=True,
    add_completion=False,
)


# ---------------------------------------------------------------- exporter: the per-node agent


# ---------------------------------------------------------------- investigate: offline correlation


# ---------------------------------------------------------------- lineage: the graph and audit queries


# ---------------------------------------------------------------- collect and console: the live service


@app.command()
def collect(
    target: Annotated[
        list[str] | None,
        typer.Option("--target", "-t", help="Exporter address (host:port or URL); repeat for each node."),
    ] = None,
    prometheus_url: Annotated[
        str | None,
        typer.Option(
            help="Read series from this Prometheus-compatible API instead of (or as well as) "
            "scraping exporters, e.g. http://prometheus:9090."
        ),
    ] = None,
    store: Annotated[
        Path | None,
        typer.Option(
            help="SQLite incident store [env FLEETSCOPE_INCIDENT_STORE; default "
            "~/.local/share/fleetscope/incidents.db]."
        ),
    ] = None,
    interval: Annotated[float, typer.Option(help="Seconds between cycles.", min=1.0)] = 30.0,
    once: Annotated[bool, typer.Option(help="Run one cycle, print its report as JSON and exit.")] = False,
    listen: Annotated[
        str, typer.Option("--web.listen-address", help="Where the collector serves its own /metrics.")
    ] = "127.0.0.1:9836",
) -> None:
    """Watch the cluster: every INTERVAL seconds gather a window of metrics and kernel-log events,
    investigate it with the same engine as `fleetscope investigate`, and record incidents.

    Example: fleetscope collect -t node-01:9835 -t node-02:9835
    """
    from collectors.incidents import IncidentStore
    from collectors.live import ExporterSource, LiveCollector, PromQLSource, Source
    from console.settings import ConsoleSettings

    sources: list[Source] = []
    if target:
        sources.append(ExporterSource(target))
    if prometheus_url:
        sources.append(PromQLSource(prometheus_url))
    if not sources:
        raise typer.BadParameter("give at least one --target or a --prometheus-url")
    store_path = store or ConsoleSettings().incident_store
    collector = LiveCollector(sources, IncidentStore(store_path), store_path.parent / "window")
    if once:
        typer.echo(json.dumps(collector.run_once(), indent=2, default=str))
        return
    host, _, port = listen.rpartition(":")
    start_http_server(int(port), addr=host or "127.0.0.1", registry=collector.registry)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        collector.run_forever(interval)


@app.command()
def console(
    address: Annotated[str, typer.Option(help="Address the web app listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port the web app listens on.")] = 8501,
    store: Annotated[
        Path | None,
        typer.Option(help="SQLite incident store the collector writes [env FLEETSCOPE_INCIDENT_STORE]."),
    ] = None,
) -> None:
    """Open the on-call console (a Streamlit web app) at http://ADDRESS:PORT."""
    from console import settings

    env = dict(os.environ)
    if store:
        env[settings.ENV_INCIDENT_STORE] = str(store)
    app_file = Path(__file__).with_name("app.py")
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app_file),
        "--server.address",
        address,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
    ]
    raise typer.Exit(subprocess.call(command, env=env))


def main() -> None:
    """Entry point of the ``fleetscope`` console script."""
    app()


if __name__ == "__main__":
    main()
