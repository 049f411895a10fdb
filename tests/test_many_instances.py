"""Several app instances (separate processes, each with its own ``Cache``) on one Redis: an invalidation made
by one is seen by all the others at once, through the events channel."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from prometheus_client import CollectorRegistry

from mobius_cache import Cache
from tests.conftest import make_config
from tests.servers import RedisServer

_INSTANCE = r"""
import asyncio, json, sys, time
from mobius_cache import Cache, CacheConfig
from prometheus_client import CollectorRegistry

async def main():
    cfg = CacheConfig(redis_url=sys.argv[1], cache_prefix=sys.argv[2], redis_min_connections=1)
    async with Cache(cfg, registry=CollectorRegistry()) as cache:
        got = asyncio.Event()
        events = []
        def on_event(event):
            events.append({**event, "received": time.time()})
            got.set()
        cache.on_invalidate(on_event)
        await cache.invalidator.wait_subscribed()
        before = await cache.get("project:1:metadata")
        print(json.dumps({"ready": True, "before": before}), flush=True)
        await asyncio.wait_for(got.wait(), 20)
        after = await cache.get("project:1:metadata")
        from mobius_cache import MISS
        print(json.dumps({"event": events[0], "after_is_miss": after is MISS}), flush=True)

asyncio.run(main())
"""


async def test_an_invalidation_reaches_every_instance(redis_server: RedisServer) -> None:
    prefix = "multi:"
    async with Cache(make_config(redis_server.url, prefix), registry=CollectorRegistry()) as cache:
        await cache.set("project:1:metadata", {"v": 1})
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _INSTANCE, redis_server.url, prefix],
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        try:
            for p in procs:
                assert p.stdout is not None
                line = json.loads(p.stdout.readline())
                assert line == {"ready": True, "before": {"v": 1}}  # each instance sees the shared value
            sent = time.time()
            assert await cache.invalidate("project:1:metadata") == 1
            delays = []
            for p in procs:
                assert p.stdout is not None
                out = json.loads(p.stdout.readline())
                assert out["event"]["kind"] == "key" and out["event"]["items"] == ["project:1:metadata"]
                assert out["event"]["origin"] == cache.instance_id
                assert out["after_is_miss"] is True
                delays.append(out["event"]["received"] - sent)
                assert p.wait(10) == 0
            print(f"\nevent delivery to 3 processes: max {max(delays) * 1000:.1f} ms")
            assert max(delays) < 1.0
        finally:
            for p in procs:
                p.kill()
