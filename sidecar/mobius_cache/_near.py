"""The near cache: hot values kept in this process's memory, bounded in bytes (pure logic, no I/O).

Coherence comes from Redis (see ``_tracking``): the store is *live* only while Redis's client tracking is
established; every invalidation it delivers drops the key here, a flush (``FLUSHALL``, tracking lost, a new
policy) drops everything. What this module adds is the bookkeeping that makes that correct under concurrency:

- **Fills are guarded.** A miss that will read Redis first takes a :class:`Fill` (``begin``). An invalidation
  of that key, or any flush, that arrives while the read is in flight spoils the fill, and ``finish`` then
  refuses to store the reply: the invalidation may describe a write that Redis applied *after* it answered
  the read, and the reply would be stale with no further invalidation to come. A fill begun while the store
  was not live is refused too (tracking only reports writes made after it was switched on).
- **Local TTLs never outlive Redis's.** ``finish`` takes the key's remaining TTL as Redis reported it and counts
  it from when the read was *sent* (``Fill.started``), so the local copy expires no later than the key does.
- **Bounded in bytes, W-TinyLFU eviction.** Measured against plain LRU on the Zipf traces of ``make bench``
  (docs/benchmarks.md, section "near"), and kept because it had the higher hit ratio at every capacity while
  costing ~0.4 µs more per hit (far less than the Redis round trips it saves): a window LRU (1% of the bytes) admits every new entry; an entry leaving the
  window enters the main segmented LRU (probation 20% / protected 80%) only if a frequency sketch says it was
  requested more often recently than the entry it would evict (Einziger, Friedman, Manes: "TinyLFU: A Highly
  Efficient Cache Admission Policy", 2017; the design of Caffeine). One-hit wonders therefore pass through the
  small window without flushing the keys that are hot.

Keys are full Redis keys (prefix included), exactly as tracking reports them.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from ._envelope import Entry, decode_foreign, decode_payload

__all__ = ["SLOT_OVERHEAD", "Fill", "FrequencySketch", "NearCache", "Slot"]

#: Bytes charged per entry on top of its key's and payload's lengths: the slot, the Entry, its ETag, the str
#: and bytes object headers, the dict and OrderedDict entries. Measured with tracemalloc by
#: ``benchmarks/near.py`` (real/accounted within a few percent at 100 B-10 KB values; see docs/benchmarks.md).
SLOT_OVERHEAD = 500

WINDOW, PROBATION, PROTECTED = 0, 1, 2
_WINDOW_SHARE = 0.01
_PROTECTED_SHARE = 0.80
_MASK64 = (1 << 64) - 1
_HALVE = bytes(i >> 1 for i in range(256))  # bytes.translate table: every counter halved, in C


class FrequencySketch:
    """Approximate recent access counts in 4-bit-style saturating counters (two hashes into one table).

    Cheaper than :class:`mobius_cache._admission.FrequencySketch` (one table, two probes, no doorkeeper; ~0.3 µs
    a record instead of ~2 µs) because it runs on every near-cache *hit*, where a microsecond is most of the
    cost. Over-counts only on collisions (both probes colliding); aged by halving every counter once
    ``sample`` records have been made, so past popularity fades.
    """

    __slots__ = ("_shift", "_table", "records", "sample")

    def __init__(self, width: int) -> None:
        if width < 64 or width & (width - 1):
            raise ValueError(f"width must be a power of two >= 64, not {width}")
        self._table = bytearray(width)
        self._shift = 64 - (width.bit_length() - 1)
        self.sample = 10 * width
        self.records = 0

    def record(self, key: Hashable) -> None:
        h = hash(key)
        shift, table = self._shift, self._table
        a = ((h * 0x9E3779B97F4A7C15) & _MASK64) >> shift
        b = ((h * 0xBF58476D1CE4E5B9) & _MASK64) >> shift
        ca, cb = table[a], table[b]
        low = ca if ca < cb else cb
        if low < 15:  # conservative update: raise only the smaller counter(s)
            if ca == low:
                table[a] = low + 1
            if cb == low:
                table[b] = low + 1
        self.records += 1
        if self.records >= self.sample:
            self._table = bytearray(table.translate(_HALVE))
            self.records = 0

    def estimate(self, key: Hashable) -> int:
        h = hash(key)
        shift, table = self._shift, self._table
        ca = table[((h * 0x9E3779B97F4A7C15) & _MASK64) >> shift]
        cb = table[((h * 0xBF58476D1CE4E5B9) & _MASK64) >> shift]
        return ca if ca < cb else cb


class Slot:
    """One cached value. ``entry`` is what the sidecar serves; ``value()`` what ``Cache.get`` returns."""

    __slots__ = ("entry", "expires", "foreign", "hit_key", "key", "segment", "size")

    def __init__(
        self, key: str, entry: Entry, foreign: bool, expires: float, size: int, hit_key: tuple[str, str, str]
    ) -> None:
        self.key = key
        self.entry = entry
        self.foreign = foreign  # not written by this layer (no envelope): decoded as Cache.get decodes it
        self.expires = expires
        self.size = size
        self.hit_key = hit_key  # the metrics counter a hit increments: (namespace, "get", "hit")
        self.segment = WINDOW

    def value(self) -> Any:
        """A fresh decoded value on every call, so a caller that mutates it cannot change the cached copy."""
        entry = self.entry
        return decode_foreign(entry.data) if self.foreign else decode_payload(entry.format, entry.data)


@dataclass(slots=True)
class Fill:
    """A read of ``key`` from Redis that may be stored when it returns (see the module docstring)."""

    key: str
    generation: int
    started: float
    valid: bool = True


class NearCache:
    """A byte-bounded, W-TinyLFU-evicted map from Redis key to :class:`Slot`, live only while coherent."""

    def __init__(self, max_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, not {max_bytes}")
        self.max_bytes = max_bytes
        self._clock = clock
        self._slots: dict[str, Slot] = {}
        self._segments: tuple[OrderedDict[str, None], ...] = (OrderedDict(), OrderedDict(), OrderedDict())
        self._bytes = [0, 0, 0]
        # ~4 counters per entry of 512 B: plenty for the sizes the near cache holds, bounded for huge limits.
        # The sketch's table counts against the limit too (1 MiB of a 64 MiB near cache).
        width = 1 << max(10, min(22, (max_bytes // 128).bit_length()))
        while width > 1024 and width > max_bytes // 8:
            width >>= 1
        self.sketch = FrequencySketch(width)
        self._fixed = width
        entries = max(1, max_bytes - self._fixed)
        self._window_max = max(1, int(entries * _WINDOW_SHARE))
        self._main_max = max(1, entries - self._window_max)
        self._protected_max = int(self._main_max * _PROTECTED_SHARE)
        self._pending: dict[str, list[Fill]] = {}
        self._generation = 0
        self.live = False
        # Counters (read by the metrics collector and stats()).
        self.hits = 0
        self.misses = 0
        self.evictions = 0  # entries pushed out for room (an oldest window entry that lost the duel too)
        self.rejected = 0  # replies too large to store at all
        self.expired = 0
        self.invalidated = 0  # keys dropped by an invalidation (tracking, or a write through this instance)
        self.flushes = 0

    # --- state ------------------------------------------------------------------------------------------
    @property
    def fixed_bytes(self) -> int:
        """What an empty near cache holds (the frequency sketch's table)."""
        return self._fixed

    @property
    def bytes(self) -> int:
        """Bytes held: the entries as accounted (see :data:`SLOT_OVERHEAD`) and the frequency sketch."""
        b = self._bytes
        return self._fixed + b[0] + b[1] + b[2]

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, key: object) -> bool:
        return key in self._slots

    def set_live(self, live: bool) -> None:
        """Tracking established (True) or lost (False). Both flush: nothing cached while deaf may be served,
        and nothing read before tracking began may be stored."""
        self.flush()
        self.live = live

    def flush(self) -> None:
        """Drop everything and spoil every fill in flight."""
        self._slots.clear()
        for segment in self._segments:
            segment.clear()
        self._bytes = [0, 0, 0]
        self._generation += 1
        self._pending.clear()
        self.flushes += 1

    # --- the hot path -----------------------------------------------------------------------------------
    def get(self, key: str) -> Slot | None:
        """The live slot of ``key``, or None. Counts the hit; a miss is counted by :meth:`begin`."""
        slot = self._slots.get(key)
        if slot is None:
            return None
        if slot.expires <= self._clock():
            self._remove(slot)
            self.expired += 1
            return None
        self.hits += 1
        self.sketch.record(key)
        segment = slot.segment
        if segment == PROBATION:
            self._promote(slot)
        else:
            self._segments[segment].move_to_end(key)
        return slot

    # --- filling ----------------------------------------------------------------------------------------
    def begin(self, key: str) -> Fill | None:
        """Start a guarded read of ``key`` (a near miss); None when the store is not live."""
        if not self.live:
            return None
        self.misses += 1
        self.sketch.record(key)
        fill = Fill(key, self._generation, self._clock())
        pending = self._pending.get(key)
        if pending is None:
            self._pending[key] = [fill]
        else:
            pending.append(fill)
        return fill

    def abort(self, fill: Fill) -> None:
        """The read failed or its reply is not cacheable: forget the fill."""
        pending = self._pending.get(fill.key)
        if pending is not None:
            if fill in pending:
                pending.remove(fill)
            if not pending:
                del self._pending[fill.key]

    def finish(
        self, fill: Fill, entry: Entry, foreign: bool, ttl_ms: int, hit_key: tuple[str, str, str]
    ) -> bool:
        """Store the reply of a guarded read, unless it was spoiled. ``ttl_ms``: Redis's PTTL (-1 = none)."""
        self.abort(fill)
        if not fill.valid or fill.generation != self._generation or not self.live:
            return False
        if ttl_ms == -1:
            expires = float("inf")
        elif ttl_ms > 0:
            expires = fill.started + ttl_ms / 1000
        else:
            return False  # -2: gone by the time its TTL was read; 0: expiring now
        size = len(entry.data) + len(fill.key) + SLOT_OVERHEAD
        if size > self._main_max:
            self.rejected += 1
            return False
        old = self._slots.get(fill.key)
        if old is not None:
            self._remove(old)
        slot = Slot(fill.key, entry, foreign, expires, size, hit_key)
        self._slots[fill.key] = slot
        self._segments[WINDOW][fill.key] = None
        self._bytes[WINDOW] += size
        if self._bytes[WINDOW] > self._window_max:
            self._drain_window()
        return True

    # --- invalidation -----------------------------------------------------------------------------------
    def invalidate(self, keys: Iterable[str]) -> int:
        """Drop ``keys`` and spoil their fills in flight. Returns how many cached entries were dropped."""
        dropped = 0
        slots, pending = self._slots, self._pending
        for key in keys:
            slot = slots.get(key)
            if slot is not None:
                self._remove(slot)
                dropped += 1
            fills = pending.pop(key, None)
            if fills is not None:
                for fill in fills:
                    fill.valid = False
        self.invalidated += dropped
        return dropped

    # --- W-TinyLFU ----------------------------------------------------------------------------------------
    def _remove(self, slot: Slot) -> None:
        del self._slots[slot.key]
        del self._segments[slot.segment][slot.key]
        self._bytes[slot.segment] -= slot.size

    def _move(self, slot: Slot, segment: int) -> None:
        del self._segments[slot.segment][slot.key]
        self._bytes[slot.segment] -= slot.size
        slot.segment = segment
        self._segments[segment][slot.key] = None
        self._bytes[segment] += slot.size

    def _promote(self, slot: Slot) -> None:
        """A hit in probation moves to protected; protected's overflow goes back to probation's head."""
        self._move(slot, PROTECTED)
        protected = self._segments[PROTECTED]
        while self._bytes[PROTECTED] > self._protected_max and len(protected) > 1:
            self._move(self._slots[next(iter(protected))], PROBATION)

    def _drain_window(self) -> None:
        window = self._segments[WINDOW]
        while self._bytes[WINDOW] > self._window_max and window:
            self._admit(self._slots[next(iter(window))])

    def _admit(self, candidate: Slot) -> None:
        """The window's oldest entry asks for a place in the main segments: it gets one if there is room, or
        if it was requested more often recently than each entry it would push out."""
        main = self._bytes[PROBATION] + self._bytes[PROTECTED]
        estimate = self.sketch.estimate
        wanted = estimate(candidate.key)
        while main + candidate.size > self._main_max:
            victim_segment = self._segments[PROBATION] or self._segments[PROTECTED]
            if not victim_segment:
                break
            victim = self._slots[next(iter(victim_segment))]
            if wanted > estimate(victim.key):
                self._remove(victim)
                self.evictions += 1
                main -= victim.size
            else:
                self._remove(candidate)
                self.evictions += 1
                return
        self._move(candidate, PROBATION)

    # --- reporting ----------------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        lookups = self.hits + self.misses
        return {
            "live": self.live,
            "entries": len(self._slots),
            "bytes": self.bytes,
            "max_bytes": self.max_bytes,
            "hits": self.hits,
            "misses": self.misses,
            "hit_ratio": round(self.hits / lookups, 4) if lookups else 0.0,
            "evictions": self.evictions,
            "rejected": self.rejected,
            "expired": self.expired,
            "invalidated": self.invalidated,
            "flushes": self.flushes,
        }
