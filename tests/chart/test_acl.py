"""The chart's Redis ACL users on a real redis-server: each can do its job and nothing more.

The rules are the rendered ``users.acl`` (charts/mobius-cache/files/redis/users.acl), turned into an aclfile by
the chart's own start-redis.sh. "Its job" is the real client doing everything it does (the library, a sidecar
process, the operator's redis_admin, redis_exporter) with ``ACL LOG`` staying empty; "nothing more" is a
forbidden command answered with NOPERM and logged against that user.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.chart import clients
from tests.chart.nodes import TEST_ADMIN, ChartNode, Rendered, acl_rules, chart_node, need, render_redis
from tests.chart.test_rendered_redis import load_helm_test

USERS = ("mobius-cache", "mobius-operator", "mobius-exporter")


@pytest.fixture(scope="module")
def rendered() -> Rendered:
    return render_redis({})


@pytest.fixture(scope="module")
def node(rendered: Rendered) -> Iterator[ChartNode]:
    need("redis-server", "redis-cli")
    with chart_node(rendered) as n:
        yield n


@pytest.fixture
def fresh_log(node: ChartNode) -> ChartNode:
    with node.admin() as c:
        c.acl_log_reset()
    return node


def refused(node: ChartNode) -> list[tuple[str, str]]:
    """(user, command or key) of every ACL LOG entry: what was refused since the last reset."""
    return [(e["username"], e["object"]) for e in node.acl_log() if e["username"] != TEST_ADMIN]


def test_the_rules_file_is_what_redis_runs(node: ChartNode, rendered: Rendered) -> None:
    rules = acl_rules(rendered)
    assert set(rules) == {"default", *USERS}
    with node.admin(decode_responses=True) as c:
        assert set(c.acl_users()) == {"default", TEST_ADMIN, *USERS}
        lines = {line.split()[1]: line for line in c.acl_list()}
        assert lines["default"].startswith("user default off ") and lines["default"].endswith(" -@all")
        for user in USERS:
            assert lines[user].startswith(f"user {user} on #")
    aclfile = node.root / "run" / "users.acl"
    text = aclfile.read_text()
    assert stat.S_IMODE(aclfile.stat().st_mode) == 0o600
    for user in USERS:
        assert rendered.passwords[user] not in text, "a password in clear in the aclfile"
        assert f"user {user} #" in text  # its SHA-256 instead


def test_no_login_no_access(node: ChartNode) -> None:
    with node.client() as anonymous, pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    with node.client("default", "anything") as default, pytest.raises(redis.AuthenticationError):
        default.ping()
    with node.client("mobius-cache", "wrong") as wrong, pytest.raises(redis.AuthenticationError):
        wrong.ping()
    with node.client("mobius-cache") as c:
        assert c.ping()


FORBIDDEN: dict[str, list[tuple[Any, ...]]] = {
    "mobius-cache": [
        ("FLUSHALL",),
        ("FLUSHDB",),
        ("CONFIG", "SET", "maxmemory", "1"),
        ("CONFIG", "GET", "maxmemory"),
        ("KEYS", "*"),
        ("SLOWLOG", "RESET"),
        ("SHUTDOWN", "NOSAVE"),
        ("CLIENT", "KILL", "TYPE", "normal"),
        ("CLIENT", "LIST"),
        ("ACL", "LIST"),
        ("SWAPDB", "0", "1"),
        ("SCRIPT", "FLUSH"),
        ("REPLICAOF", "127.0.0.1", "1"),
        ("BGSAVE",),
        ("MIGRATE", "127.0.0.1", "1", "k", "0", "10"),
        ("RESTORE", "k", "0", "x"),
        ("MODULE", "LIST"),
        ("DEL", "k"),
    ],
    "mobius-operator": [
        ("GET", "k"),
        ("SET", "k", "v"),
        ("SCAN", "0"),
        ("UNLINK", "k"),
        ("KEYS", "*"),
        ("FLUSHALL",),
        ("EVAL", "return 1", "0"),
        ("PUBLISH", "c", "m"),
        ("CONFIG", "REWRITE"),
        ("CONFIG", "RESETSTAT"),
        ("CLIENT", "KILL", "TYPE", "normal"),
        ("ACL", "LIST"),
        ("SHUTDOWN", "NOSAVE"),
    ],
    "mobius-exporter": [
        ("GET", "k"),
        ("SET", "k", "v"),
        ("UNLINK", "k"),
        ("CONFIG", "GET", "maxmemory"),
        ("CONFIG", "SET", "maxmemory", "1"),
        ("FLUSHALL",),
        ("KEYS", "*"),
        ("CLIENT", "KILL", "TYPE", "normal"),
        ("CLIENT", "LIST"),
        ("PUBLISH", "c", "m"),
        ("ACL", "LIST"),
    ],
}


@pytest.mark.parametrize(
    ("user", "command"), [(user, command) for user, commands in FORBIDDEN.items() for command in commands]
)
def test_a_forbidden_command_gets_noperm(fresh_log: ChartNode, user: str, command: tuple[Any, ...]) -> None:
    with fresh_log.client(user) as c, pytest.raises(redis.exceptions.NoPermissionError):
        c.execute_command(*command)
    assert refused(fresh_log) == [(user, str(command[0]).lower() + _sub(command))]


def _sub(command: tuple[Any, ...]) -> str:
    """ACL LOG names a refused subcommand as ``config|set``."""
    has_sub = {"CONFIG", "CLIENT", "ACL", "SCRIPT", "MODULE", "SLOWLOG"}
    return f"|{str(command[1]).lower()}" if command[0] in has_sub else ""


def test_the_exporters_scripts_cannot_write_or_read_values(fresh_log: ChartNode) -> None:
    with fresh_log.admin() as admin:
        admin.set("secret", "value")
    with fresh_log.client("mobius-exporter") as c:
        for body in ("return redis.call('SET', 'x', '1')", "return redis.call('GET', 'secret')"):
            with pytest.raises(redis.ResponseError, match=r"(?i)no permissions|can't run this command"):
                c.eval(body, 0)
        assert c.eval("return redis.call('MEMORY', 'USAGE', 'secret')", 0) > 0  # sizes, never values
    with fresh_log.admin() as admin:
        admin.delete("secret")


async def test_the_library_does_everything_as_the_cache_user(fresh_log: ChartNode) -> None:
    health = await clients.exercise_library(
        clients.cache_url(fresh_log), fresh_log.rendered.passwords["mobius-cache"]
    )
    assert health["maxmemory"] == 1024**3
    assert refused(fresh_log) == [], "the cache user lacks a command the library sends"


def test_a_sidecar_process_does_everything_as_the_cache_user(fresh_log: ChartNode) -> None:
    password = fresh_log.rendered.passwords["mobius-cache"]
    with clients.running_sidecar(clients.cache_url(fresh_log), password) as sidecar:
        stats = clients.exercise_sidecar(sidecar)
    assert stats["redis"]["maxmemory"] == 1024**3
    assert refused(fresh_log) == [], "the cache user lacks a command the sidecar sends"


async def test_the_operator_applies_a_cacheconfig_as_its_user(fresh_log: ChartNode) -> None:
    try:
        seen = await clients.operator_applies(fresh_log)
        assert seen.corrected["maxmemory"] == (str(1024**3), str(48 * clients.MB))
        assert seen.stats.max_memory == 48 * clients.MB
        assert (await clients.operator_applies(fresh_log)).corrected == {}
        assert refused(fresh_log) == []
    finally:
        with fresh_log.admin() as c:
            c.config_set("maxmemory", "1gb")
            c.config_set("maxmemory-policy", "allkeys-lru")


def test_no_user_may_touch_files_debug_or_modules(node: ChartNode) -> None:
    """What CONFIG SET could abuse (dir, dbfilename: writing files) is protected for every user, the
    operator's included, and DEBUG and MODULE are off (enable-protected-configs/debug/module-command no)."""
    with (
        node.client("mobius-operator") as operator,
        pytest.raises(redis.ResponseError, match="protected config"),
    ):
        operator.config_set("dir", "/tmp")
    with node.admin() as admin:
        with pytest.raises(redis.ResponseError, match="DEBUG command not allowed"):
            admin.execute_command("DEBUG", "SLEEP", "0")
        with pytest.raises(redis.ResponseError, match="MODULE command not allowed"):
            admin.execute_command("MODULE", "LOAD", "/nonexistent.so")


