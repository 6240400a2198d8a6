"""Record model of the `models` table (warehouse/tables/models.sql) and the run summary."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class ModelRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    run_id: str
    dataset_run_id: str | None
    model_dir: str
    backbone: str
    mlm_head_added: bool
    backbone_comparable_with_paper: bool
    tasks: list[str]
    model_per_task: bool
    train_audio: str
    clap_backend: str | None
    clap_checkpoint: str | None
    clap_is_random: bool
    config_fingerprint: str
    data_fingerprint: str
    data_version: str | None
    train_items: int
    dev_items: int
    test_items: int
    animal_published_protocol_acc: float | None = None
    pitch_published_protocol_acc: float | None = None
    animal_end_to_end_acc: float | None = None
    pitch_end_to_end_acc: float | None = None
    animal_text_only_acc: float | None = None
    pitch_text_only_acc: float | None = None
    animal_backbone_zero_shot_acc: float | None = None
    pitch_backbone_zero_shot_acc: float | None = None
    span_token_f1: float | None = None
    retrieval_recall_at_1: float | None = None
    best_epoch: int | None = None
    metrics: str
    created_at: datetime


class TrainSummary(BaseModel):
    """What `train_audiobert` returns to a flow: counts and headline numbers."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    run_id: str
    model_dir: str
    backbone: str
    clap_checkpoint: str | None
    clap_is_random: bool
    items: dict[str, int] = Field(default_factory=dict)  # "<task>/<split>" → usable items
    skipped: dict[str, int] = Field(default_factory=dict)  # reason → count
    test_accuracy: dict[str, dict[str, float]] = Field(default_factory=dict)  # task → variant → %
    resumed: bool = False
    reused: bool = Field(
        False, description="Data and config equal an earlier run's: its model was reused."
    )
    seconds: float = 0.0

    def lines(self) -> list[str]:
        if self.reused:
            out = [
                f"model {self.run_id} reused: same items, CLAP and config "
                f"(nothing trained; --retrain to train again): {self.model_dir}"
            ]
        else:
            out = [f"model {self.run_id}: {self.model_dir}"]
        for task, variants in self.test_accuracy.items():
            shown = ", ".join(f"{name} {value:.2f}" for name, value in variants.items())
            out.append(f"  {task} test accuracy %: {shown}")
        if self.clap_is_random:
            out.append(
                "  audio embeddings from a randomly initialised CLAP: no real audio knowledge"
            )
        return out
