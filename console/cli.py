"""The ``fleetscope`` command line.

Each sub-command is a thin layer over the package that does the work: ``exporter`` over
:mod:`exporters`, ``investigate`` over :mod:`collectors`, ``lineage`` over :mod:`lineage`.
"""

from __future__ import annotations

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


def main() -> None:
    """Entry point of the ``fleetscope`` console script."""
    app()


if __name__ == "__main__":
    main()