async def test_the_operator_cannot_apply_with_the_cache_user(node: ChartNode) -> None:
    from mobius_operator.redis_admin import RedisRefusedError

    with pytest.raises(RedisRefusedError, match="no permissions"):
        await clients.operator_applies(node, user="mobius-cache")


def test_the_exporter_scrapes_with_its_user(fresh_log: ChartNode) -> None:
    with fresh_log.admin() as admin:
        admin.set("mobius:user:1:session", "x" * 100)
        admin.set("mobius:search:q:results:1", "y")
    try:
        with clients.running_exporter(fresh_log, "--check-key-groups", r"^mobius:([^:]+):") as metrics:
            samples = clients.wait_for_samples(metrics, "redis_key_group_count")
        assert samples["redis_up"] == 1
        assert samples["redis_memory_max_bytes"] == 1024**3
        assert samples['redis_key_group_count{db="db0",key_group="user"}'] == 1
        assert samples['redis_key_group_count{db="db0",key_group="search"}'] == 1
        assert samples['redis_key_group_memory_usage_bytes{db="db0",key_group="user"}'] > 100
        assert refused(fresh_log) == [], "the exporter's user lacks a command it sends"
    finally:
        with fresh_log.admin() as admin:
            admin.delete("mobius:user:1:session", "mobius:search:q:results:1")


