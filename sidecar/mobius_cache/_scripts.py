"""Lua scripts that make multi-step writes atomic: all of them happen, or none.

Redis does not roll back a script that fails half-way, so every script here is in two parts: first everything
that can be refused — the clock (``TIME``), the conditions, the type of each index key and, with
``redis.acl_check_cmd``, the ACL permission for every command and key it will write — and only then the
writes, which nothing can refuse any more. What is left is refused by Redis before the script starts: each
script declares itself with a ``#!lua`` shebang, so an out-of-memory Redis (``OOM``), a replica
(``READONLY``), a Redis that cannot persist (``MISCONF``) refuses it as a whole. The invalidation scripts only
delete, and say ``allow-oom``: a full Redis must still let stale data be removed. ``SCRIPT KILL`` can only
stop a script that has not written yet, so a killed script has written nothing either.

Index entries are sorted-set members scored by the member's expiry time (ms), so a write can prune members
whose keys already expired (ZREMRANGEBYSCORE up to now) and the index never grows without bound; the index key
itself expires no earlier than its longest-lived member.

The scripts need Redis 7 (shebangs, ``redis.acl_check_cmd``), as ``PEXPIRE ... NX|GT`` elsewhere already does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

__all__ = ["INCR_TTL", "INDEX_ADD", "INDEX_FORGET", "SCRIPT_NAMES", "SET_INDEXED", "Script"]


@dataclass(frozen=True)
class Script:
    name: str
    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


#: Checks shared by the scripts. ``allowed`` refuses, before any write, what the ACL would refuse half-way
#: (inside a script Redis reports it as a bare ``ERR``; we say ``NOPERM`` and name the command and key).
#: ``index_ready`` refuses an index key that holds something else (``BADINDEX``; Redis would say WRONGTYPE
#: only at the ZADD, after the value was written). ``index_add`` is the write itself.
_PRELUDE = """
local function allowed(cmd, key)
  local ok
  if key then ok = redis.acl_check_cmd(cmd, key) else ok = redis.acl_check_cmd(cmd) end
  if not ok then
    if key then error({err = 'NOPERM this user may not run ' .. cmd .. ' on the key ' .. key}) end
    error({err = 'NOPERM this user may not run ' .. cmd})
  end
end
local function index_ready(index)
  local kind = redis.call('TYPE', index)['ok']
  if kind ~= 'zset' and kind ~= 'none' then
    error({err = 'BADINDEX the index key ' .. index .. ' holds a ' .. kind .. ', not a sorted set'})
  end
  allowed('ZADD', index)
  allowed('ZREMRANGEBYSCORE', index)
  allowed('PTTL', index)
  allowed('PEXPIRE', index)
end
local function now_ms()
  allowed('TIME')
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function index_add(index, member, now, ttl_ms)
  redis.call('ZADD', index, now + ttl_ms, member)
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
  if redis.call('PTTL', index) < ttl_ms then redis.call('PEXPIRE', index, ttl_ms) end
end
"""

#: KEYS[1] value key, KEYS[2..n] index keys (tags, parents' dependents)
#: ARGV[1] stored bytes, ARGV[2] ttl seconds, ARGV[3] condition: "" always | "NX" only if absent | sha1 hex = CAS
#: Returns 1 when stored, 0 when the condition failed (nothing written either way but the first).
SET_INDEXED = Script(
    "set_indexed",
    "#!lua\n"
    + _PRELUDE
    + """
local key, ttl, cond = KEYS[1], tonumber(ARGV[2]), ARGV[3]
if cond == 'NX' then
  allowed('EXISTS', key)
  if redis.call('EXISTS', key) == 1 then return 0 end
elseif cond ~= '' then
  allowed('GET', key)
  local cur = redis.call('GET', key)
  if not cur or redis.sha1hex(cur) ~= cond then return 0 end
end
allowed('SET', key)
local now = 0
if #KEYS > 1 then
  now = now_ms()
  for i = 2, #KEYS do index_ready(KEYS[i]) end
