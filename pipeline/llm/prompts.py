"""Versioned Jinja2 prompt templates: `prompts/<group>/<step>.j2`.

File format (see prompts/README.md)::

    {#---
    description: One line saying what this step asks the model for.
    sampling: {temperature: 0.6, top_p: 0.9, max_tokens: 256}
    system: Optional static system message.
    schema:            # JSON Schema of the reply object
      type: object
      properties: {...}
      required: [...]
    ---#}
    The user message, rendered with the variables, e.g. {{ description }}.

The front matter is a Jinja comment, so the file is still a valid template. A template's
version is a short sha256 of its body, system message, schema and sampling, so editing
any of them changes the version (and with it the cache key of every request using it).

Rendering happens in a `SandboxedEnvironment` with `StrictUndefined`. Variables are data:
strings are stripped of control characters and length-capped, lists are capped, and
nothing from a variable ever becomes template source, so a Freesound description holding
`{{ 7*7 }}` renders as those literal characters.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.config import default_prompts_dir
from pipeline.errors import ForgeError, InputFormatError
from pipeline.llm.schema import ReplyValidator, SchemaDefinitionError

TEMPLATE_SUFFIX = ".j2"
_FRONT_MATTER_RE = re.compile(r"\A\{#---[ \t]*\n(?P<yaml>.*?)\n---#\}[ \t]*\n?", re.DOTALL)
VERSION_HEX_CHARS = 12


class Sampling(BaseModel):
    """Sampling defaults a template declares (sent with every request that uses it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(512, gt=0)


class FrontMatter(BaseModel):
    """The YAML block at the top of a template; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    description: str
    sampling: Sampling = Sampling()
    schema_: dict[str, Any] = Field(alias="schema")
    system: str | None = None


class SanitizeLimits(BaseModel):
    """How far variable values are cut before rendering (public metadata can be huge)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_string_chars: int = Field(2000, gt=0)
    max_list_items: int = Field(50, gt=0)
    max_depth: int = Field(6, gt=0)


_TRUNCATION_MARK = "…"
# Keep newline and tab; drop every other control character (C0, DEL, C1) and the
# invisible format characters (bidi overrides, zero-width joiners...) that can hide text.
_KEEP_CONTROL = {"\n", "\t"}


_ASCII_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _clean_string(text: str, limits: SanitizeLimits) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if text.isascii():  # fast path: the only unwanted ASCII characters are C0 and DEL
        text = _ASCII_CONTROL_RE.sub("", text)
    else:
        text = "".join(
            ch
            for ch in text
            if ch in _KEEP_CONTROL or unicodedata.category(ch) not in ("Cc", "Cf", "Cs")
        )
    if len(text) > limits.max_string_chars:
        text = text[: limits.max_string_chars - len(_TRUNCATION_MARK)] + _TRUNCATION_MARK
    return text


def sanitize_variables(
    variables: Mapping[str, Any], limits: SanitizeLimits | None = None
) -> dict[str, Any]:
    """A copy of `variables` safe to render: clean, capped strings; capped lists; plain types."""
    limits = limits or SanitizeLimits()
    return {str(k): _sanitize(v, limits, 0, str(k)) for k, v in variables.items()}


def _sanitize(value: Any, limits: SanitizeLimits, depth: int, where: str) -> Any:
    if depth > limits.max_depth:
        raise ForgeError(f"prompt variable '{where}' is nested deeper than {limits.max_depth}")
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return _clean_string(value, limits)
    if isinstance(value, Mapping):
        return {
            _clean_string(str(k), limits): _sanitize(v, limits, depth + 1, f"{where}.{k}")
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [
            _sanitize(v, limits, depth + 1, f"{where}[{i}]")
            for i, v in enumerate(value[: limits.max_list_items])
        ]
    raise ForgeError(
        f"prompt variable '{where}' has type {type(value).__name__}; "
        "pass strings, numbers, booleans, lists or dicts"
    )


def _environment() -> SandboxedEnvironment:
    # No loader: templates cannot include files; autoescape off because this is not HTML.
    return SandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )


_ENV = _environment()


@dataclass(frozen=True)
class PromptTemplate:
    """One parsed template. `render_messages()` gives the chat messages for a request."""

    name: str
    path: Path
    description: str
    sampling: Sampling
    schema: dict[str, Any]
    system: str | None
    body: str
    version: str
    validator: ReplyValidator = field(repr=False, compare=False)
    _compiled: jinja2.Template = field(repr=False, compare=False)

    @classmethod
    def from_file(cls, name: str, path: Path) -> PromptTemplate:
        text = path.read_text(encoding="utf-8")
        match = _FRONT_MATTER_RE.match(text)
        if match is None:
            raise InputFormatError(
                path, "missing front matter: the file must start with a '{#---' ... '---#}' block"
            )
        try:
            raw = yaml.safe_load(match.group("yaml"))
        except yaml.YAMLError as exc:
            raise InputFormatError(path, f"front matter is not valid YAML: {exc}") from exc
        if not isinstance(raw, dict):
            raise InputFormatError(path, "front matter must be a YAML mapping")
        try:
            front = FrontMatter.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            field_name = ".".join(str(p) for p in first["loc"]) or None
            raise InputFormatError(
                path, f"front matter: {first['msg']}", field=field_name
            ) from None
        try:
            validator = ReplyValidator(front.schema_)
        except SchemaDefinitionError as exc:
            raise InputFormatError(path, f"front matter: {exc}", field="schema") from None
        body = text[match.end() :]
        try:
            compiled = _ENV.from_string(body)
        except jinja2.TemplateSyntaxError as exc:
            raise InputFormatError(
                path, f"template syntax error: {exc.message}", row=exc.lineno
            ) from None
        return cls(
            name=name,
            path=path,
            description=front.description.strip(),
            sampling=front.sampling,
            schema=front.schema_,
            system=front.system,
            body=body,
            version=template_version(body, front.system, front.schema_, front.sampling),
            validator=validator,
            _compiled=compiled,
        )

    def render(self, variables: Mapping[str, Any], limits: SanitizeLimits | None = None) -> str:
        """The user message for `variables` (sanitised first)."""
        return self.render_clean(sanitize_variables(variables, limits))

    def render_clean(self, clean: Mapping[str, Any]) -> str:
        """Render variables that already went through `sanitize_variables`."""
        try:
            return self._compiled.render(clean).strip()
        except jinja2.UndefinedError as exc:
            raise ForgeError(
                f"prompt '{self.name}' ({self.path}): {exc.message}; "
                f"variables given: {sorted(clean)}"
            ) from None
        except jinja2.TemplateError as exc:
            raise ForgeError(f"prompt '{self.name}' ({self.path}): {exc}") from None

    def render_messages(
        self, variables: Mapping[str, Any], limits: SanitizeLimits | None = None
    ) -> list[dict[str, str]]:
        """Chat messages: the static system message (if any), then the rendered user message."""
        return self.messages_clean(sanitize_variables(variables, limits))

    def messages_clean(self, clean: Mapping[str, Any]) -> list[dict[str, str]]:
        """`render_messages` for variables that already went through `sanitize_variables`."""
        messages = []
        if self.system:
            messages.append({"role": "system", "content": self.system.strip()})
        messages.append({"role": "user", "content": self.render_clean(clean)})
        return messages


def template_version(
    body: str, system: str | None, schema: dict[str, Any], sampling: Sampling
) -> str:
    payload = json.dumps(
        {
            "body": body,
            "system": system,
            "schema": schema,
            "sampling": sampling.model_dump(mode="json"),
        },
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:VERSION_HEX_CHARS]


class PromptLibrary:
    """All templates of a base folder, with an optional override folder that wins by name."""

    def __init__(self, templates: Mapping[str, PromptTemplate], dirs: list[Path]) -> None:
        self._templates = dict(sorted(templates.items()))
        self.dirs = dirs

    @classmethod
    def load(
        cls, override_dir: Path | str | None = None, *, base_dir: Path | str | None = None
    ) -> PromptLibrary:
        """Templates from `base_dir` (default: the project's `prompts/`), then `override_dir`."""
        base = Path(base_dir) if base_dir is not None else default_prompts_dir()
        dirs = [base]
        templates = _scan(base) if base.is_dir() else {}
        if override_dir is not None:
            override = Path(override_dir).expanduser()
            if not override.is_dir():
                raise InputFormatError(override, "prompt override folder does not exist")
            templates.update(_scan(override))
            dirs.append(override)
        return cls(templates, dirs)

    def get(self, name: str) -> PromptTemplate:
        try:
            return self._templates[name]
        except KeyError:
            known = ", ".join(self._templates) or "none"
            folders = ", ".join(str(d) for d in self.dirs)
            raise ForgeError(
                f"unknown prompt '{name}' (looked in {folders}; known: {known})"
            ) from None

    def names(self) -> list[str]:
        return list(self._templates)

    def __iter__(self) -> Iterator[PromptTemplate]:
        return iter(self._templates.values())

    def __contains__(self, name: object) -> bool:
        return name in self._templates

    def __len__(self) -> int:
        return len(self._templates)


def _scan(folder: Path) -> dict[str, PromptTemplate]:
    found: dict[str, PromptTemplate] = {}
    for path in sorted(folder.rglob(f"*{TEMPLATE_SUFFIX}")):
        name = path.relative_to(folder).with_suffix("").as_posix()
        found[name] = PromptTemplate.from_file(name, path)
    return found
