"""A circuit breaker: closed → open after N consecutive connection failures → half-open after a timeout,
where exactly one probe goes through; its success closes the circuit, its failure opens it again.

While open, reads miss and writes fail at once instead of each waiting for a connect timeout, so a dead Redis
costs the application microseconds, not seconds. The hot path reads one attribute (``closed``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "CircuitBreaker"]

CLOSED, HALF_OPEN, OPEN = 0, 1, 2  # the values of the mobius_cache_circuit_state gauge
STATE_NAMES = {CLOSED: "closed", HALF_OPEN: "half-open", OPEN: "open"}


class CircuitBreaker:
    __slots__ = (
        "_clock",
        "_on_change",
        "_opened_at",
        "_probing",
        "closed",
        "failures",
        "reset_timeout",
        "state",
        "threshold",
    )

    def __init__(
        self,
        threshold: int,
        reset_timeout: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[int, int], None] | None = None,
    ) -> None:
        self.threshold = threshold
        self.reset_timeout = reset_timeout
        self.state = CLOSED
        self.closed = True
        self.failures = 0
        self._opened_at = 0.0
        self._probing = False
        self._clock = clock
        self._on_change = on_change

    @property
    def name(self) -> str:
        return STATE_NAMES[self.state]

    def retry_after(self) -> float:
        """Seconds until the next probe is allowed (0 when closed)."""
        if self.state == CLOSED:
            return 0.0
        return max(0.0, self._opened_at + self.reset_timeout - self._clock())

    def allow(self) -> bool:
        """May a request go to Redis now? Closed: yes. Open: no, until the timeout; then one probe."""
        if self.closed:
            return True
        if self.state == OPEN and self._clock() - self._opened_at >= self.reset_timeout:
            self._set(HALF_OPEN)
        if self.state == HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def record_success(self) -> None:
        self.failures = 0
        if not self.closed:
            self._probing = False
            self._set(CLOSED)

    def record_failure(self) -> None:
        self.failures += 1
        if self.state == HALF_OPEN or self.failures >= self.threshold:
            self._probing = False
            self._opened_at = self._clock()
            if self.state != OPEN:
                self._set(OPEN)

    def probe_now(self) -> None:
        """Allow the next probe at once (e.g. Sentinel announced a new master): end the open window early."""
        if self.state == OPEN:
            self._opened_at = self._clock() - self.reset_timeout

    def release_probe(self) -> None:
        """A probe ended without a verdict (e.g. cancelled): let the next caller probe."""
        self._probing = False

    def _set(self, state: int) -> None:
        old, self.state = self.state, state
        self.closed = state == CLOSED
        if self._on_change is not None and old != state:
            self._on_change(old, state)