end
-- Nothing below can be refused.
redis.call('SET', key, ARGV[1], 'EX', ttl)
for i = 2, #KEYS do index_add(KEYS[i], key, now, ttl * 1000) end
return 1
""",
)

#: Redis Cluster, where an index lives in another slot than its value: one index entry, checked then written.
#: KEYS[1] index key; ARGV[1] member (the value's Redis key), ARGV[2] ttl seconds.
#: Returns {score written, previous score or ""}, so that the caller can put the entry back as it was when the
#: value's write fails (see INDEX_FORGET).
INDEX_ADD = Script(
    "index_add",
    "#!lua\n"
    + _PRELUDE
    + """
local index, member, ttl_ms = KEYS[1], ARGV[1], tonumber(ARGV[2]) * 1000
local now = now_ms()
index_ready(index)
allowed('ZSCORE', index)
local old = redis.call('ZSCORE', index, member)
index_add(index, member, now, ttl_ms)
return {now + ttl_ms, old or ''}
""",
)

#: Remove (or restore) index entries, but only those still as the caller saw them: an entry whose score changed
#: since was rewritten by another writer and must stay. Used to undo INDEX_ADD when the value's write failed,
#: and by invalidation to drop the entries of keys it has deleted.
#: KEYS: index keys (one on a cluster; several on a standalone Redis, to save round trips). ARGV, for each key
#: in turn: n, then n times (member, expected score, new score or "" = remove). Returns how many changed.
INDEX_FORGET = Script(
    "index_forget",
    "#!lua flags=allow-oom\n"
    + _PRELUDE
    + """
local plan, a = {}, 1
for k = 1, #KEYS do
  local index, n = KEYS[k], tonumber(ARGV[a])
  local first = a + 1
  a = first + 3 * n
  if n > 0 and redis.call('TYPE', index)['ok'] == 'zset' then
    allowed('ZMSCORE', index)
    local members = {}
    for i = 0, n - 1 do members[i + 1] = ARGV[first + 3 * i] end
    local scores = redis.call('ZMSCORE', index, unpack(members))
    local gone, back = {}, {}
    for i = 0, n - 1 do
      local want, new = ARGV[first + 3 * i + 1], ARGV[first + 3 * i + 2]
      if scores[i + 1] and tonumber(scores[i + 1]) == tonumber(want) then
        if new == '' then
          gone[#gone + 1] = members[i + 1]
        else
          back[#back + 1] = new
          back[#back + 1] = members[i + 1]
        end
      end
    end
    if #gone > 0 then allowed('ZREM', index) end
    if #back > 0 then allowed('ZADD', index) end
    plan[#plan + 1] = {index, gone, back}
  end
end
-- Nothing below can be refused.
local changed = 0
for _, p in ipairs(plan) do
  if #p[2] > 0 then redis.call('ZREM', p[1], unpack(p[2])) end
  if #p[3] > 0 then redis.call('ZADD', p[1], unpack(p[3])) end
  changed = changed + #p[2] + #p[3] / 2
end
return changed
""",
)

#: KEYS[1] counter, ARGV[1] increment, ARGV[2] ttl seconds applied when the counter has none (a fixed window).
#: INCRBY is the first write and refuses a non-integer by itself; EXPIRE is checked before it.
INCR_TTL = Script(
    "incr_ttl",
    "#!lua\n"
    + _PRELUDE
    + """
allowed('INCRBY', KEYS[1])
allowed('TTL', KEYS[1])
allowed('EXPIRE', KEYS[1])
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('TTL', KEYS[1]) == -1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return v
""",
)

#: A script's name by its SHA1 or its source, for messages (``EVALSHA set_indexed``).
SCRIPT_NAMES: dict[str, str] = {
    k: s.name for s in (SET_INDEXED, INDEX_ADD, INDEX_FORGET, INCR_TTL) for k in (s.sha, s.source)
}
