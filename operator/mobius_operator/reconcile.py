"""The operator's pure core: from a ``CacheConfig`` resource to what Redis and the sidecars should hold.

No kopf, no Redis client, no Kubernetes client here (an import-linter contract checks it): every decision the
operator makes — is the spec valid, which Redis does it target, does it conflict with another resource, what
drifted, which conditions and status to report — is a plain function, unit-tested without any cluster.
The handlers (``handlers.py``) only do the I/O around these functions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import unquote, urlsplit

from mobius_cache._config import SPEC_FIELDS, CacheConfig, StrategyConfig, parse_memory
from mobius_cache._sentinel_url import SentinelURL, is_sentinel_url, parse_sentinel_url

__all__ = [
    "POLICY_KEY",
    "Applied",
    "Claim",
    "Condition",
    "Conflict",
    "DesiredSettings",
    "Invalid",
    "InvalidSpec",
    "NodeState",
    "Outcome",
    "Plan",
    "PublishFailed",
    "RedisRefused",
    "RedisStats",
    "RedisTarget",
    "RedisUnreachable",
    "SecretUnavailable",
    "backoff_delay",
    "build_plan",
    "claim_of",
    "cluster_members",
    "conditions_for",
    "drift",
    "find_conflict",
    "is_retryable",
    "merge_conditions",
    "node_summary",
    "parse_clients_target",
    "parse_quantity",
    "parse_target",
    "policy_configmap",
    "status_patch",
]

POLICY_KEY = "policy.json"
DEFAULT_SECRET_KEY = "password"


class InvalidSpec(ValueError):
    """The spec passed the CRD schema (or predates it) but cannot be applied; the message says why."""


@dataclass(frozen=True)
class RedisTarget:
    """The Redis server a resource configures. ``key`` identifies the server: maxmemory is server-wide.

    With ``sentinel`` set, the servers are the master and replicas those Sentinels monitor (``host``/``port``
    are then the first Sentinel's); ``sentinel_secret_*`` and ``sentinel_username`` authenticate against the
    Sentinels, ``secret_*`` and ``username`` against the data nodes.
    """

    host: str
    port: int
    db: int = 0
    tls: bool = False
    username: str | None = None
    secret_name: str | None = None
    secret_key: str = DEFAULT_SECRET_KEY
    cluster: bool = False  # a Redis Cluster: every node gets the settings (each node has its own maxmemory)
    sentinel: SentinelURL | None = None  # Sentinel: every node behind it gets the settings
    sentinel_username: str | None = None
    sentinel_secret_name: str | None = None
    sentinel_secret_key: str = DEFAULT_SECRET_KEY

    @property
    def key(self) -> str:
        if self.sentinel is not None:
            return self.sentinel.key
        return f"{self.host.lower()}:{self.port}"


@dataclass(frozen=True)
class DesiredSettings:
    """The Redis settings a spec asks for, in the exact form ``CONFIG GET`` reports them."""

    maxmemory: int
    maxmemory_policy: str

    def as_config(self) -> dict[str, str]:
        return {"maxmemory": str(self.maxmemory), "maxmemory-policy": self.maxmemory_policy}


@dataclass(frozen=True)
class Plan:
    """Everything one resource asks for: the Redis settings and the sidecars' policy document."""

    target: RedisTarget
    settings: DesiredSettings
    max_memory: str
    policy_json: str


def build_plan(spec: Mapping[str, Any], *, memory_limit: int | None = None) -> Plan:
    """Validate ``spec`` exactly as the cache library does (``CacheConfig.from_spec``) and plan it.

    ``memory_limit`` is the Redis container's memory limit in bytes when the operator knows it: a maxMemory
    above it (or unlimited) would get Redis OOM-killed instead of evicting, so it is refused here.
    Raises :class:`InvalidSpec` with a message meant for ``kubectl get``.
    """
    target = parse_target(spec.get("redis"))
    strategies = spec.get("strategies")
    if strategies is not None:
        if not isinstance(strategies, Mapping):
            raise InvalidSpec("spec.strategies must be a map of namespace name to strategy")
        for name, strategy in strategies.items():
            if not isinstance(name, str) or not name or ":" in name:
                raise InvalidSpec(f"strategy name {name!r} must be a non-empty key segment without ':'")
            try:
                StrategyConfig.model_validate(strategy)
            except ValueError as exc:  # here, so that the message names the strategy
                raise InvalidSpec(f"strategies.{name}: {_short_error(exc)}") from exc
    # Missing fields take the model's declared defaults, never the operator's own MOBIUS_* environment.
    complete = dict(spec)
    for camel, snake in SPEC_FIELDS.items():
        if complete.get(camel) is None:
            complete[camel] = CacheConfig.model_fields[snake].default
    try:
        config = CacheConfig.from_spec(complete)
    except (ValueError, TypeError, AttributeError) as exc:
        raise InvalidSpec(_short_error(exc)) from exc
    maxmemory = config.max_memory_bytes
    if memory_limit is not None:
        if maxmemory == 0:
            raise InvalidSpec(
                f"maxMemory 0 (no limit) is refused: the Redis container is limited to {memory_limit} bytes"
            )
        if maxmemory > memory_limit:
            raise InvalidSpec(
                f"maxMemory {config.max_memory} ({maxmemory} bytes) is above the Redis container's memory "
                f"limit ({memory_limit} bytes); Redis would be OOM-killed instead of evicting"
            )
    policy = json.dumps(config.to_spec(), sort_keys=True, indent=2)
    settings = DesiredSettings(maxmemory=maxmemory, maxmemory_policy=str(config.eviction_policy))
    return Plan(target=target, settings=settings, max_memory=config.max_memory, policy_json=policy)


def _short_error(exc: BaseException) -> str:
    """One line per pydantic error ("maxMemory: invalid memory size ..."), not pydantic's full dump."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    camel = {snake: name for name, snake in SPEC_FIELDS.items()}
    parts = []
    for err in errors():
        loc = ".".join(camel.get(str(p), str(p)) for p in err.get("loc", ()))
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def _secret_ref(redis: Mapping[str, Any], field_name: str) -> tuple[str | None, str]:
    ref = redis.get(field_name) or {}
    if not isinstance(ref, Mapping) or (ref and not ref.get("name")):
        raise InvalidSpec(f"spec.redis.{field_name} needs a name")
    return (str(ref["name"]) if ref else None), str(ref.get("key") or DEFAULT_SECRET_KEY)


def parse_target(redis: object) -> RedisTarget:
    """Read ``spec.redis``: ``url`` or ``host`` + ``port``, ``passwordSecretRef``, and ``admin``.

    ``url`` and ``passwordSecretRef`` are the clients' login (injected sidecars use them); ``admin``
    (``username`` + ``passwordSecretRef``), when set, is the operator's own, e.g. a Redis ACL user allowed
    CONFIG GET/SET and INFO but no data. The returned target carries the login the operator uses.
    """
    target = parse_clients_target(redis)
    admin = redis.get("admin") if isinstance(redis, Mapping) else None
    if admin is None:
        return target
    if not isinstance(admin, Mapping):
        raise InvalidSpec("spec.redis.admin must be a map with username and passwordSecretRef")
    username = admin.get("username")
    if not isinstance(username, str) or not username:
        raise InvalidSpec("spec.redis.admin.username is required: the operator's Redis user")
    ref = admin.get("passwordSecretRef") or {}
    if not isinstance(ref, Mapping) or not ref.get("name"):
        raise InvalidSpec("spec.redis.admin.passwordSecretRef needs a name")
    return replace(
        target,
        username=username,
        secret_name=str(ref["name"]),
        secret_key=str(ref.get("key") or DEFAULT_SECRET_KEY),
    )


def parse_clients_target(redis: object) -> RedisTarget:
    """Read ``spec.redis`` as its clients (sidecars) see it: the login of ``url``/``passwordSecretRef``."""
    if not isinstance(redis, Mapping):
        raise InvalidSpec("spec.redis is required: set redis.url or redis.host")
    url, host = redis.get("url"), redis.get("host")
    if bool(url) == bool(host):
        raise InvalidSpec("set exactly one of spec.redis.url or spec.redis.host")
    secret_name, secret_key = _secret_ref(redis, "passwordSecretRef")
    sentinel_secret, sentinel_key = _secret_ref(redis, "sentinelPasswordSecretRef")
    sentinel_user = redis.get("sentinelUsername") or None
    if (sentinel_secret or sentinel_user) and not (url and is_sentinel_url(str(url))):
        raise InvalidSpec(
            "spec.redis.sentinelUsername and sentinelPasswordSecretRef need a redis+sentinel:// url"
        )
    if host:
        port = redis.get("port", 6379)
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            raise InvalidSpec(f"spec.redis.port must be an integer 1-65535, not {port!r}")
        return RedisTarget(host=str(host), port=port, secret_name=secret_name, secret_key=secret_key)
    if "?" in str(url):
        raise InvalidSpec("spec.redis.url takes no ?options (the operator would not use them)")
    if is_sentinel_url(str(url)):
        try:
            sentinel = parse_sentinel_url(str(url))
        except ValueError as exc:
            raise InvalidSpec(f"spec.redis.url: {exc}") from exc
        if sentinel.password is not None:
            raise InvalidSpec("spec.redis.url must not contain a password: use spec.redis.passwordSecretRef")
        return RedisTarget(
            host=sentinel.sentinels[0][0],
            port=sentinel.sentinels[0][1],
            db=sentinel.db,
            tls=sentinel.tls,
            username=sentinel.username,
            secret_name=secret_name,
            secret_key=secret_key,
            sentinel=sentinel,
            sentinel_username=str(sentinel_user) if sentinel_user else None,
            sentinel_secret_name=sentinel_secret,
            sentinel_secret_key=sentinel_key,
        )
    parts = urlsplit(str(url))
    if parts.scheme not in ("redis", "rediss", "redis+cluster", "rediss+cluster"):
        raise InvalidSpec(
            "spec.redis.url must be redis://, rediss://, redis+cluster://, rediss+cluster://, "
            f"redis+sentinel:// or rediss+sentinel://, not {url!r}"
        )
    if parts.password is not None:
        raise InvalidSpec("spec.redis.url must not contain a password: use spec.redis.passwordSecretRef")
    try:
        port = parts.port or 6379
    except ValueError as exc:
        raise InvalidSpec(f"spec.redis.url has an invalid port: {url!r}") from exc
    if not parts.hostname:
        raise InvalidSpec(f"spec.redis.url has no host: {url!r}")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise InvalidSpec(f"spec.redis.url's path must be a database number, not {path!r}")
    return RedisTarget(
        host=parts.hostname,
        port=port,
        db=int(path or 0),
        tls=parts.scheme.startswith("rediss"),
        username=unquote(parts.username) if parts.username else None,
        secret_name=secret_name,
        secret_key=secret_key,
        cluster=parts.scheme.endswith("+cluster"),
    )


def cluster_members(nodes: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, int, bool]]:
    """(host, port, is_primary) of the healthy nodes in a parsed ``CLUSTER NODES`` reply (address → fields)."""
    out = []
    for address, fields in nodes.items():
        flags = set(str(fields.get("flags", "")).split(","))
        if flags & {"fail", "fail?", "noaddr", "handshake"}:
            continue
        host, _, port = address.split("@")[0].rpartition(":")
        # The announced hostname when there is one: TLS certificates name pods, not pod IPs.
        out.append((str(fields.get("hostname") or "") or host.strip("[]"), int(port), "master" in flags))
    return sorted(out)


_QUANTITY_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|K|M|G|T|P|E)?$")
_QUANTITY_UNITS = {
    None: 1,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
    "Pi": 1024**5,
    "Ei": 1024**6,
    "k": 1000,
    "K": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "P": 1000**5,
    "E": 1000**6,
}


def parse_quantity(value: str) -> int:
    """Bytes of a Kubernetes memory quantity ("512Mi", "2Gi", "1G", "1048576") or a Redis size ("1gb")."""
    text = value.strip()
    match = _QUANTITY_RE.match(text)
    if match:
        number, unit = match.groups()
        return int(float(number) * _QUANTITY_UNITS[unit])
    try:
        return parse_memory(text)
    except ValueError:
        raise ValueError(f"invalid memory quantity {value!r}: use e.g. 512Mi, 2Gi or 1gb") from None


def drift(desired: DesiredSettings, observed: Mapping[str, str]) -> dict[str, tuple[str | None, str]]:
    """The settings whose live value differs from the desired one: name → (live value, desired value)."""
    out: dict[str, tuple[str | None, str]] = {}
    for name, want in desired.as_config().items():
        have = observed.get(name)
        if have is None or have.strip().lower() != want:
            out[name] = (have, want)
    return out


# --- conflicts -----------------------------------------------------------------------------------------------
@dataclass(frozen=True, order=True)
class Claim:
    """One resource's claim on a Redis server. Ordered by age: the oldest claim wins."""

    created: str
    namespace: str
    name: str
    target: str = field(compare=False)
    settings: DesiredSettings = field(compare=False)

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


def claim_of(meta: Mapping[str, Any], plan: Plan) -> Claim:
    """A resource's claim on the Redis its plan targets (``meta``: the resource's metadata)."""
    return Claim(
        created=str(meta.get("creationTimestamp") or ""),
        namespace=str(meta.get("namespace") or ""),
        name=str(meta["name"]),
        target=plan.target.key,
        settings=plan.settings,
    )


def find_conflict(me: Claim, claims: Iterable[Claim]) -> Claim | None:
    """The claim that owns my Redis, when it asks for other memory settings than mine; else None.

    Redis has one maxmemory and one policy, so the oldest resource on a server (creationTimestamp, then
    namespace/name) owns it; a later resource is applied only when it asks for the very same settings.
    Losers never block anyone: only the owner's settings count.
    """
    rivals = [c for c in claims if c.target == me.target and c.ref != me.ref]
    owner = min([*rivals, me])
    if owner is me or owner.settings == me.settings:
        return None
    return owner


# --- Redis numbers ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RedisStats:
    """Redis's own numbers from INFO, as reported in ``status.redis``."""

    used_memory: int
    max_memory: int
    keyspace_hits: int
    keyspace_misses: int
    evicted_keys: int
    keys: int

    @property
    def hit_ratio(self) -> float | None:
        total = self.keyspace_hits + self.keyspace_misses
        return round(self.keyspace_hits / total, 4) if total else None

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> RedisStats:
        """From ``INFO`` (as redis-py parses it: numbers as ints, ``db0`` as a dict with ``keys``)."""
        keys = sum(
            int(v.get("keys", 0)) for k, v in info.items() if k.startswith("db") and isinstance(v, Mapping)
        )
        return cls(
            used_memory=int(info.get("used_memory", 0)),
            max_memory=int(info.get("maxmemory", 0)),
            keyspace_hits=int(info.get("keyspace_hits", 0)),
            keyspace_misses=int(info.get("keyspace_misses", 0)),
            evicted_keys=int(info.get("evicted_keys", 0)),
            keys=keys,
        )

    @classmethod
    def combine(cls, primaries: Sequence[RedisStats]) -> RedisStats:
        """A cluster's numbers: the sum over its primaries (replicas hold copies); maxmemory is per node."""
        return cls(
            used_memory=sum(s.used_memory for s in primaries),
            max_memory=max((s.max_memory for s in primaries), default=0),
            keyspace_hits=sum(s.keyspace_hits for s in primaries),
            keyspace_misses=sum(s.keyspace_misses for s in primaries),
            evicted_keys=sum(s.evicted_keys for s in primaries),
            keys=sum(s.keys for s in primaries),
        )

    def as_status(self, now: str) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "usedMemory": self.used_memory,
            "maxMemory": self.max_memory,
            "keyspaceHits": self.keyspace_hits,
            "keyspaceMisses": self.keyspace_misses,
            "evictedKeys": self.evicted_keys,
            "keys": self.keys,
            "checkedAt": now,
        }
        doc["hitRatio"] = self.hit_ratio  # None (no reads yet) removes a stale ratio from the merge patch
        return doc


