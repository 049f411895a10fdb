"""Sidecar injection, decided without Kubernetes: from a pod under admission to a JSON patch, a warning or a denial.

No kopf and no Kubernetes client here (an import-linter contract checks it). The webhook handler (``webhook.py``)
reads the CacheConfig a pod names, calls :func:`decide`, and turns the decision into the admission response.

A pod annotated ``cache.mobius.io/inject: "true"`` gets:

- the sidecar as the **last init container, with** ``restartPolicy: Always`` (a Kubernetes native sidecar): it
  starts after the pod's regular init containers (which may set up networking) and before every app container,
  which the kubelet starts only once the sidecar's startup probe (``/readyz``) passed; it stops after them;
- ``MOBIUS_SIDECAR_URL=http://127.0.0.1:<port>`` in every app container that does not set it already (a value the
  user set is theirs: it is never overwritten);
- the ``<config>-policy`` ConfigMap mounted for hot reload, a scratch ``/tmp``, the client label the chart's
  NetworkPolicy admits, and the marker annotation ``cache.mobius.io/injected``.

Injecting an injected pod changes nothing (the API server re-invokes the webhook when a later webhook changed the
pod; only app containers added since then get ``MOBIUS_SIDECAR_URL``). A pod that already has a container or volume
of the sidecar's names that the injector did not add is left alone, with a warning. Bad annotation values deny the
pod when the webhook's failure policy is ``Fail``, else admit it unchanged with a warning.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jsonpatch

from mobius_operator.reconcile import POLICY_KEY, InvalidSpec, parse_clients_target, parse_quantity

__all__ = [
    "CONFIG",
    "CPU",
    "INJECT",
    "INJECTED",
    "MEMORY",
    "MIN_MEMORY",
    "PORT",
    "SIDECAR",
    "SIDECAR_URL",
    "Decision",
    "Denied",
    "Injected",
    "RedisSource",
    "SidecarTemplate",
    "Skipped",
    "Unchanged",
    "config_name",
    "decide",
    "event_target",
    "redis_source",
    "sidecar_container",
    "sidecar_volumes",
]

PREFIX = "cache.mobius.io/"
INJECT = PREFIX + "inject"
CONFIG = PREFIX + "config"
CPU = PREFIX + "cpu"
MEMORY = PREFIX + "memory"
PORT = PREFIX + "port"
INJECTED = PREFIX + "injected"  # written by the injector, never read as an option
OPTIONS = (INJECT, CONFIG, CPU, MEMORY, PORT)

SIDECAR = "mobius-sidecar"
POLICY_VOLUME = "mobius-policy"
TMP_VOLUME = "mobius-tmp"
CA_VOLUME = "mobius-redis-ca"
CA_DIR = "/etc/mobius/redis-ca"
POLICY_DIR = "/etc/mobius/policy"
SIDECAR_URL = "MOBIUS_SIDECAR_URL"
# The sidecar holds ~64 MB resident when idle (measured: Python, uvicorn, redis-py); below this it is OOM-killed.
MIN_MEMORY = 96 * 1024**2
LOWEST_PORT = 1024  # the sidecar runs without capabilities: it cannot bind a privileged port

_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_CPU_RE = re.compile(r"^(?:(?P<milli>[0-9]+)m|(?P<cores>[0-9]+(?:\.[0-9]{1,3})?))$")
# Kubernetes quantities only (the API server refuses Redis sizes such as "1gb" that parse_quantity also reads).
_MEMORY_RE = re.compile(r"^[0-9]+(?:\.[0-9]+)?(?:Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_PROBE = (
    "import sys,urllib.request; "
    "sys.exit(urllib.request.urlopen('http://127.0.0.1:{port}{path}', timeout=2).status != 200)"
)


# --- inputs ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RedisSource:
    """Where a sidecar's Redis is: the URL and the Secret holding its password (``None``: no password)."""

    url: str
    secret_name: str | None = None
    secret_key: str = "password"


