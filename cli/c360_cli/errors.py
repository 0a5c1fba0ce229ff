"""The CLI's failures and exit statuses (no heavy imports: `c360 --help` loads this).

Exit statuses: 0 success; 1 not found, refused or partly failed; 2 usage or bad input.
"""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


class CliError(Exception):
    """A failure to report as one message on stderr and an exit status, without a traceback.
    `code` is the gRPC status name when a call failed (else a word of the CLI's own), `field`
    the offending input, when one is known."""

    def __init__(
        self,
        message: str,
        exit_code: int = EXIT_FAILURE,
        *,
        code: str | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.code = code or ("INVALID_ARGUMENT" if exit_code == EXIT_BAD_INPUT else "FAILED")
        self.field = field

    def as_json(self) -> dict[str, Any]:
        """`{"error": {"code", "message", "field"}}`, what `--json` prints on stderr."""
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}