# --- per node ----------------------------------------------------------------------------------------------------
NODE_STATES = ("Applied", "Unreachable", "AuthenticationFailed", "Refused", "Down")


@dataclass(frozen=True)
class NodeState:
    """One Redis node as the last reconcile left it (``status.nodes``).

    ``state``: Applied (holds the settings, verified), Unreachable, AuthenticationFailed, Refused (answered but
    did not take them), or Down (flagged down by the Sentinels / the cluster: not tried; it gets the settings
    on the first reconcile after it is back).
    """

    address: str
    role: str  # master | replica
    state: str
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.state in ("Applied", "Down")

    def as_status(self) -> dict[str, Any]:
        doc = {"address": self.address, "role": self.role, "state": self.state}
        if self.message:
            doc["message"] = self.message
        return doc


def node_summary(nodes: Sequence[NodeState]) -> str:
    """' on 3 nodes (1 master, 2 replicas)', with ', 1 down and skipped' when some were, for messages."""
    if not nodes:
        return ""

    def count(n: int, word: str) -> str:
        return f"{n} {word}{'' if n == 1 else 's'}"

    masters = sum(1 for n in nodes if n.role == "master")
    down = sum(1 for n in nodes if n.state == "Down")
    text = f" on {count(len(nodes), 'node')} ({count(masters, 'master')}, {count(len(nodes) - masters, 'replica')})"
    return text + (f", {down} down and skipped" if down else "")


