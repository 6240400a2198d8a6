"""Filter decisions from stored CLAP scores (`clap_scores` → `item_filters`).

Scores are never recomputed here: a new policy is a new pass over the stored scores, and
every pass appends its decisions (the `items` view shows the latest per item).

Generic policies judge an item by its *item score*: the lowest score among its primary
roles (its own generated text; see `pipeline.clap.score`):

* `absolute`   — kept iff item score ≥ `threshold`.
* `relative`   — kept iff, for every primary role, score − (score of the clip's own
  caption/label text) ≥ `margin` (AudioSetCaps: a generated text must match the audio at
  least as well as the original label; margin 0).
* `percentile` — kept iff item score ≥ the `percentile`-th percentile of the task's item
  scores (drops the bottom `percentile` %).
* `topk`       — CLAP re-rank: among items built on the same clip(s), keep the `k` best.

`task-rule` (the default) applies each task's own check:

* auditorybench-animal — zero-shot agreement: the answer animal ranks within the top `k`
  (default 5) of the shipped animal vocabulary for the clip (prompt "This is a sound of
  <animal>.").
* auditorybench-pitch — each span scores ≥ `threshold` on its own clip and higher on its
  own clip than on the other clip of the pair.
* reasonaqa — MCQ: the correct option outscores every distractor on the clip. Other
  subtasks have no CLAP rule and stay `unscored` with that reason.
* nlar — the event's presence claims agree with CLAP: where the annotations say present,
  the event scores ≥ `threshold` on that clip; where absent, below it; unknown presence
  is not checked.

Thresholds are cosine similarities and depend on the checkpoint (DESIGN §4: peers use
~0.45 for LAION's 630k checkpoints, 0.3–0.4 for other CLAPs); the default 0.3 is the
permissive end. Items without scores are `unscored` with the reason.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline.clap.config import NOT_CONFIGURED, ClapConfig
from pipeline.clap.score import current_items, option_letter, reason_code
from pipeline.errors import ForgeError
from pipeline.storage import Warehouse
from pipeline.storage.warehouse import utc_now

PolicyKind = Literal["absolute", "relative", "percentile", "topk", "task-rule"]
POLICY_KINDS: tuple[str, ...] = ("absolute", "relative", "percentile", "topk", "task-rule")
DEFAULT_THRESHOLD = 0.3
NO_SCORES = "no CLAP scores for this item: run `forge score --task {task}`"


class FilterPolicy(BaseModel):
    """A policy and its parameters; stored as `item_filters.policy` + `policy_params`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: PolicyKind = "task-rule"
    threshold: float = Field(default=DEFAULT_THRESHOLD, ge=-1.0, le=1.0)
    margin: float = 0.0
    percentile: float = Field(default=20.0, ge=0.0, le=100.0)
    k: int = Field(default=5, ge=1)

    @property
    def name(self) -> str:
        return self.kind

    def params(self) -> dict[str, Any]:
        """Only the parameters this policy uses."""
        used = {
            "absolute": ("threshold",),
            "relative": ("margin",),
            "percentile": ("percentile",),
            "topk": ("k",),
            "task-rule": ("threshold", "k"),
        }[self.kind]
        return {name: getattr(self, name) for name in used}


def make_policy(name: str | None = None, **params: Any) -> FilterPolicy:
    """`make_policy('absolute', threshold=0.4)`; None gives the default (task-rule)."""
    if name is not None and name not in POLICY_KINDS:
        raise ForgeError(
            f"unknown CLAP filter policy {name!r}; choose one of {', '.join(POLICY_KINDS)}"
        )
    try:
        return FilterPolicy(kind=name or "task-rule", **params)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ForgeError(f"CLAP filter policy {name!r}: {exc}") from exc


class FilterSummary(BaseModel):
    task: str
    policy: str
    policy_params: dict[str, Any]
    backend: str | None
    checkpoint: str | None
    run_id: str
    items: int = 0
    kept: int = 0
    dropped: int = 0
    unscored: int = 0
    unscored_by_reason: dict[str, int] = Field(default_factory=dict)


@dataclass
class ItemScores:
    item: dict[str, Any]
    scores: dict[str, float | None] = field(default_factory=dict)
    clips: dict[str, str | None] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    primary: list[str] = field(default_factory=list)

    def unscored_reason(self, roles: list[str]) -> str | None:
        for role in roles:
            if role not in self.scores:
                return f"no score for {role}"
            if self.scores[role] is None:
                return self.reasons.get(role) or f"no score for {role}"
        return None

    def item_score(self) -> tuple[float | None, str | None]:
        if "none" in self.scores:
            return None, self.reasons.get("none") or "nothing to score"
        if not self.primary:
            return None, "no generated text of this item was scored"
        why = self.unscored_reason(self.primary)
        if why:
            return None, why
        return min(self.scores[r] for r in self.primary), None  # type: ignore[type-var]


