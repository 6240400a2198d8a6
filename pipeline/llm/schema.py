"""A template's reply schema (JSON Schema subset) turned into a pydantic model.

Templates declare the JSON object the model must reply with. We validate every reply
with pydantic, so the schema is compiled once per template into a model class. Only the
keywords below are understood; any other keyword is an error at template load, so a
schema never silently validates less than it says.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, create_model
from pydantic import ValidationError as PydanticValidationError

# Keywords that carry no validation meaning for us (documentation only).
_ANNOTATION_KEYS = {"description", "title", "examples", "$comment"}
_KEYS_BY_TYPE: dict[str, set[str]] = {
    "object": {"type", "properties", "required", "additionalProperties"},
    "array": {"type", "items", "minItems", "maxItems"},
    "string": {"type", "enum", "minLength", "maxLength", "pattern"},
    "integer": {"type", "enum", "minimum", "maximum"},
    "number": {"type", "minimum", "maximum"},
    "boolean": {"type"},
    "null": {"type"},
}


class SchemaDefinitionError(ValueError):
    """The schema uses something this validator does not understand."""


class ReplyValidationError(ValueError):
    """A reply does not match the template's schema; the message says where."""


def _field_type(schema: Any, path: str) -> Any:
    if not isinstance(schema, dict):
        raise SchemaDefinitionError(f"{path}: expected a schema object, got {schema!r}")
    keys = set(schema) - _ANNOTATION_KEYS
    if "enum" in schema and "type" not in schema:
        values = schema["enum"]
        if not isinstance(values, list) or not values:
            raise SchemaDefinitionError(f"{path}: 'enum' must be a non-empty list")
        if keys - {"enum"}:
            raise SchemaDefinitionError(f"{path}: unsupported keys {sorted(keys - {'enum'})}")
        return Literal[tuple(values)]
    kind = schema.get("type")
    if isinstance(kind, list):
        # e.g. ["string", "null"]: a union of the same schema under each type.
        members = [_field_type({**schema, "type": k}, path) for k in kind]
        union = members[0]
        for member in members[1:]:
            union = union | member
        return union
    if kind not in _KEYS_BY_TYPE:
        raise SchemaDefinitionError(f"{path}: unsupported or missing 'type': {kind!r}")
    unknown = keys - _KEYS_BY_TYPE[kind]
    if unknown:
        raise SchemaDefinitionError(f"{path}: unsupported keys for type {kind}: {sorted(unknown)}")
    if kind == "object":
        return _object_model(schema, path)
    if kind == "array":
        item = _field_type(schema["items"], f"{path}.items") if "items" in schema else Any
        return Annotated[
            list[item],  # type: ignore[valid-type]
            Field(min_length=schema.get("minItems"), max_length=schema.get("maxItems")),
        ]
    if "enum" in schema:
        return Literal[tuple(schema["enum"])]
    if kind == "string":
        pattern = schema.get("pattern")
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise SchemaDefinitionError(f"{path}: invalid pattern: {exc}") from exc
        return Annotated[
            StrictStr,
            Field(
                min_length=schema.get("minLength"),
                max_length=schema.get("maxLength"),
                pattern=pattern,
            ),
        ]
    if kind == "integer":
        return Annotated[StrictInt, Field(ge=schema.get("minimum"), le=schema.get("maximum"))]
    if kind == "number":
        return Annotated[
            float, Field(strict=True, ge=schema.get("minimum"), le=schema.get("maximum"))
        ]
    if kind == "boolean":
        return StrictBool
    return None


def _object_model(schema: dict[str, Any], path: str) -> type[BaseModel]:
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        raise SchemaDefinitionError(f"{path}: 'properties' must be an object")
    required = schema.get("required", [])
    if not isinstance(required, list) or set(required) - set(properties):
        raise SchemaDefinitionError(f"{path}: 'required' must list declared properties")
    extra = schema.get("additionalProperties", True)
    if not isinstance(extra, bool):
        raise SchemaDefinitionError(f"{path}: 'additionalProperties' must be true or false")
    # Property names may collide with BaseModel attributes or be invalid identifiers,
    # so fields get safe Python names and keep the JSON name as their alias.
    fields: dict[str, Any] = {}
    for index, (name, sub) in enumerate(properties.items()):
        annotation = _field_type(sub, f"{path}.{name}")
        if name in required:
            fields[f"field_{index}"] = (annotation, Field(..., alias=name))
        else:
            fields[f"field_{index}"] = (annotation | None, Field(None, alias=name))
    return create_model(  # type: ignore[call-overload, no-any-return]
        "Reply_" + re.sub(r"\W", "_", path),
        __config__=ConfigDict(extra="allow" if extra else "forbid", protected_namespaces=()),
        **fields,
    )


class ReplyValidator:
    """Validates parsed replies against one template's schema (compiled once)."""

    def __init__(self, schema: dict[str, Any]) -> None:
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise SchemaDefinitionError("the reply schema must be a JSON object schema")
        self.schema = schema
        self.model = _object_model(schema, "schema")

    def validate(self, reply: Any) -> dict[str, Any]:
        """The reply as a plain dict if valid, else ReplyValidationError with the reasons."""
        if not isinstance(reply, dict):
            raise ReplyValidationError(f"expected a JSON object, got {type(reply).__name__}")
        try:
            self.model.model_validate(reply)
        except PydanticValidationError as exc:
            reasons = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
                for err in exc.errors(include_url=False)
            )
            raise ReplyValidationError(reasons) from None
        # Return the reply itself: validation is strict (no coercion), so it is what the
        # model produced, without pydantic's field renaming.
        return reply
