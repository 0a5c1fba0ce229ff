"""The audit trail: one line in the `c360.audit` log per admitted call (its method, the
caller's subject id and role), and one per refused call.

A call's line is kept in memory as three strings and its time, and written with the others
of the same half second (`FLUSH_EVERY`), or as soon as `BATCH` wait: the logging module's
work for a line (its record, the caller's frame, the time's formatting, the handler's lock
and write) costs ~50 us of CPU on a service's event loop when done once per call, among the
call's own work, against 7-10 us per line in a loop of lines. A line keeps the time of its
call. Refusals are written at once (after the admitted lines before them). What a process
killed without its shutdown held is lost: at most the last half second of admitted calls.
"""

from __future__ import annotations

import asyncio
import logging
import time

LOGGER = "c360.audit"

FLUSH_EVERY = 0.5
"""Seconds an admitted call's line waits at most before it is written."""

BATCH = 512
"""Lines waiting that are written at once."""


class AuditTrail:
    """The audit lines of one process's gRPC server (used from its event loop)."""

    def __init__(
        self,
        logger: logging.Logger | None = None,
        *,
        every: float = FLUSH_EVERY,
        batch: int = BATCH,
    ) -> None:
        self.logger = logger or logging.getLogger(LOGGER)
        self.every = every
        self.batch = batch
        self._waiting: list[tuple[float, str, str, str]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def admitted(self, method: str, subject: str, role: str) -> None:
        """Note a call the caller's token admitted."""
        if not self.logger.isEnabledFor(logging.INFO):
            return
        self._waiting.append((time.time(), method, subject, role))
        if len(self._waiting) >= self.batch:
            self.flush()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop to write it later
            self.flush()
            return
        if self._timer is not None and self._loop is not loop:
            self.flush()  # the timer is another loop's, which may never run it
        if self._timer is None:
            self._loop = loop
            self._timer = loop.call_later(self.every, self.flush)

    def refused(self, method: str, reason: BaseException) -> None:
        """Write a refused call's line now."""
        self.flush()
        self.logger.warning("refused %s: %s", method, reason)

    def flush(self) -> None:
        """Write the lines waiting, each with the time of its call."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting, self._waiting = self._waiting, []
        for at, method, subject, role in waiting:
            record = self.logger.makeRecord(
                self.logger.name,
                logging.INFO,
                __file__,
                0,
                "%s by %s (%s)",
                (method, subject, role),
                None,
            )
            record.created = at
            record.msecs = (at - int(at)) * 1000
            self.logger.handle(record)