@dataclass(frozen=True)
class SidecarTemplate:
    """What every injected sidecar gets, from the chart (``MOBIUS_INJECTOR_*``, see ``settings.py``).

    ``redis`` and ``default_config`` serve pods that name no CacheConfig. ``deny_invalid`` mirrors the webhook's
    ``failurePolicy: Fail``: a pod whose annotations are wrong is denied instead of admitted without the sidecar.
    """

    image: str
    redis: RedisSource
    image_pull_policy: str = "IfNotPresent"
    port: int = 8787
    metrics_port: int | None = 9787
    resources: Mapping[str, Any] = field(default_factory=dict)
    security_context: Mapping[str, Any] = field(default_factory=dict)
    client_label: str | None = None
    default_config: str | None = None
    deny_invalid: bool = False
    # A TLS Redis's CA certificate (a volume source with ca.crt), mounted at CA_DIR: the chart's rediss:// URL
    # names CA_DIR/ca.crt in its ?ssl_ca_certs= query.
    redis_ca_volume: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Options:
    """A pod's valid injection options (its annotations, with the template's defaults filled in)."""

    config: str | None
    port: int
    cpu: str | None = None
    memory: str | None = None


# --- decisions -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Injected:
    """Patch the pod: ``patch`` is an RFC 6902 JSON patch; ``summary`` says what it does, for the log."""

    patch: list[dict[str, Any]]
    summary: str


@dataclass(frozen=True)
class Unchanged:
    """Nothing to do, and nothing to report: not asked for, opted out, or already injected."""

    why: str


@dataclass(frozen=True)
class Skipped:
    """Injection was asked for but not done: admit the pod unchanged, warn, and record an Event."""

    reason: str
    message: str


@dataclass(frozen=True)
class Denied:
    """Refuse the pod (``failurePolicy: Fail`` and bad annotations)."""

    reason: str
    message: str


Decision = Injected | Unchanged | Skipped | Denied


# --- the decision ----------------------------------------------------------------------------------------------
def decide(
    pod: Mapping[str, Any],
    template: SidecarTemplate,
    *,
    config: Mapping[str, Any] | None = None,
    config_error: str | None = None,
) -> Decision:
    """What to do with ``pod`` (the object of a CREATE admission request).

    ``config`` is the spec of the CacheConfig named by ``cache.mobius.io/config`` in the pod's namespace, as the
    handler read it (``None``: there is no such CacheConfig); ``config_error`` says why it could not be read.
    """
    annotations = _annotations(pod)
    raw = annotations.get(INJECT)
    if raw is None:
        return Unchanged("not requested")
    if str(raw).strip().lower() == "false":
        return Unchanged("opted out")
    spec = pod.get("spec") or {}
    if _injected_by_us(pod):
        return _top_up(pod)
    conflict = _conflict(spec)
    if conflict:
        return Skipped("SidecarConflict", f"{conflict}: left as it is. {_how_to_fix_conflict()}")

    problems: list[str] = []
    options = _read_options(annotations, spec, template, problems)
    redis = _redis_for(options, pod, template, config, config_error, problems)
    if problems or options is None or redis is None:
        message = "; ".join(problems)
        if template.deny_invalid:
            return Denied("InvalidAnnotation", f"cannot inject the mobius-cache sidecar: {message}")
        return Skipped("InvalidAnnotation", f"sidecar not injected: {message}")

    policy = f"{options.config}-policy" if options.config else None
    new = copy.deepcopy(dict(pod))
    meta = new.setdefault("metadata", {})
    meta["annotations"] = {**(meta.get("annotations") or {}), INJECTED: "true"}
    if template.client_label:
        meta["labels"] = {**(meta.get("labels") or {}), template.client_label: "true"}
    new_spec = new.setdefault("spec", {})
    new_spec["initContainers"] = [
        *(new_spec.get("initContainers") or []),
        sidecar_container(template, redis, port=options.port, cpu=options.cpu, memory=options.memory),
    ]
    new_spec["volumes"] = [
        *(new_spec.get("volumes") or []),
        *sidecar_volumes(policy, template.redis_ca_volume),
    ]
    told = _add_sidecar_url(new_spec, options.port)
    config_text = f"CacheConfig {options.config}" if options.config else "no CacheConfig policy"
    summary = (
        f"injected {template.image} on 127.0.0.1:{options.port} ({config_text}, Redis {redis.url}); "
        f"{SIDECAR_URL} set in {_count(told, 'app container')}"
    )
    return Injected(_diff(pod, new), summary)


