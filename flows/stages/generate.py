"""Generate stage: one Prefect task per dataset task (`pipeline.tasks.generate_task`).

A task's LLM calls are batched and run concurrently by the engine inside that one Prefect
task (the engine's own semaphore, cache and incremental `llm_calls` writes), so there is
never one Prefect task per item. Every generate task holds slots of the global
concurrency limit `llm:<endpoint host>` while it runs, so concurrent flow runs that use
the same endpoint share its budget; the limit is created (with the engine's concurrency)
when absent. Network failures are retried by Prefect on top of the engine's own
per-request retries; requests that already succeeded come from the `llm_calls` cache.

A failed generation never becomes current: the version is made current by its completion
manifest, written last (pipeline.tasks.common.completion), and a run whose endpoint
refuses it (unreachable, 401/403, unknown model, or more than `max_failed_share` of its
calls failed) raises before writing anything. Such errors are not retried by Prefect
(retrying cannot fix a wrong URL or key, and the user should hear at once), and the stage
fails with one line naming the endpoint, the cause and that the current items are
unchanged. A cached result is reused only while its manifest exists and it left no failed
calls; otherwise the task runs again and the engine resends only the calls not yet `ok`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from prefect import flow, get_run_logger, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectNotFound
from pydantic import BaseModel, ConfigDict, Field

from flows.runs import current_run_id, endpoint_host
from flows.stages.artifacts import StageReport, publish, summary_row
from flows.stages.cache import (
    cached_summary,
    code_fingerprint,
    files_fingerprint,
    key_from_parameter,
    results_dir,
    stage_key,
    tables_fingerprint,
)
from pipeline.config import default_prompts_dir
from pipeline.errors import ForgeError, LLMEndpointError
from pipeline.llm import LLMConfig
from pipeline.storage import Warehouse
from pipeline.tasks import GenerateSummary, generate_task

# Code whose change changes items. Tables generate reads but does not write itself.
GENERATE_CODE = ("pipeline/tasks", "pipeline/llm", "pipeline/audio")
GENERATE_READS = ("clips",)  # not clip_pitch/clip_categories: generate writes those itself


class GenerateSettings(BaseModel):
    """How the generate stage runs (the LLM itself is described by LLMConfig)."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    prompts_dir: str | None = Field(
        default=None, description="Folder of templates that override the default ones by name."
    )
    splits: list[str] | None = Field(default=None, description="Only these splits (None: all).")
    retries: int = Field(default=2, ge=0, description="Prefect retries of a failed LLM task.")
    retry_delay_s: float = Field(default=10.0, ge=0)
    max_failed_share: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="Fail the task (nothing becomes current) when more than this share of "
        "the LLM calls behind its items got no answer from the endpoint.",
    )


def llm_limit_name(config: LLMConfig) -> str | None:
    """`llm:<host[:port]>` for an HTTP endpoint; None for the offline backend."""
    if config.backend == "offline":
        return None
    return f"llm:{endpoint_host(config.base_url) or 'api.openai.com'}"


def ensure_concurrency_limit(name: str, limit: int) -> int:
    """Create the global concurrency limit `name` unless it exists (its limit is then kept:
    an operator may have tuned it); returns the limit in force."""
    with get_client(sync_client=True) as client:
        try:
            return client.read_global_concurrency_limit_by_name(name).limit
        except ObjectNotFound:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=name, limit=limit, active=True)
            )
            return limit


@contextlib.contextmanager
def endpoint_slots(config: LLMConfig, slots: int) -> Iterator[None]:
    """Hold `slots` of the endpoint's limit (the engine's concurrency, capped by the limit)."""
    name = llm_limit_name(config)
    if name is None:
        yield
        return
    with concurrency(name, occupy=slots, strict=True):
        yield


def retry_worthwhile(task: object, task_run: object, state: object) -> bool:
    """Prefect `retry_condition_fn`: retry transient failures only. An error the user must
    fix (a ForgeError: endpoint refusing the run, bad configuration, bad input) fails at
    once; the engine's exhausted failure budget is retried (its causes are often brief)."""
    from pipeline.llm.engine import LLMFailureBudgetExceeded

    exc = state.result(raise_on_failure=False)  # type: ignore[attr-defined]
    return not isinstance(exc, ForgeError) or isinstance(exc, LLMFailureBudgetExceeded)


@task(
    name="generate-task",
    cache_key_fn=key_from_parameter,
    persist_result=True,
    retry_condition_fn=retry_worthwhile,
)
def generate_one(
    warehouse: str,
    task_id: str,
    llm_config: LLMConfig,
    settings: GenerateSettings,
    run_id: str,
    slots: int,
    cache_key: str,
) -> GenerateSummary:
    with endpoint_slots(llm_config, slots):
        summary = generate_task(
            Warehouse(warehouse),
            task_id,
            llm_config,
            run_id,
            prompts_override=settings.prompts_dir,
            seed=settings.seed,
            splits=settings.splits,
            max_failed_share=settings.max_failed_share,
        )
    get_run_logger().info(
        "%s: %d valid, %d rejected %s",
        task_id,
        summary.valid,
        summary.rejected,
        summary.rejected_by_reason,
    )
    return summary


