"""Typed parameters of the orchestration flows (build, regenerate): the deployment forms.

Each is a pydantic model with unknown keys refused, so a mistyped deployment parameter is
an error, not a silently ignored setting. The LLM API key is never a parameter: it is read
from the environment when the HTTP client is created.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from flows.runners import RunnerConfig
from flows.stages.generate import GenerateSettings
from flows.stages.ingest import SourceInput
from flows.stages.publish import ExportSettings

STAGES = ("ingest", "pitch", "generate", "embeddings", "score", "filter", "export", "report")


class LLMParams(BaseModel):
    """Which LLM: offline rules, or an OpenAI-compatible endpoint (vLLM, Ollama, OpenAI).
    Unset fields fall back to OPENAI_BASE_URL / FORGE_LLM_MODEL (see pipeline.llm.config)."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["offline", "openai"] | None = None
    model: str | None = None
    base_url: str | None = None
    concurrency: int | None = Field(default=None, ge=1)
    max_failures: int | None = Field(default=None, ge=1)
    refusal_limit: int | None = Field(
        default=None, ge=1, description="Refusal-class failures in a row that stop the run."
    )
    max_failed_share: float | None = Field(
        default=None, ge=0, le=1, description="Failed share of calls that stops the run."
    )
    timeout_s: float | None = Field(default=None, gt=0)
    max_retries: int | None = Field(default=None, ge=0)
    backoff_base_s: float | None = Field(default=None, ge=0)

    @field_validator("base_url")
    @classmethod
    def _no_credentials(cls, url: str | None) -> str | None:
        # Prefect stores flow parameters (and `runs.parameters` keeps them): a password here
        # would be kept in both. The full URL belongs in $OPENAI_BASE_URL on the worker.
        if url and urlsplit(url).password is not None:
            raise ValueError(
                "llm.base_url must not carry credentials (user:password@): parameters are "
                "stored; give the bare URL here and the full one in $OPENAI_BASE_URL"
            )
        return url

    def config(self):  # -> pipeline.llm.LLMConfig (imported lazily: keeps this module light)
        from pipeline.llm import LLMConfig

        overrides = self.model_dump(exclude={"backend", "model"}, exclude_none=True)
        return LLMConfig.from_env(backend=self.backend, model=self.model, **overrides)


class ClapParams(BaseModel):
    """Which CLAP scores the items. Unset: FORGE_CLAP_BACKEND / FORGE_CLAP_CHECKPOINT;
    none configured: items are marked `unscored` (with that reason) and the build goes on."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["laion", "hf"] | None = None
    checkpoint: str | None = None
    batch_size: int | None = Field(default=None, ge=1)
    device: Literal["auto", "cuda", "cpu"] | None = None

    def config(self):  # -> pipeline.clap.ClapConfig | None
        from pipeline.clap import ClapConfig

        overrides = self.model_dump(exclude_none=True)
        return ClapConfig.from_env(**overrides)


class FilterParams(BaseModel):
    """The CLAP filter policy (see pipeline.clap.filter); None: the library's default."""

    model_config = ConfigDict(extra="forbid")

    policy: str | None = None
    params: dict[str, float | int | str] = Field(default_factory=dict)


class TrainParams(BaseModel):
    """Training launched at the end of `build` (the `train` flow)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    config: str | None = Field(
        default=None, description="Training config file (YAML/JSON); None: the library default."
    )
    samples: bool = Field(
        default=False,
        description="Use the small sample-data config (tiny random CLAP, labelled as such).",
    )
    deployment: str = Field(
        default="train/default",
        description="Deployment triggered with run_deployment when the server has it; "
        "otherwise the train flow runs as a subflow.",
    )


class BuildParams(BaseModel):
    """Everything `build` can be asked to do. The defaults build the embedded samples."""

    model_config = ConfigDict(extra="forbid")

    warehouse: str | None = Field(
        default=None, description="Warehouse root (default: $FORGE_WAREHOUSE or ./warehouse)."
    )
    sources: list[SourceInput] | None = Field(
        default=None, description="Corpora to ingest; None: the embedded sample corpora."
    )
    tasks: list[str] | None = Field(
        default=None, description="Dataset tasks to generate; None: every registered task."
    )
    stages: list[str] = Field(
        default_factory=lambda: list(STAGES),
        description=f"Stages to run, in pipeline order; any of {', '.join(STAGES)}.",
    )
    llm: LLMParams = Field(default_factory=LLMParams)
    generate: GenerateSettings = Field(default_factory=GenerateSettings)
    clap: ClapParams = Field(default_factory=ClapParams)
    filter: FilterParams = Field(default_factory=FilterParams)
    export: ExportSettings = Field(default_factory=ExportSettings)
    runner: RunnerConfig = Field(default_factory=RunnerConfig)
    train: TrainParams = Field(default_factory=TrainParams)


class RegenerateParams(BaseModel):
    """Regenerate one task (optionally one split) with new prompt templates."""

    model_config = ConfigDict(extra="forbid")

    task: str
    prompts_dir: str = Field(description="Folder of templates overriding the defaults by name.")
    split: str | None = None
    warehouse: str | None = None
    seed: int = 0
    llm: LLMParams = Field(default_factory=LLMParams)
    clap: ClapParams = Field(default_factory=ClapParams)
    filter: FilterParams = Field(default_factory=FilterParams)
    runner: RunnerConfig = Field(default_factory=RunnerConfig)
    retries: int = Field(default=2, ge=0)
