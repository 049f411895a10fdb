"""kopf handlers: thin wiring of Kubernetes events onto the pure core (``reconcile.py``) and the I/O modules.

``register(registry)`` attaches every handler to a registry, so tests run each operator on a fresh registry
and ``mobius-operator`` on its own. On create, update and resume a resource is applied (retried with backoff
while Redis or the Secret is unavailable); a timer re-asserts it, correcting and reporting drift.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from mobius_operator import redis_admin
from mobius_operator.kube import Kube, KubeError, SecretError
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
from mobius_operator.settings import OperatorSettings

__all__ = ["GROUP", "PLURAL", "VERSION", "register"]

GROUP, VERSION, PLURAL = "cache.mobius.io", "v1alpha1", "cacheconfigs"
RESOURCE = (GROUP, VERSION, PLURAL)
Logger = logging.Logger | logging.LoggerAdapter[Any]
FINALIZER = "cache.mobius.io/operator"


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
        self._report(outcome, body, logger, timer=timer)
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

        target = plan.target
        try:
            password = await self._secret(api, meta, target.secret_name, target.secret_key)
            sentinel_password = await self._secret(
                api, meta, target.sentinel_secret_name, target.sentinel_secret_key
            )
        except SecretError as exc:
            return SecretUnavailable(str(exc))
        try:
            seen = await redis_admin.ensure(
                target,
                password,
                plan.settings,
                timeout=self.options.redis_timeout,
                sentinel_password=sentinel_password,
            )
        except redis_admin.RedisAuthError as exc:
            return RedisUnreachable(str(exc), reason="AuthenticationFailed", nodes=exc.nodes)
        except redis_admin.RedisUnreachableError as exc:
            return RedisUnreachable(str(exc), nodes=exc.nodes)
        except redis_admin.RedisRefusedError as exc:
            return RedisRefused(str(exc), exc.stats, nodes=exc.nodes)
        return Applied(plan=plan, stats=seen.stats, corrected=seen.corrected, nodes=seen.nodes)

    @staticmethod
    async def _secret(api: Kube, meta: kopf.Meta, name: str | None, key: str) -> str | None:
        return await api.read_secret_value(str(meta.namespace), name, key) if name else None

    @staticmethod
    def _report(outcome: Outcome, body: kopf.Body, logger: Logger, *, timer: bool) -> None:
        """Log every outcome; post an Event on drift and whenever Ready changes (not on every timer tick)."""
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
                kopf.event(
                    body, type="Normal", reason="DriftCorrected", message=f"Redis drifted; set back: {shown}"
                )
            elif outcome.corrected or changed:
                logger.info(f"Applied to Redis {outcome.plan.target.key}: {shown or 'already in place'}")
                if changed:
                    kopf.event(body, type="Normal", reason="Applied", message=shown or "already in place")
            return
        if isinstance(outcome, Conflict):
            message = f"Redis {outcome.winner.target} is owned by the older CacheConfig {outcome.winner.ref}"
        else:
            message = outcome.message
        logger.warning(f"Not ready ({ready[1]}): {message}")
        if changed:
            kopf.event(body, type="Warning", reason=ready[1], message=message)


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
    registry: kopf.OperatorRegistry | None = None, options: OperatorSettings | None = None
) -> kopf.OperatorRegistry:
    """Attach the operator's handlers to ``registry`` (a fresh one by default) and return it."""
    registry = registry if registry is not None else kopf.OperatorRegistry()
    options = options if options is not None else OperatorSettings()
    reconciler = Reconciler(options)

    @kopf.on.login(id="login", registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(id="startup", registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
        _configure_kopf(settings)
        memo["api"] = await Kube.connect(timeout=options.kube_timeout)

    @kopf.on.cleanup(id="cleanup", registry=registry)
    async def cleanup(memo: Any, **_: Any) -> None:
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
        outcome = await reconciler.run(
            body=body, api=memo["api"], claims=claims, patch=patch, logger=logger, timer=False
        )
        if is_retryable(outcome):
            delay = backoff_delay(retry, base=options.retry_backoff, cap=options.retry_backoff_cap)
            raise kopf.TemporaryError(getattr(outcome, "message", "retrying"), delay=delay)

    @kopf.timer(
        *RESOURCE,
        id="reassert",
        interval=options.reconcile_interval,
        initial_delay=options.reconcile_interval,
        registry=registry,
    )
    async def reassert(body: kopf.Body, patch: kopf.Patch, memo: Any, logger: Logger, **kwargs: Any) -> None:
        claims = _all(kwargs["claims_by_target"])
        await reconciler.run(
            body=body, api=memo["api"], claims=claims, patch=patch, logger=logger, timer=True
        )

    return registry


def _all(index: kopf.Index[str, Claim]) -> list[Claim]:
    return [claim for target in index for claim in index[target]]