def config_name(pod: Mapping[str, Any]) -> str | None:
    """The CacheConfig the pod names, when the handler should read it (a valid name on a pod asking for injection)."""
    annotations = _annotations(pod)
    name = annotations.get(CONFIG)
    inject = annotations.get(INJECT)
    if inject is None or str(inject).strip().lower() == "false":
        return None
    if not isinstance(name, str) or _name_problem(name):
        return None
    return name


def event_target(pod: Mapping[str, Any]) -> dict[str, Any] | None:
    """The object an Event about this pod should be recorded on, or ``None`` when there is none yet.

    At admission a pod made by a controller has no name yet (``generateName``) and no pod has a uid, so the
    Event goes to its controller (the ReplicaSet, Job, StatefulSet, ...), where ``kubectl describe`` shows it.
    """
    meta = pod.get("metadata") or {}
    namespace = meta.get("namespace")
    for ref in meta.get("ownerReferences") or ():
        if ref.get("controller") and ref.get("name"):
            return {
                "apiVersion": ref.get("apiVersion"),
                "kind": ref.get("kind"),
                "name": ref["name"],
                "namespace": namespace,
                "uid": ref.get("uid"),
            }
    if meta.get("name"):
        return {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "namespace": namespace}
    return None


def redis_source(spec: Mapping[str, Any]) -> RedisSource:
    """The Redis of a CacheConfig ``spec`` (its ``redis`` block); raises :class:`InvalidSpec` when unusable."""
    target = parse_clients_target(spec.get("redis"))  # the sidecars' login, never the operator's (admin)
    redis = spec["redis"]
    url = str(redis["url"]) if redis.get("url") else f"redis://{target.host}:{target.port}/0"
    return RedisSource(url=url, secret_name=target.secret_name, secret_key=target.secret_key)


