"""Hit ratio on real Redis under memory pressure, next to Belady's optimum on the very same trace.

Each request of a Zipf trace runs cache-aside as one server-side script (GET; on a miss, SET a fixed-size
value), pipelined in small chunks: the order of requests is exactly the trace's, the commands are tiny (the
value is made server-side, so query buffers barely count against maxmemory) and Redis evicts before each
script as it would before a command. maxmemory is calibrated to hold 1%, 5% and 10% of the keys; the number
of keys Redis actually held is measured (DBSIZE during the second half of the run) and OPT is computed for
that same number of keys, so the comparison is capacity for capacity.

Admission experiment: the same runs with a TinyLFU-style sketch in front (``mobius_cache._admission``): a
miss is stored only when its key was seen at least twice in the sketch's recent period.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import redis

from mobius_cache._admission import Admission, FrequencySketch

from .common import Progress, redis_server
from .traces import belady_hits, hot_set, zipf_trace

__all__ = ["run"]

VALUE_BYTES = 1000
CHUNK = 200  # requests per pipeline
_ASIDE = """#!lua flags=allow-oom
if redis.call('GET', KEYS[1]) then return 1 end
if ARGV[1] == '1' then redis.call('SET', KEYS[1], string.rep('x', tonumber(ARGV[2]))) end
return 0
"""


def _used(r: redis.Redis) -> int:
    return int(r.info("memory")["used_memory"])


def _per_key_bytes(r: redis.Redis, sha: str) -> float:
    """Bytes each stored key adds to used_memory: measured (in the same small chunks as the runs)."""
    r.flushall()
    base = _used(r)
    for start in range(0, 5000, CHUNK):
        pipe = r.pipeline(transaction=False)
        for i in range(start, start + CHUNK):
            pipe.evalsha(sha, 1, f"k:{10**9 + i}", 1, VALUE_BYTES)
        pipe.execute()
    per_key = (_used(r) - base) / 5000
    r.flushall()
    return per_key


def _replay(
    r: redis.Redis, sha: str, trace: np.ndarray, gate: Admission | None, target: int, per_key: float
) -> tuple[np.ndarray, list[int], int]:
    """Run the trace; returns (hit per request, DBSIZE samples from the second half, stores declined).

    During the first half, once Redis evicts, maxmemory is nudged toward ``target`` keys: used_memory also
    holds buffers and allocator slack that a fixed calibration cannot know, and at 1% capacity those are a
    large share. The second half runs with a fixed maxmemory and is where the key count is sampled."""
    hits = np.zeros(len(trace), dtype=np.bool_)
    flags = np.ones(len(trace), dtype=np.bool_)
    sizes: list[int] = []
    maxmemory = int(r.config_get("maxmemory")["maxmemory"] or 0)
    for start in range(0, len(trace), CHUNK):
        pipe = r.pipeline(transaction=False)
        for i in range(start, min(start + CHUNK, len(trace))):
            key = f"k:{trace[i]}"
            if gate is not None:
                gate.record(key)
                flags[i] = gate.admit(key)
            pipe.evalsha(sha, 1, key, 1 if flags[i] else 0, VALUE_BYTES)
        hits[start : start + CHUNK] = [bool(x) for x in pipe.execute()]
        if (start // CHUNK) % 10 == 0:
            held = int(r.dbsize())
            if start >= len(trace) // 2:
                sizes.append(held)
            elif int(r.info("stats")["evicted_keys"]) > 0 and abs(held - target) > 0.02 * target:
                maxmemory += int((target - held) * per_key)
                r.config_set("maxmemory", max(1, maxmemory))
    declined = int((~hits & ~flags).sum())
    return hits, sizes, declined


def run(quick: bool, progress: Progress) -> dict[str, Any]:
    n_keys, length = (10_000, 40_000) if quick else (30_000, 300_000)
    alphas = (1.0,) if quick else (0.9, 1.0, 1.2)
    fractions = (0.01, 0.05, 0.10)
    policies = ("allkeys-lru", "allkeys-lfu")
    rows: list[dict[str, Any]] = []
    with redis_server() as server, server.client() as r:
        sha = str(r.script_load(_ASIDE))
        per_key = _per_key_bytes(r, sha)
        progress(f"hitratio: {per_key:.0f} bytes of used_memory per {VALUE_BYTES} B key")
        for alpha in alphas:
            trace = zipf_trace(n_keys, length, alpha, seed=42)
            hot = np.isin(trace, np.fromiter(hot_set(trace, 0.01), dtype=np.int64))
            opt_cache: dict[int, np.ndarray] = {}
            for fraction in fractions:
                target = max(1, int(n_keys * fraction))
                for policy in policies:
                    for admission in (False, True) if alpha == 1.0 else (False,):
                        r.flushall()
                        r.config_set("maxmemory-policy", policy)
                        r.config_set("maxmemory", int(_used(r) + target * per_key))
                        width = 1 << max(4, (target - 1).bit_length())
                        gate = Admission(2, FrequencySketch(width=width)) if admission else None
                        hits, sizes, declined = _replay(r, sha, trace, gate, target, per_key)
                        r.config_set("maxmemory", 0)
                        held = int(np.median(sizes)) if sizes else target
                        if held not in opt_cache:
                            opt_cache[held] = belady_hits(trace, held)
                        opt = opt_cache[held]
                        row = {
                            "alpha": alpha,
                            "capacity": fraction,
                            "policy": policy,
                            "admission": admission,
                            "keys_target": target,
                            "keys_held": held,
                            "hit_ratio": float(hits.mean()),
                            "opt": float(opt.mean()),
                            "vs_opt": float(hits.mean() / opt.mean()) if opt.mean() else 0.0,
                            "hot_hit_ratio": float(hits[hot].mean()),
                            "hot_opt": float(opt[hot].mean()),
                            "declined": declined,
                            "evicted": int(r.info("stats")["evicted_keys"]),
                        }
                        rows.append(row)
                        r.config_resetstat()
                        progress(
                            f"hitratio: alpha {alpha} cap {fraction:.0%} {policy}"
                            f"{' +admission' if admission else ''}: {row['hit_ratio']:.3f} "
                            f"(OPT {row['opt']:.3f}, {row['vs_opt']:.2f}x; {held} keys held)"
                        )
    return {
        "keys": n_keys,
        "requests": length,
        "value_bytes": VALUE_BYTES,
        "bytes_per_key": round(per_key, 1),
        "maxmemory_samples": 5,
        "rows": rows,
    }