Decision = tuple[str, str]  # (filter_status, filter_reason)


def _fmt(value: float) -> str:
    return f"{value:.3f}"


def _absolute(s: ItemScores, policy: FilterPolicy) -> Decision:
    score, why = s.item_score()
    if score is None:
        return "unscored", str(why)
    if score >= policy.threshold:
        return "kept", f"score {_fmt(score)} >= threshold {_fmt(policy.threshold)}"
    return "dropped", f"score {_fmt(score)} < threshold {_fmt(policy.threshold)}"


def _relative(s: ItemScores, policy: FilterPolicy) -> Decision:
    _, why = s.item_score()
    if why:
        return "unscored", why
    worst: tuple[float, str] | None = None
    for role in s.primary:
        clip = s.clips[role]
        caption_role = next(
            (r for r, c in s.clips.items() if r.startswith("caption") and c == clip), None
        )
        if caption_role is None or s.scores.get(caption_role) is None:
            return "unscored", s.reasons.get(caption_role or "", "no caption score for the clip")
        delta = s.scores[role] - s.scores[caption_role]  # type: ignore[operator]
        if worst is None or delta < worst[0]:
            worst = (delta, role)
    assert worst is not None
    delta, role = worst
    verdict = "kept" if delta >= policy.margin else "dropped"
    sign = ">=" if verdict == "kept" else "<"
    return verdict, f"{role} minus caption {_fmt(delta)} {sign} margin {_fmt(policy.margin)}"


def _animal_rule(s: ItemScores, policy: FilterPolicy) -> Decision:
    answer = (s.item.get("answer") or "").strip().lower()
    vocab = {r.split(":", 1)[1]: v for r, v in s.scores.items() if r.startswith("vocab:")}
    if not vocab:
        return "unscored", s.reasons.get("none", "no vocabulary scores for this item")
    if any(v is None for v in vocab.values()):
        return "unscored", s.unscored_reason([f"vocab:{a}" for a in vocab]) or "unscored"
    if answer not in vocab:
        return "unscored", f"answer {answer!r} is not in the animal vocabulary"
    mine = vocab[answer]
    rank = 1 + sum(1 for a, v in vocab.items() if a != answer and v > mine)  # type: ignore[operator]
    verdict = "kept" if rank <= policy.k else "dropped"
    return verdict, f"answer {answer!r} ranks {rank} of {len(vocab)} (top-{policy.k} required)"


def _pitch_rule(s: ItemScores, policy: FilterPolicy) -> Decision:
    roles = ["span1", "span2", "span1_other", "span2_other"]
    why = s.unscored_reason(roles) if "none" not in s.scores else s.reasons.get("none")
    if why:
        return "unscored", why
    sc = s.scores
    for own, other in (("span1", "span1_other"), ("span2", "span2_other")):
        if sc[own] < policy.threshold:  # type: ignore[operator]
            return "dropped", f"{own} {_fmt(sc[own])} < threshold {_fmt(policy.threshold)}"  # type: ignore[arg-type]
        if sc[own] <= sc[other]:  # type: ignore[operator]
            return (
                "dropped",
                f"{own} scores {_fmt(sc[own])} on its own clip <= {_fmt(sc[other])} on the other",
            )  # type: ignore[arg-type]
    return "kept", (
        f"spans {_fmt(sc['span1'])}, {_fmt(sc['span2'])} >= threshold {_fmt(policy.threshold)} "
        "and higher on their own clips"
    )


def _mcq_rule(s: ItemScores, policy: FilterPolicy) -> Decision:
    options = {r: v for r, v in s.scores.items() if r.startswith("option_")}
    if not options:
        return "unscored", s.reasons.get("none") or (
            f"no CLAP task rule for reasonaqa subtask {s.item.get('subtask')!r} (the rule "
            "checks MCQ; use the absolute or relative policy for its scores)"
        )
    correct = f"option_{option_letter(s.item.get('answer') or '')}"
    if correct not in options:
        return "unscored", "the answer is not one of the options"
    why = s.unscored_reason(list(options))
    if why:
        return "unscored", why
    best_other = max((v, r) for r, v in options.items() if r != correct)  # type: ignore[type-var]
    if options[correct] > best_other[0]:  # type: ignore[operator]
        return (
            "kept",
            f"correct {correct} {_fmt(options[correct])} > every distractor (best {_fmt(best_other[0])})",
        )  # type: ignore[arg-type]
    return (
        "dropped",
        f"correct {correct} {_fmt(options[correct])} <= distractor {best_other[1]} {_fmt(best_other[0])}",
    )  # type: ignore[arg-type]


