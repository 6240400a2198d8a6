"""`forge server start|status|stop`: the long-lived local Prefect server (flows.server)."""

from __future__ import annotations

import json

import typer

from flows.cli.common import user_errors

server_app = typer.Typer(
    help="The local Prefect server forge starts on first use and reuses.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(server_app, name="server")


@server_app.command("start")
@user_errors
def start() -> None:
    """Start the local server now (commands also start it on first use)."""
    from flows.server import ensure_api

    target = ensure_api()
    typer.echo(f"{target.origin}: {target.url}")


@server_app.command("status")
@user_errors
def status() -> None:
    """Print the recorded server: pid, port, health, UI address, log file."""
    from flows.server import configured_api_url, describe

    info = describe()
    configured = configured_api_url()
    if configured:
        info["note"] = f"PREFECT_API_URL={configured} is set: commands report there instead"
    typer.echo(json.dumps(info, indent=1))


@server_app.command("stop")
@user_errors
def stop() -> None:
    """Stop the local server forge started (the database and run history stay)."""
    from flows.server import stop_server

    state = stop_server()
    typer.echo(f"stopped pid {state.pid}" if state else "no forge server recorded")