# --- what gets injected ----------------------------------------------------------------------------------------
def sidecar_container(
    template: SidecarTemplate,
    redis: RedisSource,
    *,
    port: int | None = None,
    cpu: str | None = None,
    memory: str | None = None,
) -> dict[str, Any]:
    """The native sidecar: the chart's sidecar container plus ``restartPolicy: Always`` and a startup probe."""
    port = port or template.port
    url = redis.url
    if template.redis_ca_volume and url.startswith("rediss") and "ssl_ca_certs=" not in url:
        url += (
            "&" if "?" in url else "?"
        ) + f"ssl_ca_certs={CA_DIR}/ca.crt"  # a CacheConfig URL has no query
    env: list[dict[str, Any]] = [{"name": "MOBIUS_REDIS_URL", "value": url}]
    if redis.secret_name:
        env.append(
            {
                "name": "MOBIUS_REDIS_PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": redis.secret_name, "key": redis.secret_key}},
            }
        )
    env += [
        {"name": "MOBIUS_POLICY_FILE", "value": f"{POLICY_DIR}/{POLICY_KEY}"},
        {"name": "MOBIUS_SIDECAR_HOST", "value": "127.0.0.1"},
        {"name": "MOBIUS_SIDECAR_PORT", "value": str(port)},
    ]
    container: dict[str, Any] = {
        "name": SIDECAR,
        "image": template.image,
        "imagePullPolicy": template.image_pull_policy,
        "command": ["mobius-sidecar"],
        "env": env,
    }
    if template.metrics_port:
        env += [
            {"name": "MOBIUS_SIDECAR_METRICS_HOST", "value": "0.0.0.0"},
            {"name": "MOBIUS_SIDECAR_METRICS_PORT", "value": str(template.metrics_port)},
        ]
        container["ports"] = [
            {"name": "mobius-metrics", "containerPort": template.metrics_port, "protocol": "TCP"}
        ]
    container |= {
        # Native sidecar: started before the app containers, kept running, stopped after them.
        "restartPolicy": "Always",
        # The API listens on loopback only, where the kubelet's HTTP probes cannot reach: probes run inside.
        # The app containers start once this passes; /readyz does not wait for Redis (reads fail open).
        "startupProbe": {
            "exec": {"command": ["python", "-c", _PROBE.format(port=port, path="/readyz")]},
            "periodSeconds": 1,
            "timeoutSeconds": 3,
            "failureThreshold": 120,
        },
        "livenessProbe": {
            "exec": {"command": ["python", "-c", _PROBE.format(port=port, path="/healthz")]},
            "periodSeconds": 10,
            "timeoutSeconds": 3,
        },
        "readinessProbe": {
            "exec": {"command": ["python", "-c", _PROBE.format(port=port, path="/readyz")]},
            "periodSeconds": 5,
            "timeoutSeconds": 3,
        },
        "resources": _resources(template.resources, cpu=cpu, memory=memory),
        "securityContext": copy.deepcopy(dict(template.security_context)),
        "volumeMounts": [
            {"name": POLICY_VOLUME, "mountPath": POLICY_DIR, "readOnly": True},
            {"name": TMP_VOLUME, "mountPath": "/tmp"},
        ],
    }
    if template.redis_ca_volume:
        container["volumeMounts"].append({"name": CA_VOLUME, "mountPath": CA_DIR, "readOnly": True})
    return container