def _nlar_rule(s: ItemScores, policy: FilterPolicy) -> Decision:
    if "none" in s.scores:
        return "unscored", s.reasons.get("none", "nothing to score")
    try:
        evidence = (json.loads(s.item.get("facts") or "{}") or {}).get("evidence") or {}
    except json.JSONDecodeError:
        return "unscored", "item facts are not valid JSON"
    checked = 0
    for position in ("first", "second"):
        present = (evidence.get(position) or {}).get("present")
        role = f"event_{position}"
        if present is None:
            continue
        why = s.unscored_reason([role])
        if why:
            return "unscored", why
        score = s.scores[role]
        checked += 1
        heard = score >= policy.threshold  # type: ignore[operator]
        if heard != present:
            claim = "present" if present else "absent"
            return "dropped", (
                f"event claimed {claim} in the {position} clip but scores {_fmt(score)} "  # type: ignore[arg-type]
                f"({'>=' if heard else '<'} threshold {_fmt(policy.threshold)})"
            )
    if not checked:
        return "unscored", "no presence claim to check (presence not annotated)"
    return (
        "kept",
        f"{checked} presence claim(s) agree with CLAP at threshold {_fmt(policy.threshold)}",
    )


TASK_RULES = {
    "auditorybench-animal": _animal_rule,
    "auditorybench-pitch": _pitch_rule,
    "reasonaqa": _mcq_rule,
    "nlar": _nlar_rule,
}


def _decide(task: str, items: list[ItemScores], policy: FilterPolicy) -> list[Decision]:
    if policy.kind == "absolute":
        return [_absolute(s, policy) for s in items]
    if policy.kind == "relative":
        return [_relative(s, policy) for s in items]
    if policy.kind == "task-rule":
        rule = TASK_RULES.get(task)
        if rule is None:
            return [("unscored", f"no CLAP task rule for task {task!r}")] * len(items)
        return [rule(s, policy) for s in items]
    scored = [s.item_score() for s in items]
    if policy.kind == "percentile":
        values = [v for v, _ in scored if v is not None]
        cutoff = float(np.percentile(values, policy.percentile)) if values else math.nan
        out: list[Decision] = []
        for value, why in scored:
            if value is None:
                out.append(("unscored", str(why)))
            elif value >= cutoff:
                out.append(
                    ("kept", f"score {_fmt(value)} >= p{policy.percentile:g} {_fmt(cutoff)}")
                )
            else:
                out.append(
                    ("dropped", f"score {_fmt(value)} < p{policy.percentile:g} {_fmt(cutoff)}")
                )
        return out
    # topk: rank items that share the same clip(s), best first; ties by item_id.
    groups: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for index, s in enumerate(items):
        groups[tuple(s.item["clip_ids"] or [])].append(index)
    decisions: list[Decision] = [("unscored", "")] * len(items)
    for members in groups.values():
        ranked = sorted(
            (i for i in members if scored[i][0] is not None),
            key=lambda i: (-scored[i][0], items[i].item["item_id"]),  # type: ignore[operator]
        )
        for rank, index in enumerate(ranked, start=1):
            verdict = "kept" if rank <= policy.k else "dropped"
            decisions[index] = (
                verdict,
                f"rank {rank} of {len(ranked)} candidates for the same clip(s) (top-{policy.k})",
            )
        for index in members:
            if scored[index][0] is None:
                decisions[index] = ("unscored", str(scored[index][1]))
    return decisions


def latest_scoring(warehouse: Warehouse, task: str) -> dict[str, Any] | None:
    """(backend, checkpoint, crop_policy) of the task's most recent scoring run."""
    rows = warehouse.rows(
        "SELECT backend, checkpoint, crop_policy, max(scored_at) AS last_scored FROM clap_scores "
        "WHERE task = ? AND backend IS NOT NULL GROUP BY ALL ORDER BY last_scored DESC LIMIT 1",
        [task],
    )
    return rows[0] if rows else None


