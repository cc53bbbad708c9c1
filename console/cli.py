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
from enum import StrEnum
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

_EXPORTER_HELP = "\n\n".join(
    [
        "Run the per-node exporter: /metrics (Prometheus text) and /events (kernel-log events, JSON).",
        "Collectors: host (CPU, memory, load, network from /proc and /sys); gpu (NVML: temperatures, "
        "power, energy, utilisation, memory, clocks, throttle reasons, ECC, remapped rows, PCIe replays); "
        'xid (Xid errors and "fallen off the bus" from the kernel log). A collector whose source is '
        "missing (no NVIDIA driver, unreadable /dev/kmsg) reports "
        "fleetscope_scrape_collector_success{collector=...} 0 while the others keep working.",
        "Settings: flags, then FLEETSCOPE_EXPORTER_* environment variables, then the YAML file "
        "(--config), then defaults.",
        "Example: fleetscope exporter --web.listen-address 0.0.0.0:9847 --no-collector.gpu ; "
        "then: curl -s localhost:9847/metrics | grep fleetscope_host",
    ]
)


@app.command("exporter", help=_EXPORTER_HELP, no_args_is_help=False)
def exporter_command(
    listen_address: Annotated[
        str | None,
        typer.Option(
            "--web.listen-address",
            help="HOST:PORT to serve on; :PORT for every interface. (default 127.0.0.1:9847; "
            "env FLEETSCOPE_EXPORTER_LISTEN_ADDRESS)",
            show_default=False,
        ),
    ] = None,
    collector_host: Annotated[
        bool | None,
        typer.Option(
            "--collector.host/--no-collector.host",
            help="CPU, memory, load and network counters. "
            "(default on; env FLEETSCOPE_EXPORTER_COLLECTOR_HOST)",
            show_default=False,
        ),
    ] = None,
    collector_gpu: Annotated[
        bool | None,
        typer.Option(
            "--collector.gpu/--no-collector.gpu",
            help="NVIDIA GPUs through NVML. (default on; env FLEETSCOPE_EXPORTER_COLLECTOR_GPU)",
            show_default=False,
        ),
    ] = None,
    collector_xid: Annotated[
        bool | None,
        typer.Option(
            "--collector.xid/--no-collector.xid",
            help="Xid errors from the kernel log. (default on; env FLEETSCOPE_EXPORTER_COLLECTOR_XID)",
            show_default=False,
        ),
    ] = None,
    path_procfs: Annotated[
        str | None,
        typer.Option(
            "--path.procfs",
            help="procfs mount point (a container with the host's /proc at /host/proc: /host/proc). "
            "(default /proc; env FLEETSCOPE_EXPORTER_PATH_PROCFS)",
            show_default=False,
        ),
    ] = None,
    path_sysfs: Annotated[
        str | None,
        typer.Option(
            "--path.sysfs",
            help="sysfs mount point. (default /sys; env FLEETSCOPE_EXPORTER_PATH_SYSFS)",
            show_default=False,
        ),
    ] = None,
    xid_kernel_log: Annotated[
        str | None,
        typer.Option(
            "--xid.kernel-log",
            metavar="PATH",
            help="Kernel log to watch: /dev/kmsg, 'journal' (journalctl -k), or a file followed like "
            "tail -F (dmesg, syslog, kmsg or journalctl json/export lines). (default /dev/kmsg; "
            "env FLEETSCOPE_EXPORTER_XID_KERNEL_LOG)",
            show_default=False,
        ),
    ] = None,
    gpu_timeout: Annotated[
        float | None,
        typer.Option(
            "--collector.gpu.timeout",
            metavar="SECONDS",
            help="Deadline for one GPU's NVML calls per scrape; a GPU past it is reported "
            "fleetscope_gpu_up 0 and skipped until it answers. (default 2; "
            "env FLEETSCOPE_EXPORTER_GPU_TIMEOUT_SECONDS)",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            metavar="FILE",
            help="YAML file of settings, keyed like the fields above (listen_address, collector_gpu, "
            "path_sysfs, xid_kernel_log, gpu_timeout_seconds, events_buffer_size). "
            "(env FLEETSCOPE_EXPORTER_CONFIG)",
            show_default=False,
        ),
    ] = None,
    log_level: Annotated[str, typer.Option("--log.level", help="debug, info, warning or error.")] = "info",
) -> None:
    import logging
    import os

    from exporters import ConfigError, Exporter, load_config

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    flags = {
        "listen_address": listen_address,
        "collector_host": collector_host,
        "collector_gpu": collector_gpu,
        "collector_xid": collector_xid,
        "path_procfs": path_procfs,
        "path_sysfs": path_sysfs,
        "xid_kernel_log": xid_kernel_log,
        "gpu_timeout_seconds": gpu_timeout,
    }
    try:
        settings = load_config(flags, os.environ, config)
    except ConfigError as exc:
        typer.echo(f"fleetscope exporter: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        exporter = Exporter(settings)
    except OSError as exc:
        typer.echo(f"fleetscope exporter: cannot listen on {settings.listen_address}: {exc}", err=True)
        raise typer.Exit(1) from None
    try:
        exporter.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        exporter.stop()


# ---------------------------------------------------------------- investigate: offline correlation


if app.registered_callback is None:
    # Typer runs a lone command as the whole program (no sub-command name); a callback keeps
    # `fleetscope investigate ...` a sub-command even on a branch where it is the only one.
    @app.callback()
    def _group() -> None:
        """Observability and lineage for GPU training clusters."""


class InvestigateFormat(StrEnum):
    """Output formats of ``fleetscope investigate``."""

    text = "text"
    json = "json"


#: Exit codes of ``fleetscope investigate``.
INVESTIGATE_OK = 0
INVESTIGATE_INTERNAL_ERROR = 1
INVESTIGATE_BAD_PATH = 2
INVESTIGATE_NOTHING_READABLE = 3


@app.command("investigate")
def investigate_command(
    bundle: Annotated[
        Path, typer.Argument(help="Bundle folder: one sub-folder per node, cluster-wide files on top.")
    ],
    output_format: Annotated[
        InvestigateFormat, typer.Option("--format", help="text or json.")
    ] = InvestigateFormat.text,
) -> None:
    """Find the root cause of a GPU-cluster incident in a bundle of collected logs.

    Exit codes: 0 = investigated (incident or not; see "incident" in the output), 1 = internal error,
    2 = usage error or the bundle path is missing / not a folder, 3 = nothing readable in the bundle
    (no files, or only binary ones).
    """
    import json
    import sys

    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from collectors import BundleError, investigate
    from console.investigate_report import render_text

    err = Console(stderr=True)
    try:
        if sys.stderr.isatty():
            with Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=err,
                transient=True,
            ) as bar:
                task = bar.add_task("reading bundle", total=None)
                result = investigate(
                    bundle, progress=lambda done, total: bar.update(task, completed=done, total=total)
                )
        else:
            result = investigate(bundle)
    except BundleError as exc:
        err.print(f"fleetscope investigate: {exc}", highlight=False)
        raise typer.Exit(INVESTIGATE_BAD_PATH) from None
    except Exception as exc:  # the command line must answer with a message, never a traceback
        err.print(f"fleetscope investigate: internal error: {type(exc).__name__}: {exc}", highlight=False)
        raise typer.Exit(INVESTIGATE_INTERNAL_ERROR) from None
    report = result.to_dict()
    if output_format is InvestigateFormat.json:
        typer.echo(json.dumps(report, indent=2))
    else:
        render_text(report, Console())
    if result.files_read == 0:
        err.print(f"fleetscope investigate: nothing readable in {bundle} (no text files)", highlight=False)
        raise typer.Exit(INVESTIGATE_NOTHING_READABLE)


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
    """Watch the cluster and record incidents (the live form of `investigate`).

    Every INTERVAL seconds: gather a window of metrics and kernel-log events from the exporters (or a
    Prometheus-compatible API), investigate it with the same engine as `fleetscope investigate`, and
    record the incident, if any, in the SQLite store the console reads.

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