# --- outcomes and conditions ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Applied:
    """Redis holds the desired settings (verified with CONFIG GET). ``corrected``: what had to be set;
    ``nodes``: every node that was configured (and any skipped because it is down)."""

    plan: Plan
    stats: RedisStats
    corrected: Mapping[str, tuple[str | None, str]] = field(default_factory=dict)
    nodes: Sequence[NodeState] = ()


@dataclass(frozen=True)
class Invalid:
    message: str


@dataclass(frozen=True)
class Conflict:
    winner: Claim


@dataclass(frozen=True)
class SecretUnavailable:
    message: str


@dataclass(frozen=True)
class RedisUnreachable:
    message: str
    reason: str = "ConnectionFailed"  # or "AuthenticationFailed"
    nodes: Sequence[NodeState] = ()


@dataclass(frozen=True)
class PublishFailed:
    """The policy ConfigMap could not be written (Kubernetes API error); Redis was not touched."""

    message: str


@dataclass(frozen=True)
class RedisRefused:
    """Redis answered but refused or did not keep the settings (e.g. CONFIG renamed, a bad value)."""

    message: str
    stats: RedisStats | None = None
    nodes: Sequence[NodeState] = ()


Outcome = Applied | Invalid | Conflict | SecretUnavailable | RedisUnreachable | RedisRefused | PublishFailed
RETRYABLE = (SecretUnavailable, RedisUnreachable, RedisRefused, PublishFailed)


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True", "False", "Unknown"
    reason: str
    message: str


