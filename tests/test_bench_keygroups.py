"""The key-group benchmark's GET probe is open loop: it keeps sending on schedule while Redis does not answer, so
a stall shows in the latency of every GET that fell due during it; and stopping it keeps every reply."""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.keygroups import Probe
from tests.dashboards.stack import poll
from tests.servers import RedisServer

RATE = 1000.0


def test_probe_times_gets_from_when_they_were_due(redis_server: RedisServer, tmp_path: Path) -> None:
    client = redis_server.client()
    client.mset({"a": "1", "b": "2"})
    probe = Probe.start(redis_server.port, RATE, ["a", "b"], tmp_path)
    try:
        # Running once Redis has served some of its GETs.
        poll(
            "the probe to send",
            lambda: client.info("commandstats").get("cmdstat_get", {}).get("calls", 0) > 200,
        )
        stalled = time.monotonic()
        redis_server.freeze()
        time.sleep(0.2)
        redis_server.thaw()
        time.sleep(0.3)
    finally:
        samples = probe.stop()
        client.close()
    due_in_stall = [latency for due, latency in samples if stalled + 0.02 <= due <= stalled + 0.1]
    # About 80 GETs fell due in that span; each waited for the thaw, 100 ms or more after it was due.
    assert len(due_in_stall) >= 40, len(due_in_stall)
    assert min(due_in_stall) >= 0.09, sorted(due_in_stall)[:5]
    # Every GET sent got its reply: none lost when the probe was stopped.
    first, last = min(d for d, _ in samples), max(d for d, _ in samples)
    assert len(samples) >= (last - first) * RATE * 0.99
