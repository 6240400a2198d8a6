"""`forge view`: the review viewer, a local web app over the warehouse."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer

from flows.cli.common import WarehouseOption, user_errors
from pipeline.errors import ForgeError
from pipeline.storage import Warehouse

LOCALHOST = "127.0.0.1"


def register(app: typer.Typer) -> None:
    app.command("view")(view)


@user_errors
def view(
    host: Annotated[
        str,
        typer.Option(
            help="Address to bind. The default serves this machine only; another "
            "address exposes the viewer (and its review form) to the network."
        ),
    ] = LOCALHOST,
    port: Annotated[int, typer.Option(help="TCP port.")] = 8765,
    reviewer: Annotated[
        str | None, typer.Option(help="Name recorded with your reviews (default: your login).")
    ] = None,
    warehouse: WarehouseOption = None,
) -> None:
    """Browse items, listen to their clips, and accept or reject them (http://HOST:PORT/)."""
    import uvicorn

    from pipeline.viewer.app import create_app

    wh = Warehouse(warehouse)
    if not wh.root.is_dir():
        raise ForgeError(f"no warehouse at {wh.root}: run `forge run` first or pass --warehouse")
    name = reviewer or _login()
    typer.echo(f"review viewer on http://{host}:{port}/ (warehouse {wh.root}, reviewer {name})")
    if host not in (LOCALHOST, "localhost", "::1"):
        typer.secho(
            f"warning: {host} exposes the viewer to the network with no authentication: "
            "anyone who can reach it can read the items and record reviews",
            fg=typer.colors.YELLOW,
            err=True,
        )
    try:
        uvicorn.run(create_app(wh, reviewer=name), host=host, port=port, log_level="warning")
    except OSError as exc:
        raise ForgeError(f"cannot serve on {host}:{port}: {exc}") from exc


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "reviewer"
