"""`forge import auditorybench --csv FILE [--split SPLIT]`: the published AuditoryBench CSVs
as a warehouse dataset (version `published-auditorybench`), ready for `forge train audiobert`.

A plain, quick warehouse write (no model, no network), so it runs without a Prefect server.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from flows.cli.common import WarehouseOption, user_errors
from pipeline.storage import Warehouse


class Split(StrEnum):
    train = "train"
    dev = "dev"
    test = "test"
    wiki = "wiki"


def register(app: typer.Typer) -> None:
    import_app = typer.Typer(
        help="Import published datasets into the warehouse.", no_args_is_help=True
    )
    import_app.command("auditorybench")(auditorybench)
    app.add_typer(import_app, name="import")


@user_errors
def auditorybench(
    csv: Annotated[
        list[Path],
        typer.Option("--csv", help="Published AuditoryBench CSV (animal or pitch); repeatable."),
    ],
    split: Annotated[
        Split | None,
        typer.Option("--split", help="Split of every --csv (default: from each file name)."),
    ] = None,
    warehouse: WarehouseOption = None,
) -> None:
    """Import published AuditoryBench CSVs with their splits; unusable rows go to `rejects`."""
    from pipeline.storage import new_run_id
    from pipeline.training.published import import_published_csv

    wh = Warehouse(warehouse)
    run_id = new_run_id()
    for path in csv:
        summary = import_published_csv(wh, path, split.value if split else None, run_id)
        typer.echo(summary.line())