def generate_key(
    warehouse: Warehouse, task_id: str, llm_config: LLMConfig, settings: GenerateSettings
) -> str:
    prompt_dirs = [default_prompts_dir()]
    if settings.prompts_dir:
        prompt_dirs.append(settings.prompts_dir)
    return stage_key(
        "generate",
        warehouse,
        task=task_id,
        llm=llm_config.model_dump(mode="json"),
        seed=settings.seed,
        splits=settings.splits,
        reads=tables_fingerprint(warehouse, GENERATE_READS),
        prompts=files_fingerprint(prompt_dirs),
        code=code_fingerprint(*GENERATE_CODE),
    )


@flow(name="stage-generate")
def generate_stage(
    warehouse: str,
    run_id: str | None,
    tasks: list[str],
    llm_config: LLMConfig,
    settings: GenerateSettings | None = None,
) -> StageReport:
    """Generate every task in `tasks`; tasks run one after another (the engine is already
    concurrent inside each), and a failing task fails the stage after the others finished.
    `run_id` None: this flow run's id (`forge generate` runs the stage on its own)."""
    wh = Warehouse(warehouse)
    run_id = run_id or current_run_id()
    settings = settings or GenerateSettings()
    name = llm_limit_name(llm_config)
    slots = llm_config.concurrency
    if name is not None:
        slots = min(slots, ensure_concurrency_limit(name, llm_config.concurrency))
    runner = generate_one.with_options(
        result_storage=results_dir(wh),
        retries=settings.retries,
        retry_delay_seconds=settings.retry_delay_s,
    )
    summaries: list[GenerateSummary] = []
    failures: list[tuple[str, BaseException]] = []
    for task_id in tasks:
        key = generate_key(wh, task_id, llm_config, settings)
        run = runner.with_options(refresh_cache=True) if must_rerun(wh, key) else runner
        state = run(
            str(wh.root), task_id, llm_config, settings, run_id, slots, key, return_state=True
        )
        if state.is_completed():
            summaries.append(state.result())
        else:
            failures.append((task_id, _exception(state)))
    report = StageReport(
        stage="generate",
        rows=[summary_row(s, stage="generate") for s in summaries],
        counts={
            "valid": sum(s.valid for s in summaries),
            "rejected": sum(s.rejected for s in summaries),
            "generation_versions": {s.task: s.generation_version for s in summaries},
        },
    )
    report.summaries = summaries
    report.markdown = "\n".join(
        f"- **{s.task}** version `{s.generation_version}`: {s.valid} valid, {s.rejected} "
        f"rejected; valid by split {s.valid_by_split}; rejected by reason {s.rejected_by_reason}"
        for s in summaries
    )
    publish(report, f"Items generated per task (LLM: {llm_config.model}).")
    if failures:
        raise StageFailed("; ".join(failure_line(t, e) for t, e in failures)) from failures[0][1]
    return report


def must_rerun(warehouse: Warehouse, cache_key: str) -> bool:
    """Whether the result cached under `cache_key` must not be reused: its completion
    manifest is gone (data deleted), it predates manifests, it left failed LLM calls, or
    another version became current since (asking again for this one makes it current;
    its LLM calls come from `llm_calls`, so that costs no request)."""
    from pipeline.tasks.common.completion import has_manifest

    cached = cached_summary(warehouse, cache_key)
    if not isinstance(cached, GenerateSummary):
        return False  # nothing cached: the task runs anyway
    if getattr(cached, "failed_calls", 0):
        return True
    if not cached.items:
        return False
    if not has_manifest(warehouse, getattr(cached, "completion", None)):
        return True
    current = warehouse.rows(
        "SELECT DISTINCT generation_version FROM items_current WHERE task = ?", [cached.task]
    )
    return cached.generation_version not in {row["generation_version"] for row in current}


def failure_line(task_id: str, exc: BaseException) -> str:
    """One line for one failed task, ending with what it means for the user's data."""
    if isinstance(exc, LLMEndpointError):
        cause = str(exc)
    else:
        first = (str(exc).strip().splitlines() or [""])[0]
        cause = f"generate {task_id} failed ({type(exc).__name__}: {first})"
    return f"{cause}; the current {task_id} items are unchanged"


class StageFailed(ForgeError):
    """Some units of a stage failed; the others' results are written and cached. A
    ForgeError: the `forge` commands print it as one line naming the units and causes."""


def _exception(state: object) -> BaseException:
    try:
        state.result()  # type: ignore[attr-defined]
    except BaseException as exc:
        return exc
    return RuntimeError(f"task ended in state {state}")
