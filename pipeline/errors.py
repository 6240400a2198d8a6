"""Typed errors. Every message names what the user must look at: file, row, field."""

from __future__ import annotations

from pathlib import Path


class ForgeError(Exception):
    """Base class for errors a user can act on; the CLI prints them as one line."""


class InputFormatError(ForgeError):
    """A whole input file cannot be used (wrong columns, unreadable, wrong layout)."""

    def __init__(
        self,
        path: Path | str,
        message: str,
        *,
        row: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path)
        self.row = row
        self.field = field
        where = self.path
        if row is not None:
            where += f", row {row}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {message}")


class MissingArtifactError(ForgeError):
    """A model, checkpoint or data file the run needs is not where it was looked for."""

    def __init__(self, what: str, looked_for: str, how_to_provide: str) -> None:
        self.what = what
        self.looked_for = looked_for
        self.how_to_provide = how_to_provide
        super().__init__(f"{what} not found (looked for {looked_for}); {how_to_provide}")


class ReadOnlyQueryError(ForgeError):
    """`forge sql` was given a statement that would change the warehouse."""


class SchemaError(ForgeError):
    """Rows handed to the warehouse do not match the table's declared schema."""


class LLMEndpointError(ForgeError):
    """The LLM endpoint refuses the run as a whole (unreachable, 401/403, unknown model,
    or too large a share of failed calls). What finished is already recorded in
    `llm_calls`; the caller must not make the partial result current."""

    def __init__(self, endpoint: str, cause: str, *, failed: int, total: int) -> None:
        self.endpoint = endpoint  # never carries credentials
        self.cause = cause
        self.failed = failed
        self.total = total
        super().__init__(f"cannot use {endpoint} ({cause}): {failed} of {total} calls failed")
