"""Admission control: a TinyLFU-style frequency sketch that lets a cache decline to store one-hit wonders.

Redis decides what to *evict*; it has no say in what gets *stored*. Under a skewed (Zipf) workload most keys
are requested once in a long while, and storing each of them on its miss pushes out a key that will be
requested again. TinyLFU (Einziger, Friedman, Manes, 2017) answers "has this key been popular lately?" in a
few bytes per key: a count-min sketch of recent accesses, aged by halving every counter after a sample
period, with a "doorkeeper" (a small Bloom filter) that absorbs each key's first access so that one-hit
wonders never reach the counters at all. A remote cache cannot see the eviction victim, so instead of
TinyLFU's candidate-vs-victim duel, :class:`Admission` stores a key once it has been seen ``threshold``
times within the current sample period.

Pure logic, no I/O. Keys are hashed with Python's ``hash`` (salted per process): a sketch lives in one
process, so its hashes never need to agree with another's.
"""

from __future__ import annotations

from collections.abc import Hashable

__all__ = ["Admission", "FrequencySketch"]

_MASK64 = (1 << 64) - 1
# Odd 64-bit multipliers (splitmix64 / golden-ratio hashing), one per row; the doorkeeper has two more.
_SEEDS = (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB, 0xD6E8FEB86659FD93)
_MAX_COUNT = 15  # 4-bit counters, as in TinyLFU: popularity beyond 15 recent accesses does not matter


class FrequencySketch:
    """How often each key was seen recently, in ``depth`` rows of ``width`` small counters.

    ``estimate`` never under-counts (within the current period) and over-counts only on hash collisions;
    conservative update (raise only the smallest counters) keeps those rare. After ``sample_size`` records
    every counter is halved and the doorkeeper cleared, so old popularity fades.
    """

    def __init__(self, width: int = 4096, depth: int = 4, sample_size: int | None = None) -> None:
        if width < 16 or width & (width - 1):
            raise ValueError(f"width must be a power of two >= 16, not {width}")
        if not 1 <= depth <= 4:
            raise ValueError(f"depth must be between 1 and 4, not {depth}")
        self.width = width
        self.depth = depth
        self.sample_size = sample_size if sample_size is not None else 10 * width
        if self.sample_size < 1:
            raise ValueError(f"sample_size must be positive, not {self.sample_size}")
        self._shift = 64 - (width.bit_length() - 1)
        self._counts = [bytearray(width) for _ in range(depth)]
        self._rows = list(zip(self._counts, _SEEDS[:depth], strict=True))
        # The doorkeeper is a Bloom filter with ~8 bits per key it may see in one period (2 probes: at most
        # ~5% false positives at the end of a period, far fewer before).
        door_bits = max(64, 1 << (8 * self.sample_size - 1).bit_length())
        self._door = bytearray(door_bits // 8)
        self._door_shift = 64 - (door_bits.bit_length() - 1)
        self.records = 0  # since the last halving
        self.resets = 0

    def _door_open(self, h: int) -> bool:
        """Test-and-set the doorkeeper's two bits: True when the key had already passed (both were set)."""
        shift, door = self._door_shift, self._door
        a = ((h * 0xA0761D6478BD642F) & _MASK64) >> shift
        b = ((h * 0xE7037ED1A0B428DB) & _MASK64) >> shift
        seen = bool(door[a >> 3] >> (a & 7) & 1 and door[b >> 3] >> (b & 7) & 1)
        door[a >> 3] |= 1 << (a & 7)
        door[b >> 3] |= 1 << (b & 7)
        return seen

    def _door_has(self, h: int) -> bool:
        shift, door = self._door_shift, self._door
        a = ((h * 0xA0761D6478BD642F) & _MASK64) >> shift
        b = ((h * 0xE7037ED1A0B428DB) & _MASK64) >> shift
        return bool(door[a >> 3] >> (a & 7) & 1 and door[b >> 3] >> (b & 7) & 1)

    def record(self, key: Hashable) -> None:
        """Count one access to ``key``."""
        h = hash(key) & _MASK64
        if self._door_open(h):  # the first access only opens the door
            shift = self._shift
            cells = [(row, ((h * seed) & _MASK64) >> shift) for row, seed in self._rows]
            low = min(row[i] for row, i in cells)
            if low < _MAX_COUNT:
                for row, i in cells:
                    if row[i] == low:  # conservative update: raise only the smallest counters
                        row[i] = low + 1
        self.records += 1
        if self.records >= self.sample_size:
            self._age()

    def estimate(self, key: Hashable) -> int:
        """Recent accesses of ``key`` (0 when never seen in this period; at most 16)."""
        h = hash(key) & _MASK64
        if not self._door_has(h):
            return 0
        shift = self._shift
        return 1 + min(row[((h * seed) & _MASK64) >> shift] for row, seed in self._rows)

    def _age(self) -> None:
        for row in self._counts:
            row[:] = bytes(c >> 1 for c in row)
        self._door[:] = bytes(len(self._door))
        self.records = 0
        self.resets += 1


class Admission:
    """Decides, on a miss, whether a value is worth storing: only keys seen ``threshold`` times recently.

    Call :meth:`record` on every read (hit or miss) and :meth:`admit` before storing after a miss.
    ``threshold=1`` admits everything (no admission control).
    """

    def __init__(self, threshold: int = 2, sketch: FrequencySketch | None = None) -> None:
        if threshold < 1:
            raise ValueError(f"threshold must be at least 1, not {threshold}")
        self.threshold = threshold
        self.sketch = sketch or FrequencySketch()
        self.admitted = 0
        self.declined = 0

    def record(self, key: Hashable) -> None:
        self.sketch.record(key)

    def admit(self, key: Hashable) -> bool:
        ok = self.threshold <= 1 or self.sketch.estimate(key) >= self.threshold
        if ok:
            self.admitted += 1
        else:
            self.declined += 1
        return ok