def load_item_scores(
    warehouse: Warehouse, task: str, items: list[dict[str, Any]], scoring: dict[str, Any]
) -> dict[str, ItemScores]:
    rows = warehouse.rows(
        "SELECT item_id, text_role, clip_id, score, unscored_reason, is_primary FROM clap_scores "
        "WHERE task = ? AND backend = ? AND checkpoint = ? AND crop_policy = ?",
        [task, scoring["backend"], scoring["checkpoint"], scoring["crop_policy"]],
    )
    by_item = {item["item_id"]: ItemScores(item) for item in items}
    for row in rows:
        entry = by_item.get(row["item_id"])
        if entry is None:
            continue
        role = row["text_role"]
        entry.scores[role] = row["score"]
        entry.clips[role] = row["clip_id"]
        if row["unscored_reason"]:
            entry.reasons[role] = row["unscored_reason"]
        if row["is_primary"]:
            entry.primary.append(role)
    return by_item


def filter_task(
    warehouse: Warehouse,
    task: str,
    policy: FilterPolicy | None,
    run_id: str,
    *,
    backend: str | None = None,
    checkpoint: str | None = None,
) -> FilterSummary:
    """Decide kept / dropped / unscored for every current valid item; append to item_filters.

    Uses the scores of the given backend+checkpoint, else of the task's latest scoring run.
    With no scores at all, every item is `unscored` with the reason (no checkpoint
    configured, or scoring not run yet).
    """
    policy = policy or make_policy()
    items = current_items(warehouse, task)
    scoring = latest_scoring(warehouse, task)
    if backend or checkpoint:
        rows = warehouse.rows(
            "SELECT DISTINCT backend, checkpoint, crop_policy FROM clap_scores WHERE task = ? "
            "AND backend = coalesce(?, backend) AND checkpoint = coalesce(?, checkpoint)",
            [task, backend, checkpoint],
        )
        scoring = rows[0] if rows else None
    summary = FilterSummary(
        task=task,
        policy=policy.name,
        policy_params=policy.params(),
        backend=scoring["backend"] if scoring else None,
        checkpoint=scoring["checkpoint"] if scoring else None,
        run_id=run_id,
        items=len(items),
    )
    if scoring is None:
        reason = NOT_CONFIGURED if ClapConfig.from_env() is None else NO_SCORES.format(task=task)
        decisions = [("unscored", reason)] * len(items)
        ordered = [ItemScores(item) for item in items]
    else:
        scores = load_item_scores(warehouse, task, items, scoring)
        ordered = list(scores.values())
        decisions = []
        no_scores = NO_SCORES.format(task=task)
        with_scores = [s for s in ordered if s.scores]
        decided = iter(_decide(task, with_scores, policy))
        decisions = [next(decided) if s.scores else ("unscored", no_scores) for s in ordered]
    _append_decisions(warehouse, task, policy, summary, ordered, decisions, run_id)
    return summary


def mark_unscored(warehouse: Warehouse, task: str, reason: str, run_id: str) -> FilterSummary:
    """Record `unscored` with `reason` for every current valid item (e.g. no checkpoint)."""
    items = current_items(warehouse, task)
    policy = make_policy()
    summary = FilterSummary(
        task=task,
        policy=policy.name,
        policy_params=policy.params(),
        backend=None,
        checkpoint=None,
        run_id=run_id,
        items=len(items),
    )
    ordered = [ItemScores(item) for item in items]
    _append_decisions(
        warehouse, task, policy, summary, ordered, [("unscored", reason)] * len(items), run_id
    )
    return summary


def _append_decisions(
    warehouse: Warehouse,
    task: str,
    policy: FilterPolicy,
    summary: FilterSummary,
    items: list[ItemScores],
    decisions: list[Decision],
    run_id: str,
) -> None:
    now = utc_now()
    params = json.dumps(policy.params(), sort_keys=True)
    reasons: Counter[str] = Counter()
    rows = []
    for s, (status, reason) in zip(items, decisions, strict=True):
        if status == "kept":
            summary.kept += 1
        elif status == "dropped":
            summary.dropped += 1
        else:
            summary.unscored += 1
            reasons[reason_code(reason)] += 1
        rows.append(
            {
                "item_id": s.item["item_id"],
                "task": task,
                "policy": policy.name,
                "policy_params": params,
                "filter_status": status,
                "filter_reason": reason,
                "backend": summary.backend,
                "checkpoint": summary.checkpoint,
                "run_id": run_id,
                "decided_at": now,
            }
        )
    summary.unscored_by_reason = dict(reasons)
    safe_run = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    warehouse.write_partition(
        "item_filters", f"task={task}/policy={policy.name}/run={safe_run}", rows
    )
