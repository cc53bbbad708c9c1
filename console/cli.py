"""The ``fleetscope`` command line.

Each sub-command is a thin layer over the package that does the work: ``exporter`` over
:mod:`exporters`, ``investigate`` over :mod:`collectors`, ``lineage`` over :mod:`lineage`.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="fleetscope",
    help="Observability and lineage for GPU training clusters.",
    no_args_is_help=True,
    add_completion=False,
)


# ---------------------------------------------------------------- exporter: the per-node agent


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


def main() -> None:
    """Entry point of the ``fleetscope`` console script."""
    app()


if __name__ == "__main__":
    main()
