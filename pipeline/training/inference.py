"""Using a saved AudioBERT: score an AuditoryBench CSV, or fill the [MASK] of one sentence.

Both run span detector → `"{span} sound"` through the CLAP text tower → nearest clip in
the warehouse's clip embeddings → inject → fill the mask, with the task's own model. A CSV
carries gold spans, so it is scored under the published protocol (inject at the gold span,
audio retrieved by the detected span) and end to end (inject at the detected span).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipeline.errors import ForgeError, MissingArtifactError
from pipeline.storage import Warehouse
from pipeline.training.artifacts import (
    SavedModel,
    latest_model_dir,
    load_clap_scorer,
    load_saved_model,
)
from pipeline.training.card import ROW_LABELS
from pipeline.training.config import TaskName
from pipeline.training.data import (
    MASK,
    Example,
    SkipCounter,
    encode_examples,
)
from pipeline.training.evaluation import (
    END_TO_END,
    PUBLISHED_PROTOCOL,
    evaluate_variants,
    predict_masks,
)
from pipeline.training.inputs import pipeline_plans, published_plans
from pipeline.training.published import read_auditorybench_csv
from pipeline.training.retrieval import RetrievalIndex, load_index
from pipeline.training.span_detector import predict_token_labels, span_metrics


class CsvEvaluation(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    csv: str
    task: str
    model_dir: str
    rows: int
    evaluated: int
    skipped: dict[str, int] = Field(default_factory=dict)
    accuracy: dict[str, float] = Field(default_factory=dict)  # variant → %
    correct: dict[str, int] = Field(default_factory=dict)
    span_detector: dict[str, float] = Field(default_factory=dict)
    clap_is_random: bool = False
    backbone_comparable_with_paper: bool = True

    def lines(self) -> list[str]:
        out = [
            f"{self.csv} ({self.task}): {self.evaluated} of {self.rows} rows evaluated "
            f"with {self.model_dir}"
        ]
        out += [
            f"  {name:<19} {self.accuracy[name]:6.2f} %  ({self.correct[name]}/{self.evaluated})"
            f"  {ROW_LABELS.get(name, '')}"
            for name in self.accuracy
        ]
        if not self.backbone_comparable_with_paper:
            out.append(
                "  backbone_zero_shot: the backbone had no pretrained masked-LM head (one was "
                "added), so this row is not comparable with the paper's BERT rows"
            )
        if self.span_detector:
            out.append(
                f"  span detector token F1 {self.span_detector['token_f1']:.3f}, "
                f"span F1 {self.span_detector['span_f1']:.3f}"
            )
        if self.skipped:
            out.append(f"  skipped rows: {self.skipped}")
        if self.clap_is_random:
            out.append(
                "  audio embeddings from a randomly initialised CLAP: no real audio knowledge"
            )
        return out


class Prediction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sentence: str
    task: str
    answer: str
    text_only_answer: str
    spans: list[str]
    clip_ids: list[str]
    scores: list[float]


def open_index(warehouse: Warehouse, saved: SavedModel, scorer: Any) -> RetrievalIndex:
    index = load_index(warehouse, scorer)
    if not len(index):
        raise MissingArtifactError(
            "retrieval index clips",
            f"clip_embeddings for {scorer.backend}:{scorer.checkpoint_id} in {warehouse.root}",
            "use the warehouse the model was trained on (--warehouse)",
        )
    expected = int(saved.meta["audio_dim"])
    if index.audio_dim != expected:
        raise ForgeError(
            f"clip embeddings are {index.audio_dim}-d but the model expects "
            f"{expected}-d: CLAP checkpoint differs from the training run"
        )
    return index


def _open(
    warehouse: Warehouse, model_dir: Path | str | None, scorer: Any | None
) -> tuple[SavedModel, Any, RetrievalIndex]:
    saved = load_saved_model(model_dir or latest_model_dir(warehouse.root))
    scorer = scorer or load_clap_scorer(saved.config.clap)
    trained_with = saved.meta["retrieval_index"]["checkpoint_id"]
    if scorer.checkpoint_id != trained_with:
        raise ForgeError(
            f"CLAP checkpoint {scorer.checkpoint_id} differs from the one the model was trained "
            f"with ({trained_with}); set FORGE_CLAP_CHECKPOINT accordingly"
        )
    return saved, scorer, open_index(warehouse, saved, scorer)


def evaluate_csv(
    warehouse: Warehouse,
    csv_path: Path | str,
    model_dir: Path | str | None = None,
    max_rows: int | None = None,
    scorer: Any | None = None,
    batch_size: int = 64,
) -> CsvEvaluation:
    """Accuracy of the task's AudioBERT (published protocol, end to end), the same model
    without audio, and the backbone on one CSV."""
    saved, scorer, index = _open(warehouse, model_dir, scorer)
    skipped = SkipCounter()
    task, examples = read_auditorybench_csv(csv_path, skipped)
    rows = len(examples) + sum(skipped.values())
    if max_rows is not None:
        examples = examples[:max_rows]
    if task not in saved.config.tasks:
        raise ForgeError(f"{csv_path}: the model was not trained on {task}")
    model = saved.model_for(task)
    tokenizer, device = saved.tokenizer, saved.device
    encoded = encode_examples(tokenizer, examples, saved.config.max_length, skipped)
    pad_id = tokenizer.pad_token_id
    labels = predict_token_labels(saved.detector, encoded, pad_id, device, batch_size)
    variants = {
        PUBLISHED_PROTOCOL: published_plans(encoded, labels, index, scorer),
        END_TO_END: pipeline_plans(encoded, labels, index, scorer),
    }
    results = evaluate_variants(model, variants, tokenizer, device, batch_size)
    # CSV spans that are not verbatim in the sentence cannot be scored token by token.
    located = [
        (example, predicted)
        for example, predicted in zip(encoded, labels, strict=True)
        if any(r is not None for r in example.span_ranges)
    ]
    return CsvEvaluation(
        csv=str(csv_path),
        task=task,
        model_dir=str(saved.directory),
        rows=rows,
        evaluated=len(encoded),
        skipped=dict(skipped),
        accuracy={name: r["accuracy"] for name, r in results.items()},
        correct={name: int(r["correct"]) for name, r in results.items()},
        span_detector=span_metrics([e for e, _ in located], [p for _, p in located])
        if located
        else {},
        clap_is_random=bool(saved.meta["clap"]["is_random"]),
        backbone_comparable_with_paper=not saved.meta.get("mlm_head_added", False),
    )


def guess_task(sentence: str) -> TaskName:
    lowered = sentence.lower()
    return "auditorybench-pitch" if "pitch" in lowered else "auditorybench-animal"


def predict(
    warehouse: Warehouse,
    sentence: str,
    model_dir: Path | str | None = None,
    task: TaskName | None = None,
    scorer: Any | None = None,
) -> Prediction:
    """Fill the [MASK]s of one sentence (animal: write one [MASK] per expected word piece)."""
    if MASK not in sentence:
        raise ForgeError(f"the sentence has no {MASK}: {sentence!r}")
    saved, scorer, index = _open(warehouse, model_dir, scorer)
    task = task or guess_task(sentence)
    tokenizer = saved.tokenizer
    n_masks = sentence.count(MASK)
    # The answer is unknown: a placeholder with as many pieces as the sentence has masks
    # keeps the sentence as written (no mask expansion) and is never scored.
    placeholder = "higher" if task == "auditorybench-pitch" else " ".join([MASK] * n_masks)
    example = Example("predict", task, "predict", sentence, placeholder, [])
    encoded = encode_examples(tokenizer, [example], saved.config.max_length, expand_masks=False)
    if not encoded:
        raise ForgeError(f"the sentence's {MASK} does not fit in {saved.config.max_length} tokens")
    device = saved.device
    labels = predict_token_labels(saved.detector, encoded, tokenizer.pad_token_id, device)
    plan = pipeline_plans(encoded, labels, index, scorer)[0]
    model = saved.model_for(task)
    with_audio = predict_masks(model, [plan], tokenizer, device, inject=True)[0]
    text_only = predict_masks(model, [plan], tokenizer, device, inject=False)[0]
    return Prediction(
        sentence=sentence,
        task=task,
        answer=with_audio.predicted,
        text_only_answer=text_only.predicted,
        spans=plan.spans,
        clip_ids=plan.clip_ids,
        scores=plan.scores,
    )