def _cond(type_: str, ok: bool | None, reason: str, message: str) -> Condition:
    status = "Unknown" if ok is None else ("True" if ok else "False")
    return Condition(type_, status, reason, message)


def conditions_for(outcome: Outcome) -> list[Condition]:
    """The three conditions (Ready, ConfigApplied, RedisReachable) that describe an outcome."""
    match outcome:
        case Applied(plan=plan, nodes=nodes):
            what = f"maxmemory={plan.settings.maxmemory} maxmemory-policy={plan.settings.maxmemory_policy}"
            return [
                _cond("Ready", True, "Applied", f"Redis {plan.target.key} holds the spec; policy published"),
                _cond(
                    "ConfigApplied", True, "Applied", f"{what}{node_summary(nodes)}, verified with CONFIG GET"
                ),
                _cond("RedisReachable", True, "Connected", f"Redis {plan.target.key} answered"),
            ]
        case Invalid(message=message):
            return [
                _cond("Ready", False, "InvalidSpec", message),
                _cond("ConfigApplied", False, "InvalidSpec", "nothing applied: " + message),
                _cond("RedisReachable", None, "NotChecked", "the spec is invalid"),
            ]
        case Conflict(winner=winner):
            message = (
                f"Redis {winner.target} is configured by the older CacheConfig {winner.ref} with other memory "
                f"settings (maxmemory={winner.settings.maxmemory}, policy={winner.settings.maxmemory_policy})"
            )
            return [
                _cond("Ready", False, "Conflict", message),
                _cond("ConfigApplied", False, "Conflict", "nothing applied: " + message),
                _cond("RedisReachable", None, "NotChecked", "not applied because of a conflict"),
            ]
        case SecretUnavailable(message=message):
            return [
                _cond("Ready", False, "SecretUnavailable", message),
                _cond("ConfigApplied", False, "SecretUnavailable", message),
                _cond("RedisReachable", None, "NotChecked", "no password to connect with"),
            ]
        case RedisUnreachable(message=message, reason=reason):
            return [
                _cond("Ready", False, "RedisUnreachable", message),
                _cond("ConfigApplied", False, "RedisUnreachable", "not applied: Redis is unreachable"),
                _cond("RedisReachable", False, reason, message),
            ]
        case PublishFailed(message=message):
            return [
                _cond("Ready", False, "PublishFailed", message),
                _cond(
                    "ConfigApplied",
                    False,
                    "PublishFailed",
                    "not applied: the policy ConfigMap is not written",
                ),
                _cond("RedisReachable", None, "NotChecked", "not checked: the policy was not published"),
            ]
        case RedisRefused(message=message):
            return [
                _cond("Ready", False, "ApplyFailed", message),
                _cond("ConfigApplied", False, "ApplyFailed", message),
                _cond("RedisReachable", True, "Connected", "Redis answered"),
            ]
    raise AssertionError(f"unknown outcome {outcome!r}")  # pragma: no cover


