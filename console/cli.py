"""The ``fleetscope`` command line.

Each sub-command is a thin layer over the package that does the work: ``exporter`` over
:mod:`exporters`, ``investigate`` over :mod:`collectors`, ``lineage`` over :mod:`lineage`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    name="fleetscope",
    help="Observability and lineage for GPU training clusters.",
    no_args_is_help=True,
    add_completion=False,
)


# ---------------------------------------------------------------- exporter: the per-node agent


# ---------------------------------------------------------------- investigate: offline correlation


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
    from lineage.config import LineageConfig

    return LineageConfig.load(config, store_uri=store, **flags)


def _open_lineage(config: Path | None, store: str | None) -> Any:
    from lineage import AuditLog, Lineage, open_store

    cfg = _lineage_config(config, store)
    graph = open_store(cfg.store_uri, user=cfg.user, password=cfg.password)
    return Lineage(graph, AuditLog(cfg.audit_log), cfg.quarantine)


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
    from lineage import LineageError, Link, StoreError

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
    from lineage.server import make_server

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
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        service.close()


@lineage_app.command("queries")
def lineage_queries() -> None:
    """List the audit query pack with parameters."""
    from lineage import QUERIES

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
    import json

    from rich.console import Console
    from rich.table import Table

    from lineage import QUERIES, LineageError, StoreError

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
        table.add_column(column)
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
    from lineage import verify_log

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
    from lineage import AuditLog

    result = AuditLog(log_path or _lineage_config(config, None).audit_log).export(out)
    typer.echo(f"wrote {out}: {result.records} records, head {result.head}, verified {result.ok}")
    if not result.ok:
        raise typer.Exit(1)


def main() -> None:
    """Entry point of the ``fleetscope`` console script."""
    app()


if __name__ == "__main__":
    main()
