"""Lua scripts that make multi-step writes atomic on a standalone Redis.

Index entries are sorted-set members scored by the member's expiry time (ms), so a write can prune members
whose keys already expired (ZREMRANGEBYSCORE up to now) and the index never grows without bound; the index key
itself expires no earlier than its longest-lived member.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

__all__ = ["INCR_TTL", "SET_INDEXED", "Script"]


@dataclass(frozen=True)
class Script:
    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


#: KEYS[1] value key, KEYS[2..n] index keys (tags, parents' dependents)
#: ARGV[1] stored bytes, ARGV[2] ttl seconds, ARGV[3] condition: "" always | "NX" only if absent | sha1 hex = CAS
#: Returns 1 when stored, 0 when the condition failed.
SET_INDEXED = Script(
    """
local key, ttl, cond = KEYS[1], tonumber(ARGV[2]), ARGV[3]
if cond == 'NX' then
  if redis.call('EXISTS', key) == 1 then return 0 end
elseif cond ~= '' then
  local cur = redis.call('GET', key)
  if not cur or redis.sha1hex(cur) ~= cond then return 0 end
end
redis.call('SET', key, ARGV[1], 'EX', ttl)
if #KEYS > 1 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local exp = now + ttl * 1000
  for i = 2, #KEYS do
    redis.call('ZADD', KEYS[i], exp, key)
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
    if redis.call('PTTL', KEYS[i]) < ttl * 1000 then redis.call('PEXPIRE', KEYS[i], ttl * 1000) end
  end
end
return 1
"""
)

#: KEYS[1] counter, ARGV[1] increment, ARGV[2] ttl seconds applied when the counter has none (a fixed window).
INCR_TTL = Script(
    """
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('TTL', KEYS[1]) == -1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return v
"""
)