def merge_conditions(
    previous: Sequence[Mapping[str, Any]] | None,
    new: Iterable[Condition],
    *,
    now: str,
    generation: int | None,
) -> list[dict[str, Any]]:
    """Kubernetes-style conditions: ``lastTransitionTime`` changes only when a condition's status changes."""
    before = {c.get("type"): c for c in previous or () if isinstance(c, Mapping)}
    out = []
    for cond in new:
        old = before.get(cond.type)
        changed = old is None or old.get("status") != cond.status or not old.get("lastTransitionTime")
        entry: dict[str, Any] = {
            "type": cond.type,
            "status": cond.status,
            "reason": cond.reason,
            "message": cond.message,
            "lastTransitionTime": now if changed else old["lastTransitionTime"],  # type: ignore[index]
        }
        if generation is not None:
            entry["observedGeneration"] = generation
        out.append(entry)
    return out


def status_patch(
    outcome: Outcome,
    *,
    previous: Mapping[str, Any] | None,
    generation: int | None,
    now: str,
    configmap: str,
) -> dict[str, Any]:
    """The ``status`` merge patch for an outcome. ``applied`` changes only when Redis verifiably holds it."""
    previous = previous or {}
    patch: dict[str, Any] = {
        "conditions": merge_conditions(
            previous.get("conditions"), conditions_for(outcome), now=now, generation=generation
        )
    }
    if generation is not None:
        patch["observedGeneration"] = generation
    if isinstance(outcome, Applied):
        plan = outcome.plan
        patch["applied"] = {
            "target": plan.target.key,
            "maxMemory": plan.max_memory,
            "maxMemoryBytes": plan.settings.maxmemory,
            "evictionPolicy": plan.settings.maxmemory_policy,
            "policyConfigMap": configmap,
            "verifiedAt": now,
        }
    stats = getattr(outcome, "stats", None)
    if isinstance(stats, RedisStats):
        patch["redis"] = stats.as_status(now)
    nodes = getattr(outcome, "nodes", ())
    if nodes:
        patch["nodes"] = [n.as_status() for n in nodes]  # a list: the merge patch replaces it whole
    return patch


def is_retryable(outcome: Outcome) -> bool:
    return isinstance(outcome, RETRYABLE)


def backoff_delay(retry: int, *, base: float = 1.0, cap: float = 60.0) -> float:
    """Seconds before retry number ``retry`` (0-based): base, 2·base, 4·base, ... capped."""
    return float(min(cap, base * (2 ** max(0, min(retry, 30)))))


def policy_configmap(name: str, namespace: str, policy_json: str) -> dict[str, Any]:
    """The ``<name>-policy`` ConfigMap the sidecars mount (owner reference added by the caller)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"{name}-policy",
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/part-of": "mobius-cache",
                "app.kubernetes.io/managed-by": "mobius-operator",
                "cache.mobius.io/cacheconfig": name,
            },
        },
        "data": {POLICY_KEY: policy_json},
    }
