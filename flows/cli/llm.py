"""Prompt and LLM commands: `forge prompts list|render`, `forge llm export-batch|import-batch|
batches|cancel-batch`, and the LLM run options of `forge generate` (mode, dry run, budgets)."""

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

ModeOption = Annotated[
    str,
    typer.Option(
        "--mode",
        help="live: chat-completion calls; batch: the OpenAI Batch API (submit, poll, import; "
        "resumable).",
    ),
]
DryRunOption = Annotated[
    bool,
    typer.Option(
        "--dry-run", help="Print requests, cache hits, tokens and cost; send and write nothing."
    ),
]
MaxCostOption = Annotated[
    float | None,
    typer.Option("--max-cost", help="Stop before the run's LLM cost would exceed this."),
]
MaxTokensOption = Annotated[
    int | None,
    typer.Option("--max-tokens", help="Stop before the run's LLM tokens would exceed this."),
]
PricesOption = Annotated[
    Path | None,
    typer.Option(
        "--prices", help="Price table (JSON/YAML, per 1M tokens); default: $FORGE_LLM_PRICES."
    ),
]
MODES = ("live", "batch")


def run_overrides(
    mode: str, max_cost: float | None, max_tokens: int | None, prices: Path | None
) -> dict[str, Any]:
    """LLMConfig fields set by `forge generate`'s LLM run options."""
    if mode not in MODES:
        raise ForgeError(f"--mode {mode!r}: choose one of {', '.join(MODES)}")
    overrides: dict[str, Any] = {"mode": mode}
    if max_cost is not None:
        overrides["max_cost"] = max_cost
    if max_tokens is not None:
        overrides["max_total_tokens"] = max_tokens
    if prices is not None:
        if not prices.is_file():
            raise ForgeError(f"--prices {prices}: no such file")
        overrides["prices_file"] = str(prices.resolve())
    return overrides


def print_dry_run(
    warehouse: str,
    task: str,
    config: Any,
    prompts: Path | None,
    seed: int,
    splits: list[str] | None,
) -> None:
    """`forge generate --dry-run`: the estimate, ending with the one `dry-run:` line."""
    from pipeline.llm.dry_run import dry_run_task
    from pipeline.storage import Warehouse

    estimate = dry_run_task(Warehouse(warehouse), task, config, prompts, seed, splits)
    for line in estimate.lines():
        typer.echo(line)


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
    # The category the categorize step stored (auditorybench prompts use it), newest first.
    categories = {
        row["clip_id"]: row["category"]
        for row in wh.rows(
            "SELECT clip_id, arg_max(category, categorized_at) AS category FROM clip_categories "
            "WHERE status = 'ok' AND list_contains(?, clip_id) GROUP BY clip_id",
            [clip],
        )
    }
    clips = [_clip_variables(by_id[c], categories.get(c)) for c in clip]
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


def _clip_variables(row: dict[str, Any], category: str | None = None) -> dict[str, Any]:
    """A clip row as template data: lists never None, `extra` parsed from JSON, and the
    clip's `category` from `clip_categories` when it has one."""
    clip = {k: v for k, v in row.items() if k not in ("run_id", "ingested_at", "audio_root")}
    if category is not None:
        clip["category"] = category
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
    out: Annotated[Path, typer.Option("--out", help="Batch-API JSONL file to write.")],
    requests: Annotated[
        Path | None,
        typer.Option(
            "--requests",
            help="LLMRequest JSONL: one {item_key, prompt, variables, seed} object per line.",
        ),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option("--task", help="Export the requests this task's generation would send."),
    ] = None,
    seed: Annotated[int, typer.Option(help="With --task: the generation seed.")] = 0,
    model: Annotated[
        str | None, typer.Option("--model", help="Model id (default: $FORGE_LLM_MODEL).")
    ] = None,
    prompts: PromptsOption = None,
    warehouse: WarehouseOption = None,
) -> None:
    """Write the requests not yet answered in `llm_calls` as OpenAI Batch-API JSONL (for the
    Batch API or `vllm run-batch`); `forge llm import-batch` records the results."""
    from pipeline.llm import LLMConfig, PromptLibrary
    from pipeline.llm.batch import export_batch as export
    from pipeline.llm.batch import read_requests_jsonl
    from pipeline.llm.dry_run import task_requests
    from pipeline.storage import Warehouse, new_run_id

    if (requests is None) == (task is None):
        raise ForgeError("export-batch needs exactly one of --requests FILE or --task TASK")
    config = LLMConfig.from_env(backend="openai", model=model)
    wh = Warehouse(warehouse)
    if task is not None:
        chosen = task_requests(wh, task, config, prompts, seed)
    else:
        assert requests is not None
        chosen = read_requests_jsonl(requests)
    summary = export(wh, PromptLibrary.load(prompts), config, chosen, out, new_run_id())
    typer.echo(
        f"{summary.exported} requests written to {summary.path} "
        f"({summary.cached} already answered, {summary.requests} given)"
    )


@llm_app.command("batches")
@user_errors
def batches(warehouse: WarehouseOption = None) -> None:
    """The recorded Batch-API jobs and their latest state."""
    from pipeline.llm.batch_jobs import latest_batches
    from pipeline.storage import Warehouse

    rows = latest_batches(Warehouse(warehouse))
    if not rows:
        typer.echo("no batches recorded")
    for row in rows:
        imported = "imported" if row["imported"] else "not imported"
        typer.echo(
            f"{row['batch_id'] or '-'}\t{row['state']}\t{row['requests']} requests\t"
            f"{imported}\t{row['endpoint']}\t{row['model']}"
        )


@llm_app.command("cancel-batch")
@user_errors
def cancel_batch(
    batch_id: Annotated[
        str | None, typer.Argument(help="Batch id (default: every unfinished recorded batch).")
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Model id (default: $FORGE_LLM_MODEL).")
    ] = None,
    warehouse: WarehouseOption = None,
) -> None:
    """Cancel recorded unfinished batches of the configured endpoint; a polling `forge
    generate --mode batch` then records the partial results and stops."""
    from pipeline.llm import LLMConfig
    from pipeline.llm.batch_jobs import cancel_batches
    from pipeline.storage import Warehouse

    config = LLMConfig.from_env(backend="openai", model=model or "any")
    asked = cancel_batches(Warehouse(warehouse), config, batch_id)
    typer.echo(f"cancel requested for {len(asked)} batches: {', '.join(asked) or 'none'}")


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
