"""`forge`: the command line. Each command that does pipeline work runs a Prefect flow.

Sub-command groups live in sibling modules, each with a `register(app)`; flows are
imported inside the commands so `forge sql` stays quick.
"""

from __future__ import annotations

import typer

from flows.cli import clap, core, llm, orchestration, tasks, train

app = typer.Typer(
    name="forge",
    help="Synthetic audio-language datasets: ingest, generate, score, store, train.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

for module in (core, llm, tasks, clap, train, orchestration):
    module.register(app)


def main() -> None:
    app()
