"""kopf handlers: thin wiring of Kubernetes events onto the pure core (``reconcile.py``) and the I/O modules.

``register(registry)`` attaches every handler to a registry, so tests run each operator on a fresh registry
and ``mobius-operator`` (or ``kopf run -m mobius_operator.run``) on its own. On create, update and resume a
resource is applied (retried with backoff while Redis or the Secret is unavailable); one operator-wide loop
re-asserts every resource periodically, correcting and reporting drift.

Why a loop and not ``@kopf.timer``: kopf puts a finalizer on every object that has a timer, and a finalizer
makes each deletion wait for a running operator. A stopped or uninstalled operator would then leave
CacheConfigs, and the namespaces holding them, stuck in Terminating. The operator has nothing to clean up on
deletion (the policy ConfigMap is garbage-collected through its owner reference), so it takes no finalizer.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, cast

import kopf

from mobius_operator import redis_admin, webhook
from mobius_operator.kube import InvalidObjectError, Kube, KubeError, SecretError
from mobius_operator.reconcile import (
    Applied,
    Claim,
    Conflict,
    Invalid,
    InvalidSpec,
    Outcome,
    PublishFailed,
    RedisRefused,
    RedisUnreachable,
    SecretUnavailable,
    backoff_delay,
    build_plan,
    claim_of,
    find_conflict,
    is_retryable,
    policy_configmap,
    status_patch,
)
from mobius_operator.settings import DefaultCacheConfig, InjectorSettings, OperatorSettings

__all__ = ["GROUP", "PLURAL", "VERSION", "register"]

GROUP, VERSION, PLURAL = "cache.mobius.io", "v1alpha1", "cacheconfigs"
RESOURCE = (GROUP, VERSION, PLURAL)
Logger = logging.Logger | logging.LoggerAdapter[Any]
FINALIZER = (
    "cache.mobius.io/operator"  # used by earlier versions (kopf timers); kopf removes it when unneeded
)
log = logging.getLogger("mobius_operator")
Event = tuple[str, str, str]  # type, reason, message
Emit = Callable[[str, str, str], Awaitable[None]]


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _configure_kopf(settings: kopf.OperatorSettings) -> None:
    """Our own annotations and finalizer (not kopf's), no status fields the CRD schema does not declare."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.reporting_component = "mobius-operator"
    settings.networking.connect_timeout = 10
    settings.networking.request_timeout = 60
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330


class Reconciler:
    """Decides and applies one resource; serialises the change handler and the timer per resource."""

    def __init__(self, options: OperatorSettings) -> None:
        self.options = options
        self._locks: dict[str, asyncio.Lock] = {}

    def claim(self, meta: Mapping[str, Any], spec: Mapping[str, Any]) -> Claim | None:
        """This resource's claim on its Redis (None when the spec is invalid: it claims nothing)."""
        try:
            plan = build_plan(spec, memory_limit=self.options.memory_limit_bytes)
        except InvalidSpec:
            return None
        return claim_of(meta, plan)

    async def run(
        self,
        *,
        body: kopf.Body,
        api: Kube,
        claims: Iterable[Claim],
        patch: kopf.Patch,
        logger: Logger,
        timer: bool,
        emit: Emit,
    ) -> Outcome:
        meta, status = body.meta, body.status
        key = f"{meta.namespace}/{meta.name}"
        async with self._locks.setdefault(key, asyncio.Lock()):
            outcome = await self._decide_and_apply(body, api, claims)
        now = _now()
        generation = meta.get("generation")
        patch.status.update(
            status_patch(
                outcome, previous=status, generation=generation, now=now, configmap=f"{meta.name}-policy"
            )
        )
        for event in self._report(outcome, body, logger, timer=timer):
            await emit(*event)
        return outcome

    async def _decide_and_apply(self, body: kopf.Body, api: Kube, claims: Iterable[Claim]) -> Outcome:
        meta, spec = body.meta, body.spec
        try:
            plan = build_plan(spec, memory_limit=self.options.memory_limit_bytes)
        except InvalidSpec as exc:
            return Invalid(str(exc))
        winner = find_conflict(claim_of(meta, plan), claims)
        if winner is not None:
            return Conflict(winner)

        configmap = policy_configmap(str(meta.name), str(meta.namespace), plan.policy_json)
        kopf.append_owner_reference(configmap, owner=body, block_owner_deletion=False)
        try:
            await api.upsert_configmap(configmap)
        except KubeError as exc:
            return PublishFailed(str(exc))

        password = None
        if plan.target.secret_name:
            try:
                password = await api.read_secret_value(
                    str(meta.namespace), plan.target.secret_name, plan.target.secret_key
                )
            except SecretError as exc:
                return SecretUnavailable(str(exc))
        try:
            seen = await redis_admin.ensure(
                plan.target, password, plan.settings, timeout=self.options.redis_timeout
            )
        except redis_admin.RedisAuthError as exc:
            return RedisUnreachable(str(exc), reason="AuthenticationFailed")
        except redis_admin.RedisUnreachableError as exc:
            return RedisUnreachable(str(exc))
        except redis_admin.RedisRefusedError as exc:
            return RedisRefused(str(exc), exc.stats)
        return Applied(plan=plan, stats=seen.stats, corrected=seen.corrected)

    @staticmethod
    def _report(outcome: Outcome, body: kopf.Body, logger: Logger, *, timer: bool) -> list[Event]:
        """Log every outcome; the Events to post: on drift, and whenever Ready changes (not on every re-assert)."""
        before = {c.get("type"): c for c in body.status.get("conditions") or ()}
        ready_before = before.get("Ready") or {}
        ready = outcome_ready(outcome)
        changed = (ready_before.get("status"), ready_before.get("reason")) != ready
        if isinstance(outcome, Applied):
            shown = ", ".join(f"{k} {v[0]} -> {v[1]}" for k, v in sorted(outcome.corrected.items()))
            # Drift: Redis had verifiably held these very settings (status.applied) and no longer did.
            applied = body.status.get("applied") or {}
            had_them = (applied.get("maxMemoryBytes"), applied.get("evictionPolicy")) == (
                outcome.plan.settings.maxmemory,
                outcome.plan.settings.maxmemory_policy,
            ) and applied.get("target") == outcome.plan.target.key
            if timer and outcome.corrected and had_them:
                logger.warning(f"Drift corrected on Redis {outcome.plan.target.key}: {shown}")
                return [("Normal", "DriftCorrected", f"Redis drifted; set back: {shown}")]
            if outcome.corrected or changed:
                logger.info(f"Applied to Redis {outcome.plan.target.key}: {shown or 'already in place'}")
            return [("Normal", "Applied", shown or "already in place")] if changed else []
        if isinstance(outcome, Conflict):
            message = f"Redis {outcome.winner.target} is owned by the older CacheConfig {outcome.winner.ref}"
        else:
            message = outcome.message
        logger.warning(f"Not ready ({ready[1]}): {message}")
        return [("Warning", ready[1], message)] if changed else []


def outcome_ready(outcome: Outcome) -> tuple[str, str]:
    """(status, reason) of the Ready condition for an outcome."""
    reasons = {
        Applied: "Applied",
        Invalid: "InvalidSpec",
        Conflict: "Conflict",
        SecretUnavailable: "SecretUnavailable",
        RedisUnreachable: "RedisUnreachable",
        RedisRefused: "ApplyFailed",
        PublishFailed: "PublishFailed",
    }
    return ("True" if isinstance(outcome, Applied) else "False", reasons[type(outcome)])


def register(
    registry: kopf.OperatorRegistry | None = None,
    options: OperatorSettings | None = None,
    injector: InjectorSettings | None = None,
) -> kopf.OperatorRegistry:
    """Attach the operator's handlers to ``registry`` (a fresh one by default) and return it.

    The sidecar injector (``webhook.py``) is attached when ``injector.enabled`` (``MOBIUS_INJECTOR_ENABLED``).
    """
    registry = registry if registry is not None else kopf.OperatorRegistry()
    options = options if options is not None else OperatorSettings()
    injector = injector if injector is not None else InjectorSettings()
    reconciler = Reconciler(options)
    if injector.enabled:
        webhook.register(registry, injector)

    @kopf.on.login(id="login", registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.index(*RESOURCE, id="cacheconfigs", registry=registry)
    def cacheconfigs(body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]]:
        """The latest copy of every CacheConfig, for the re-assert loop."""
        return {f"{body.meta.namespace}/{body.meta.name}": copy.deepcopy(dict(body))}

    @kopf.on.startup(id="startup", registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: Any, **kwargs: Any) -> None:
        _configure_kopf(settings)
        memo["api"] = api = await Kube.connect(timeout=options.kube_timeout)
        memo["tasks"] = [
            asyncio.create_task(
                reassert_forever(reconciler, api, kwargs["cacheconfigs"], kwargs["claims_by_target"]),
                name="reassert",
            )
        ]
        if options.default_cacheconfig is not None:
            memo["tasks"].append(
                asyncio.create_task(ensure_default(api, options), name="default-cacheconfig")
            )

    @kopf.on.cleanup(id="cleanup", registry=registry)
    async def cleanup(memo: Any, **_: Any) -> None:
        for task in memo.get("tasks", ()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        api = memo.get("api")
        if api is not None:
            await api.close()

    @kopf.index(*RESOURCE, id="claims_by_target", registry=registry)
    def claims_by_target(meta: kopf.Meta, spec: kopf.Spec, **_: Any) -> dict[str, Claim]:
        claim = reconciler.claim(meta, spec)
        return {claim.target: claim} if claim is not None else {}

    @kopf.on.resume(*RESOURCE, id="apply", registry=registry)
    @kopf.on.create(*RESOURCE, id="apply", registry=registry)
    @kopf.on.update(*RESOURCE, id="apply", field="spec", registry=registry)
    async def apply(
        body: kopf.Body, patch: kopf.Patch, retry: int, memo: Any, logger: Logger, **kwargs: Any
    ) -> None:
        claims = _all(kwargs["claims_by_target"])

        async def emit(type: str, reason: str, message: str) -> None:
            kopf.event(body, type=type, reason=reason, message=message)

        outcome = await reconciler.run(
            body=body, api=memo["api"], claims=claims, patch=patch, logger=logger, timer=False, emit=emit
        )
        if is_retryable(outcome):
            delay = backoff_delay(retry, base=options.retry_backoff, cap=options.retry_backoff_cap)
            raise kopf.TemporaryError(getattr(outcome, "message", "retrying"), delay=delay)

    return registry


def _all(index: kopf.Index[str, Claim]) -> list[Claim]:
    return [claim for target in index for claim in index[target]]


async def reassert_forever(
    reconciler: Reconciler,
    api: Kube,
    bodies: kopf.Index[str, dict[str, Any]],
    claims: kopf.Index[str, Claim],
) -> None:
    """Every ``reconcile_interval`` seconds, re-apply every CacheConfig and patch its status (drift correction).

    Resources are handled concurrently (at most 8 at a time); one failing never stops the others or the loop.
    """
    interval = reconciler.options.reconcile_interval
    limit = asyncio.Semaphore(8)

    async def one(raw: dict[str, Any]) -> None:
        body = kopf.Body(cast(kopf.RawBody, raw))
        name = f"{body.meta.namespace}/{body.meta.name}"
        logger = logging.LoggerAdapter(log, {"object": name})
        patch = kopf.Patch()
        async with limit:
            try:

                async def emit(type: str, reason: str, message: str) -> None:
                    target = {
                        "apiVersion": raw.get("apiVersion"),
                        "kind": raw.get("kind"),
                        "name": body.meta.name,
                        "namespace": body.meta.namespace,
                        "uid": body.meta.uid,
                    }
                    try:  # best effort, like kopf's own Events
                        await api.post_event(target, type_=type, reason=reason, message=message)
                    except KubeError as exc:
                        log.warning(f"cannot post Event {reason} for CacheConfig {name}: {exc}")

                await reconciler.run(
                    body=body, api=api, claims=_all(claims), patch=patch, logger=logger, timer=True, emit=emit
                )
                await api.patch_status(
                    GROUP, VERSION, PLURAL, str(body.meta.namespace), str(body.meta.name), patch.status
                )
            except KubeError as exc:
                log.warning(f"re-assert of CacheConfig {name}: {exc}")
            except Exception:
                log.exception(f"re-assert of CacheConfig {name} failed")

    while True:
        await asyncio.sleep(interval)
        snapshots = [raw for key in bodies for raw in bodies[key]]
        live = [raw for raw in snapshots if not raw.get("metadata", {}).get("deletionTimestamp")]
        await asyncio.gather(*(one(raw) for raw in live))


async def ensure_default(api: Kube, options: OperatorSettings) -> None:
    """Create (or bring back to the values) the release's default CacheConfig, owned by the operator's Deployment.

    Retried with backoff until it succeeds (the API server or the CRD may not be ready yet); a spec the API
    server refuses (422) is logged once and not retried: the Helm values must change.
    """
    wanted = options.default_cacheconfig
    assert wanted is not None and options.namespace and options.owner_deployment
    retry = 0
    while True:
        try:
            uid = await api.deployment_uid(options.namespace, options.owner_deployment)
            body = default_cacheconfig(wanted, options.namespace, options.owner_deployment, uid)
            done = await api.upsert_custom_object(GROUP, VERSION, PLURAL, body)
            log.info(f"default CacheConfig {options.namespace}/{wanted.name} {done}")
            return
        except InvalidObjectError as exc:
            log.error(f"default CacheConfig not created: {exc}")
            return
        except KubeError as exc:
            delay = backoff_delay(retry, base=options.retry_backoff, cap=options.retry_backoff_cap)
            log.warning(f"default CacheConfig not created yet ({exc}); retrying in {delay:.0f} s")
            retry += 1
            await asyncio.sleep(delay)


def default_cacheconfig(
    wanted: DefaultCacheConfig, namespace: str, owner: str, owner_uid: str
) -> dict[str, Any]:
    """The default CacheConfig object, owned by the Deployment ``owner`` (so it goes with the release)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "CacheConfig",
        "metadata": {
            "name": wanted.name,
            "namespace": namespace,
            "labels": dict(wanted.labels),
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": owner,
                    "uid": owner_uid,
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "spec": dict(wanted.spec),
    }