def test_the_helm_test_checks_the_acl_is_in_force(node: ChartNode) -> None:
    helm_test = load_helm_test()
    url = clients.cache_url(node)
    seen = helm_test.check_redis(
        url, node.rendered.passwords["mobius-cache"], str(1024**3), 5, key_prefix="mobius:", expect_acl=True
    )
    assert "CONFIG refused (NOPERM)" in seen and "SET/GET/UNLINK mobius:helm-test" in seen
    operator_url = clients.cache_url(node, user="mobius-operator")
    with pytest.raises(RuntimeError, match="may run CONFIG: the ACL is not in force"):
        helm_test.check_redis(
            operator_url, node.rendered.passwords["mobius-operator"], "", 5, expect_acl=True
        )
    with pytest.raises(RuntimeError, match="WRONGPASS"):
        helm_test.check_redis(url, "wrong", "", 5)


def test_the_cache_user_can_be_confined_to_the_prefix() -> None:
    need("redis-server", "redis-cli")
    rendered = render_redis({"redis.acl.cacheKeyPrefixes": ["mobius:"]})
    assert "~mobius:* resetchannels &mobius:*" in acl_rules(rendered)["mobius-cache"]
    with chart_node(rendered) as node, node.client("mobius-cache") as c:
        c.set("mobius:k", "v")
        assert c.publish("mobius:events", "{}") == 0
        with pytest.raises(redis.exceptions.NoPermissionError):
            c.set("other:k", "v")
        with pytest.raises(redis.exceptions.NoPermissionError):
            c.publish("other:events", "{}")
        assert set(refused(node)) == {("mobius-cache", "other:k"), ("mobius-cache", "other:events")}


def test_auth_off_runs_without_users() -> None:
    need("redis-server", "redis-cli")
    rendered = render_redis({"redis.auth.enabled": False})
    assert not rendered.passwords
    with chart_node(rendered) as node:
        with node.client(decode_responses=True) as c:
            assert c.ping() and c.config_get("maxmemory") == {"maxmemory": str(1024**3)}
        assert not (node.root / "run" / "users.acl").exists()


def test_the_probes_log_in_as_the_exporter(node: ChartNode) -> None:
    assert node.probe("live").returncode == 0
    assert node.probe("ready").returncode == 0
    wrong = node.probe("ready", REDISCLI_AUTH="wrong")
    assert wrong.returncode != 0 and "no PONG" in wrong.stderr
