"""A real sidecar process on a ``redis+sentinel://`` URL: it serves through the master, and when the master is
SIGKILLed under load, reads answer 404 (miss or bypass) at once, writes 503 with Retry-After, invalidations 202
(queued, then replayed on the new master), and writes land on the new master once it is promoted."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.failover import run_failover, sidecar_ops
from tests.servers import GROUP_PASSWORD, GROUP_SENTINEL_PASSWORD, HOST, SentinelGroup, sentinel_group
from tests.sidecar.procs import SidecarProcess

PW, SENTINEL_PW = GROUP_PASSWORD, GROUP_SENTINEL_PASSWORD


@pytest.fixture
def group() -> Iterator[SentinelGroup]:
    """A group of this test's own (its master is killed), with passwords like the shared one."""
    with sentinel_group(password=PW, sentinel_password=SENTINEL_PW) as g:
        yield g


def sidecar_env(**extra: str) -> dict[str, str]:
    """Passwords from the environment (as the chart passes them), a short breaker window."""
    return {
        "MOBIUS_REDIS_PASSWORD": PW,
        "MOBIUS_REDIS_SENTINEL_PASSWORD": SENTINEL_PW,
        "MOBIUS_BREAKER_RESET_TIMEOUT": "1.0",
        **extra,
    }


@pytest.mark.slow
async def test_sigkill_of_the_master_under_load_through_the_sidecar(group: SentinelGroup) -> None:
    proc = SidecarProcess(group.url(), env=sidecar_env()).start()
    try:
        with proc.http() as http:
            ready = http.get("/readyz").json()
            assert ready["redis"]["up"] is True
            stats = http.get("/v1/stats").json()
            assert stats["redis"]["role"] == "master"
            assert stats["redis"]["sentinel"]["master"] == f"{HOST}:{group.master().port}"
        async with httpx.AsyncClient(base_url=proc.url, timeout=10.0) as client:
            run = await run_failover(group, sidecar_ops(client))
        summary = run.summary()
        print("sidecar failover:", summary)
        assert run.write_gap_s is not None and run.write_gap_s <= 10.0, summary
        assert run.read_failures == [], run.read_failures[:5]  # only 200 and 404 (miss/bypass), never 5xx
        assert run.hangs == [], run.hangs[:5]
        assert summary["writes"].keys() <= {"ok", "unavailable"}, summary["writes"]  # 204 or 503+Retry-After
        assert summary["invalidations"].keys() <= {"ok", "queued"}, summary["invalidations"]  # 200 or 202
        assert summary["invalidations"].get("queued", 0) > 0
        assert run.drained and run.lost_invalidations == []
        assert run.kept_checked > 0 and run.kept_missing == 0
        assert summary["writes_checked_on_new_master"] > 0 and run.lost_writes == []
        with proc.http() as http:
            stats = http.get("/v1/stats").json()
        assert stats["redis"]["sentinel"]["master"] == f"{HOST}:{run.new_port}"
        assert stats["circuit"] == "closed" and stats["invalidation_queue"] == 0
    finally:
        proc.close()


def test_a_bad_sentinel_url_stops_the_sidecar_with_one_clear_line() -> None:
    proc = SidecarProcess("redis+sentinel://127.0.0.1:26379")
    with pytest.raises(RuntimeError, match="names no master"):
        proc.start(timeout=15)
    proc.close()
