"""The audit trail: one line in the `c360.audit` log per admitted call (its method, the
caller's subject id and role, and the ids of the records it names: `on customer_id=…`), and
one per refused call (and who was refused, once the token was read).

A call's line is kept in memory as three strings and its time, and written with the others
of the same half second (`FLUSH_EVERY`), or as soon as `BATCH` wait, `CHUNK` lines per turn
of the event loop (the calls' own callbacks run between the slices: 250 lines take ~1.7 ms
through a file handler, where GetTimeline's p99 is 3-4 ms): the logging module's
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
"""Lines waiting whose write starts at once."""

CHUNK = 32
"""Lines written per turn of the event loop."""


class AuditTrail:
    """The audit lines of one process's gRPC server (used from its event loop)."""

    def __init__(
        self,
        logger: logging.Logger | None = None,
        *,
        every: float = FLUSH_EVERY,
        batch: int = BATCH,
        chunk: int = CHUNK,
    ) -> None:
        self.logger = logger or logging.getLogger(LOGGER)
        self.every = every
        self.batch = batch
        self.chunk = chunk
        self._waiting: list[tuple[float, str, str, str, str]] = []
        self._timer: asyncio.Handle | None = None
        """The write to come: at the end of the interval, or at the loop's next turn."""
        self._loop: asyncio.AbstractEventLoop | None = None

    def admitted(self, method: str, subject: str, role: str, target: str = "") -> None:
        """Note a call the caller's token admitted; `target` names the records it is about
        (ids only: `customer_id=…`)."""
        if not self.logger.isEnabledFor(logging.INFO):
            return
        self._waiting.append((time.time(), method, subject, role, target))
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop to write it later
            self.flush()
            return
        if self._timer is not None and self._loop is not loop:
            self.flush()  # the timer is another loop's, which may never run it
        if self._timer is None:
            self._loop = loop
            self._timer = loop.call_later(self.every, self._drain)
        elif len(self._waiting) >= self.batch and isinstance(self._timer, asyncio.TimerHandle):
            self._timer.cancel()
            self._timer = loop.call_soon(self._drain)

    def refused(self, method: str, reason: BaseException, subject: str = "") -> None:
        """Write a refused call's line now (naming the caller whose role was refused)."""
        self.flush()
        if subject:
            self.logger.warning("refused %s by %s: %s", method, subject, reason)
        else:
            self.logger.warning("refused %s: %s", method, reason)

    def flush(self) -> None:
        """Write the lines waiting now, each with the time of its call."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting, self._waiting = self._waiting, []
        self._write(waiting)

    def _drain(self) -> None:
        """Write `chunk` of the lines waiting, and the rest at the loop's next turns."""
        self._timer = None
        slice_ = self._waiting[: self.chunk]
        del self._waiting[: self.chunk]
        self._write(slice_)
        if self._waiting and self._loop is not None and not self._loop.is_closed():
            self._timer = self._loop.call_soon(self._drain)

    def _write(self, lines: list[tuple[float, str, str, str, str]]) -> None:
        for at, method, subject, role, target in lines:
            record = self.logger.makeRecord(
                self.logger.name,
                logging.INFO,
                __file__,
                0,
                "%s by %s (%s) on %s" if target else "%s by %s (%s)",
                (method, subject, role, target) if target else (method, subject, role),
                None,
            )
            record.created = at
            record.msecs = (at - int(at)) * 1000
            self.logger.handle(record)
