"""Prompt and LLM commands: `forge prompts list|render`, `forge llm export-batch|import-batch`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from flows.cli.common import WarehouseOption, user_errors
from pipeline.errors import ForgeError

PromptsOption = Annotated[
    Path | None,
    typer.Option(
        "--prompts", help="Folder of templates that override the project's prompts by name."
    ),
]

prompts_app = typer.Typer(help="Inspect the prompt templates.", no_args_is_help=True)
llm_app = typer.Typer(
    help="OpenAI Batch-API export/import for the LLM cache.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(prompts_app, name="prompts")
    app.add_typer(llm_app, name="llm")


@prompts_app.command("list")
@user_errors
def prompts_list(prompts: PromptsOption = None) -> None:
    """Name, version hash and description of every template."""
    from rich.console import Console
    from rich.table import Table

    from pipeline.llm import PromptLibrary

    library = PromptLibrary.load(prompts)
    table = Table("name", "version", "description")
    for template in library:
        table.add_row(template.name, template.version, template.description)
    Console(width=max(120, Console().width)).print(table)


@prompts_app.command("render")
@user_errors
def prompts_render(
    name: Annotated[str, typer.Argument(help="Template name, e.g. auditorybench/animal.")],
    clip: Annotated[
        list[str],
        typer.Option("--clip", help="clip_id from `clips`; repeat for two-clip prompts."),
    ],
    var: Annotated[
        list[str] | None,
        typer.Option("--var", help="Extra variable NAME=VALUE (VALUE parsed as JSON if it is)."),
    ] = None,
    prompts: PromptsOption = None,
    warehouse: WarehouseOption = None,
) -> None:
    """Print the exact messages a template renders for real clips.

    Variables: the first clip's metadata at top level (title, description, tags,
    captions, qa, ...), `clip`/`clips`, `first`/`second` and `captions1`/`captions2` for
    two clips, plus any --var. Task-specific variables (measured facts, option lists)
    must be given with --var; a missing one is reported by name.
    """
    from pipeline.llm import PromptLibrary
    from pipeline.storage import Warehouse

    template = PromptLibrary.load(prompts).get(name)
    wh = Warehouse(warehouse)
    rows = wh.rows("SELECT * FROM clips WHERE clip_id IN (SELECT unnest(?::VARCHAR[]))", [clip])
    by_id = {row["clip_id"]: row for row in rows}
    missing = [c for c in clip if c not in by_id]
    if missing:
        raise ForgeError(f"clip {missing[0]!r} is not in the clips table of {wh.root}")
    clips = [_clip_variables(by_id[c]) for c in clip]
    variables: dict[str, Any] = {**clips[0], "clip": clips[0], "clips": clips}
    if len(clips) >= 2:
        variables |= {
            "first": clips[0],
            "second": clips[1],
            "captions1": clips[0]["captions"],
            "captions2": clips[1]["captions"],
        }
    for item in var or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--var expects NAME=VALUE, got {item!r}")
        try:
            variables[key] = json.loads(value)
        except json.JSONDecodeError:
            variables[key] = value
    try:
        messages = template.render_messages(variables)
    except ForgeError as exc:
        raise ForgeError(f"{exc} (task-specific variables: --var NAME=VALUE)") from None
    typer.echo(f"# {template.name}  version {template.version}  ({template.path})")
    for message in messages:
        typer.echo(f"--- {message['role']} ---")
        typer.echo(message["content"])


def _clip_variables(row: dict[str, Any]) -> dict[str, Any]:
    """A clip row as template data: lists never None, `extra` parsed from JSON."""
    clip = {k: v for k, v in row.items() if k not in ("run_id", "ingested_at", "audio_root")}
    for key in ("captions", "tags", "qa"):
        clip[key] = list(clip.get(key) or [])
    for key in ("title", "description"):
        clip[key] = clip.get(key) or ""
    try:
        clip["extra"] = json.loads(row.get("extra") or "{}")
    except json.JSONDecodeError:
        clip["extra"] = {}
    return clip


@llm_app.command("export-batch")
@user_errors
def export_batch(
    requests: Annotated[
        Path,
        typer.Option(
            "--requests",
            help="LLMRequest JSONL: one {item_key, prompt, variables, seed} object per line.",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Batch-API JSONL file to write.")],
    model: Annotated[
        str | None, typer.Option("--model", help="Model id (default: $FORGE_LLM_MODEL).")
    ] = None,
    prompts: PromptsOption = None,
    warehouse: WarehouseOption = None,
) -> None:
    """Write the requests not yet answered in `llm_calls` as OpenAI Batch-API JSONL."""
    from pipeline.llm import LLMConfig, PromptLibrary
    from pipeline.llm.batch import export_batch as export
    from pipeline.llm.batch import read_requests_jsonl
    from pipeline.storage import Warehouse, new_run_id

    config = LLMConfig.from_env(backend="openai", model=model)
    summary = export(
        Warehouse(warehouse),
        PromptLibrary.load(prompts),
        config,
        read_requests_jsonl(requests),
        out,
        new_run_id(),
    )
    typer.echo(
        f"{summary.exported} requests written to {summary.path} "
        f"({summary.cached} already answered, {summary.requests} given)"
    )


@llm_app.command("import-batch")
@user_errors
def import_batch(
    file: Annotated[Path, typer.Argument(help="Batch-API results JSONL (output file).")],
    warehouse: WarehouseOption = None,
) -> None:
    """Record Batch-API results in `llm_calls`; the next run uses them without new calls."""
    from pipeline.llm.batch import import_batch as do_import
    from pipeline.storage import Warehouse, new_run_id

    summary = do_import(Warehouse(warehouse), file, new_run_id())
    statuses = ", ".join(f"{k} {v}" for k, v in summary.by_status.items()) or "none"
    typer.echo(
        f"{summary.recorded} results recorded ({statuses}); "
        f"{summary.rejected} lines rejected (see `rejects`)"
    )
