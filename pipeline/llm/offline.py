"""Offline backend: deterministic rule functions registered per prompt name.

A task module registers, for each of its prompts, a function that builds a reply from
the request's (sanitised) variables::

    @offline_rule("auditorybench/animal")
    def animal_rule(variables: dict) -> dict: ...

The engine runs the rule through the same validation and recording path as a real call,
with model `offline-rules`: its items say honestly that no LLM wrote them. Rules are
loaded on first use by importing `pipeline.tasks` (each task package registers its rules
on import); a prompt without a rule is an error, never a silent empty reply.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import ForgeError

OfflineRuleFn = Callable[[dict[str, Any]], dict[str, Any]]
TASKS_PACKAGE = "pipeline.tasks"


@dataclass(frozen=True)
class OfflineRule:
    prompt_name: str
    fn: OfflineRuleFn
    fingerprint: str  # changes when the rule's module source (or explicit version) changes


_RULES: dict[str, OfflineRule] = {}
_tasks_loaded = False


def offline_rule(
    prompt_name: str, *, version: str | None = None
) -> Callable[[OfflineRuleFn], OfflineRuleFn]:
    """Register `fn(variables) -> reply dict` as the offline backend for `prompt_name`.

    The rule's fingerprint (part of the cache key) is a hash of its module's source plus
    `version`: editing the rule's module regenerates its items on the next run. Pass
    `version` when the rule depends on data outside its module (e.g. a lexicon file).
    """

    def register(fn: OfflineRuleFn) -> OfflineRuleFn:
        existing = _RULES.get(prompt_name)
        if existing is not None and _qualname(existing.fn) != _qualname(fn):
            raise ForgeError(
                f"two offline rules for prompt '{prompt_name}': "
                f"{_qualname(existing.fn)} and {_qualname(fn)}"
            )
        _RULES[prompt_name] = OfflineRule(prompt_name, fn, _fingerprint(fn, version))
        return fn

    return register


def get_rule(prompt_name: str) -> OfflineRule:
    """The rule for a prompt (loading the task packages first), or a ForgeError naming it."""
    load_task_rules()
    rule = _RULES.get(prompt_name)
    if rule is None:
        known = ", ".join(sorted(_RULES)) or "none"
        raise ForgeError(
            f"no offline rule for prompt '{prompt_name}' (registered: {known}); register one "
            f"with @offline_rule({prompt_name!r}) or use an OpenAI-compatible endpoint"
        )
    return rule


def registered_prompts() -> list[str]:
    load_task_rules()
    return sorted(_RULES)


def load_task_rules() -> None:
    """Import `pipeline.tasks` once so its modules register their rules.

    Only a missing `pipeline.tasks` package itself is tolerated (the tasks package may not
    exist in every checkout); an import error inside it is a real bug and propagates.
    """
    global _tasks_loaded
    if _tasks_loaded:
        return
    try:
        importlib.import_module(TASKS_PACKAGE)
    except ModuleNotFoundError as exc:
        if exc.name != TASKS_PACKAGE:
            raise
    _tasks_loaded = True


def unregister(prompt_name: str) -> None:
    """Remove a rule (tests register throwaway rules)."""
    _RULES.pop(prompt_name, None)


def _qualname(fn: OfflineRuleFn) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _fingerprint(fn: OfflineRuleFn, version: str | None) -> str:
    digest = hashlib.sha256(_qualname(fn).encode())
    digest.update((version or "").encode())
    try:
        source_file = inspect.getsourcefile(fn)
        if source_file:
            digest.update(Path(source_file).read_bytes())
        else:
            digest.update(inspect.getsource(fn).encode())
    except (OSError, TypeError):
        # Built-in or dynamically created: fall back to the name and explicit version.
        pass
    return digest.hexdigest()[:12]
