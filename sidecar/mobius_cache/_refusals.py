"""What Redis refused lately: one log line per kind of refusal (not one per request), a count per Redis error
code, and the last refusal, which ``Cache.health()`` (and the sidecar's ``/readyz``) report.

A refusal is a :class:`RedisRefusedError`: Redis answered, and the fault is the server's or the deployment's
(a missing ACL permission, a full ``noeviction`` Redis, a replica as target...). An operator needs to see it
once, with the command and Redis's own words, without the log drowning under a busy workload.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._exceptions import RedisRefusedError, RedisScriptMissingError

__all__ = ["Refusal", "RefusalLog"]

log = logging.getLogger("mobius_cache")

#: A refusal of the same kind (code and command) is logged again after this many seconds, with a count.
LOG_INTERVAL = 10.0
#: ``health()`` reports the last refusal for this long.
REPORT_FOR = 60.0


@dataclass(frozen=True, slots=True)
class Refusal:
    code: str
    command: str | None
    detail: str
    outage: bool
    at: float


class RefusalLog:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.counts: Counter[str] = Counter()
        self.last: Refusal | None = None
        self._clock = clock
        self._logged: dict[tuple[str, str], tuple[float, int]] = {}

    def note(self, err: BaseException) -> None:
        """Count and (rate-limited) log ``err`` when it is a refusal. A missing script is not one: the
        client loads it again at once."""
        if not isinstance(err, RedisRefusedError) or isinstance(err, RedisScriptMissingError):
            return
        now = self._clock()
        self.counts[err.redis_code] += 1
        self.last = Refusal(err.redis_code, err.command, str(err), err.outage, now)
        kind = (err.redis_code, _kind(err.command))
        logged_at, suppressed = self._logged.get(kind, (float("-inf"), 0))
        if now - logged_at < LOG_INTERVAL:
            self._logged[kind] = (logged_at, suppressed + 1)
            return
        self._logged[kind] = (now, 0)
        more = f" ({suppressed} more since the last report)" if suppressed else ""
        log.warning("Redis refused %s: %s%s", err.command or "a command", err, more)

    def report(self) -> dict[str, Any] | None:
        """The last refusal, if recent: ``{code, command, detail, outage, seconds_ago}``."""
        last = self.last
        if last is None:
            return None
        age = self._clock() - last.at
        if age > REPORT_FOR:
            return None
        return {
            "code": last.code,
            "command": last.command,
            "detail": last.detail,
            "outage": last.outage,
            "seconds_ago": round(age, 1),
        }


def _kind(command: str | None) -> str:
    """A script is one kind of command whether it was sent as EVALSHA or (after NOSCRIPT) as EVAL."""
    if command is None:
        return ""
    return command.removeprefix("EVALSHA ").removeprefix("EVAL ")
