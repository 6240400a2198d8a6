"""`forge`: the command line. Each command that does pipeline work runs a Prefect flow.

Sub-command groups live in sibling modules, each with a `register(app)`; flows are
imported inside the commands so `forge sql` stays quick, and each command checks its
configuration (flows.cli.preflight) before it starts anything. Flows report to the
Prefect API of `PREFECT_API_URL`, else to a long-lived local server (flows.server).
"""

from __future__ import annotations

import os
import sys

import typer

from flows.cli import clap, core, imports, llm, orchestration, server, tasks, train, view
from flows.cli.common import DEBUG_ENV, USAGE_ERRORS, debug_enabled, one_line

app = typer.Typer(
    name="forge",
    help="Synthetic audio-language datasets: ingest, generate, score, store, train.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _options(
    debug: bool = typer.Option(
        False, "--debug", help=f"Show tracebacks instead of one-line errors (or {DEBUG_ENV}=1)."
    ),
) -> None:
    if debug:
        os.environ[DEBUG_ENV] = "1"


for module in (core, llm, tasks, clap, train, imports, orchestration, server, view):
    module.register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point: usage errors are one `error:` line too, and `--debug` works anywhere."""
    args = list(sys.argv[1:] if argv is None else argv)
    end = args.index("--") if "--" in args else len(args)
    if "--debug" in args[:end]:
        args.remove("--debug")
        os.environ[DEBUG_ENV] = "1"
    command = typer.main.get_command(app)
    try:
        code = command.main(args=args, prog_name="forge", standalone_mode=False)
    except USAGE_ERRORS as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `forge` or `forge train` alone
            typer.echo(exc.ctx.get_help())  # type: ignore[attr-defined]
            sys.exit(0)
        if debug_enabled():
            raise
        hint = ""
        ctx = getattr(exc, "ctx", None)
        if ctx is not None:
            hint = f" (see `{ctx.command_path} --help`)"
        typer.secho(f"error: {one_line(exc.format_message())}{hint}", fg="red", err=True)
        sys.exit(exc.exit_code)  # type: ignore[attr-defined]
    except typer.Abort:
        typer.secho("error: aborted", fg="red", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