def sidecar_volumes(
    policy_configmap: str | None, redis_ca_volume: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The policy ConfigMap (optional: the operator writes it once the CacheConfig is applied), a scratch /tmp,
    and a TLS Redis's CA certificate when there is one.

    Without a CacheConfig the policy volume is an empty directory: the sidecar then runs on its built-in defaults.
    """
    policy: dict[str, Any] = (
        {"name": POLICY_VOLUME, "configMap": {"name": policy_configmap, "optional": True}}
        if policy_configmap
        else {"name": POLICY_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}
    )
    volumes = [policy, {"name": TMP_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}]
    if redis_ca_volume:
        volumes.append({"name": CA_VOLUME, **copy.deepcopy(dict(redis_ca_volume))})
    return volumes


# --- helpers ---------------------------------------------------------------------------------------------------
def _annotations(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    return (pod.get("metadata") or {}).get("annotations") or {}


def _containers(spec: Mapping[str, Any], *kinds: str) -> list[Mapping[str, Any]]:
    return [c for kind in kinds for c in spec.get(kind) or () if isinstance(c, Mapping)]


def _injected_by_us(pod: Mapping[str, Any]) -> bool:
    spec = pod.get("spec") or {}
    ours = any(c.get("name") == SIDECAR for c in _containers(spec, "initContainers"))
    return ours and INJECTED in _annotations(pod)


def _conflict(spec: Mapping[str, Any]) -> str | None:
    """A container or volume already named like the sidecar's (e.g. a sidecar added by hand), or None."""
    for kind in ("containers", "initContainers", "ephemeralContainers"):
        if any(c.get("name") == SIDECAR for c in _containers(spec, kind)):
            return f"the pod already has a container named {SIDECAR!r} ({kind})"
    for volume in spec.get("volumes") or ():
        if isinstance(volume, Mapping) and volume.get("name") in (POLICY_VOLUME, TMP_VOLUME, CA_VOLUME):
            return f"the pod already has a volume named {volume['name']!r}"
    return None


def _how_to_fix_conflict() -> str:
    return (
        f"Remove the hand-made sidecar container and its volumes to get the injected one, "
        f"or remove the {INJECT} annotation"
    )


def _top_up(pod: Mapping[str, Any]) -> Decision:
    """An injected pod seen again: give app containers added since (by a later webhook) the sidecar URL."""
    spec = pod.get("spec") or {}
    sidecar = next(c for c in _containers(spec, "initContainers") if c.get("name") == SIDECAR)
    env = {e.get("name"): e.get("value") for e in sidecar.get("env") or () if isinstance(e, Mapping)}
    try:
        port = int(env.get("MOBIUS_SIDECAR_PORT") or 0)
    except ValueError:
        port = 0
    if not port:
        return Unchanged("already injected")
    new = copy.deepcopy(dict(pod))
    told = _add_sidecar_url(new["spec"], port)
    if not told:
        return Unchanged("already injected")
    return Injected(
        _diff(pod, new), f"already injected; {SIDECAR_URL} set in {_count(told, 'app container')}"
    )


def _add_sidecar_url(spec: dict[str, Any], port: int) -> list[str]:
    """Add MOBIUS_SIDECAR_URL to every app container that has no such variable; the names of those changed."""
    changed = []
    for container in spec.get("containers") or ():
        env = container.get("env") or []
        if any(isinstance(e, Mapping) and e.get("name") == SIDECAR_URL for e in env):
            continue  # the user's own value wins
        container["env"] = [*env, {"name": SIDECAR_URL, "value": f"http://127.0.0.1:{port}"}]
        changed.append(str(container.get("name")))
    return changed


def _read_options(
    annotations: Mapping[str, Any],
    spec: Mapping[str, Any],
    template: SidecarTemplate,
    problems: list[str],
) -> Options | None:
    """The options the annotations ask for; every problem found is appended to ``problems``."""
    before = len(problems)
    inject = str(annotations[INJECT]).strip().lower()
    if inject != "true":
        problems.append(f'{INJECT} must be "true" or "false", not {annotations[INJECT]!r}')
    for key in sorted(annotations):
        if key.startswith(PREFIX) and key not in (*OPTIONS, INJECTED):
            known = ", ".join(k.removeprefix(PREFIX) for k in OPTIONS)
            problems.append(f"unknown annotation {key} (known: {known})")

    config = annotations.get(CONFIG, template.default_config)
    if CONFIG in annotations:
        problem = _name_problem(config)
        if problem:
            problems.append(f"{CONFIG}: {problem}")
    cpu = annotations.get(CPU)
    if cpu is not None and _millicores(cpu) is None:
        problems.append(f"{CPU} must be a CPU quantity above zero such as 250m or 0.5, not {cpu!r}")
    memory = annotations.get(MEMORY)
    if memory is not None:
        size = _bytes(memory)
        if size is None:
            problems.append(f"{MEMORY} must be a memory quantity such as 256Mi or 1Gi, not {memory!r}")
        elif size < MIN_MEMORY:
            problems.append(
                f"{MEMORY} {memory} is below the sidecar's minimum of {MIN_MEMORY // 1024**2}Mi "
                "(it would be OOM-killed)"
            )
    port = _read_port(annotations, spec, template, problems)
    if spec.get("hostNetwork"):
        problems.append(
            "the pod uses hostNetwork: its loopback is the node's, so the sidecar's port would clash "
            "with other pods on the node"
        )
    if len(problems) > before or port is None:
        return None
    return Options(config=config or None, port=port, cpu=cpu, memory=memory)


def _read_port(
    annotations: Mapping[str, Any], spec: Mapping[str, Any], template: SidecarTemplate, problems: list[str]
) -> int | None:
    raw = annotations.get(PORT)
    port = template.port
    if raw is not None:
        text = str(raw).strip()
        if not text.isdigit() or not LOWEST_PORT <= int(text) <= 65535:
            problems.append(
                f"{PORT} must be a port number from {LOWEST_PORT} to 65535 "
                f"(the sidecar cannot bind privileged ports), not {raw!r}"
            )
            return None
        port = int(text)
        if port == template.metrics_port:
            problems.append(f"{PORT} {port} is the sidecar's metrics port: choose another")
            return None
    declared = _declared_ports(spec)
    for wanted, what in ((port, "API port"), (template.metrics_port, "metrics port")):
        if wanted and wanted in declared:
            fix = (
                f"set {PORT} to a free port"
                if what == "API port"
                else "change sidecar.metricsPort in the chart"
            )
            problems.append(
                f"container {declared[wanted]!r} declares port {wanted}, the sidecar's {what}: {fix}"
            )
            return None
    return port


def _declared_ports(spec: Mapping[str, Any]) -> dict[int, str]:
    """Ports the pod's containers declare (they share the pod's network namespace with the sidecar)."""
    out: dict[int, str] = {}
    for container in _containers(spec, "initContainers", "containers"):
        for port in container.get("ports") or ():
            if isinstance(port, Mapping) and isinstance(port.get("containerPort"), int):
                out.setdefault(port["containerPort"], str(container.get("name")))
    return out


def _redis_for(
    options: Options | None,
    pod: Mapping[str, Any],
    template: SidecarTemplate,
    config: Mapping[str, Any] | None,
    config_error: str | None,
    problems: list[str],
) -> RedisSource | None:
    """The Redis of the CacheConfig the pod names, else the chart's; a problem when the named one is unusable."""
    if options is None:
        return None
    if CONFIG not in _annotations(pod):
        return template.redis
    namespace = (pod.get("metadata") or {}).get("namespace") or "the pod's namespace"
    where = f"CacheConfig {namespace}/{options.config}"
    if config_error:
        problems.append(f"cannot read {where} ({CONFIG}): {config_error}")
        return None
    if config is None:
        problems.append(
            f"{where} ({CONFIG}) does not exist: name a CacheConfig in the pod's own namespace "
            "(pods can mount only their namespace's policy ConfigMap)"
        )
        return None
    try:
        return redis_source(config)
    except InvalidSpec as exc:
        problems.append(f"{where} ({CONFIG}) cannot be used: {exc}")
        return None


def _name_problem(name: object) -> str | None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        return f"{name!r} is not a CacheConfig name (lowercase letters, digits, '-' and '.')"
    if len(name) > 253 - len("-policy"):
        return f"{name!r} is too long for its policy ConfigMap name"
    return None


def _millicores(value: object) -> int | None:
    match = _CPU_RE.match(str(value).strip())
    if not match:
        return None
    milli = int(match["milli"]) if match["milli"] else round(float(match["cores"]) * 1000)
    return milli or None


def _bytes(value: object) -> int | None:
    text = str(value).strip()
    return parse_quantity(text) if _MEMORY_RE.match(text) else None


def _resources(base: Mapping[str, Any], *, cpu: str | None, memory: str | None) -> dict[str, Any]:
    """The chart's resources with the pod's overrides: ``cpu`` is the request (a lower CPU limit is raised to it);
    ``memory`` is both the request and the limit."""
    out = copy.deepcopy({k: dict(v) for k, v in base.items() if isinstance(v, Mapping)})
    if cpu is not None:
        out.setdefault("requests", {})["cpu"] = cpu
        limit = out.get("limits", {}).get("cpu")
        if limit is not None and (_millicores(limit) or 0) < (_millicores(cpu) or 0):
            out["limits"]["cpu"] = cpu
    if memory is not None:
        out.setdefault("requests", {})["memory"] = memory
        out.setdefault("limits", {})["memory"] = memory
    return out


def _diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[dict[str, Any]]:
    ops: Sequence[dict[str, Any]] = jsonpatch.make_patch(dict(before), dict(after)).patch
    return list(ops)


def _count(names: Iterable[str], what: str) -> str:
    names = list(names)
    if not names:
        return f"no {what} (each sets its own)"
    return f"{len(names)} {what}{'s' if len(names) != 1 else ''} ({', '.join(names)})"
