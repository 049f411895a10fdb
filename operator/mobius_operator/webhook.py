"""The sidecar injector's kopf wiring: kopf's webhook server and a thin ``@kopf.on.mutate`` handler on pods.

Every decision is :func:`mobius_operator.injection.decide` (pure, unit-tested); this module only does the I/O around
it: read the CacheConfig a pod names, hand the patch to kopf, return the warning or the denial, and record an Event
when injection was asked for but skipped (admission warnings reach only the client that created the pod, which for
a Deployment is the ReplicaSet controller, so the Event is what a person sees).

The chart owns the ``MutatingWebhookConfiguration`` (kopf does not manage it: no RBAC for it here) and the TLS
certificate, mounted as files; kopf's server re-reads them when they change, so a renewed certificate needs no
restart. The API server calls ``https://<operator service>/inject-sidecar`` (``WEBHOOK_ID``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import jsonpatch
import kopf

from mobius_operator import injection
from mobius_operator.kube import Kube, KubeError
from mobius_operator.settings import InjectorSettings

__all__ = ["WEBHOOK_ID", "register"]

WEBHOOK_ID = "inject-sidecar"
log = logging.getLogger("mobius_operator.webhook")
Logger = logging.Logger | logging.LoggerAdapter[Any]


def register(registry: kopf.OperatorRegistry, options: InjectorSettings) -> None:
    """Attach the webhook server's configuration and the mutating handler to ``registry``."""
    template = options.template()
    background: set[asyncio.Task[None]] = set()  # Event posts in flight (a reference keeps them alive)

    @kopf.on.startup(id="injector_server", registry=registry)
    def serve(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.admission.managed = None  # the chart's MutatingWebhookConfiguration, not kopf's
        settings.admission.server = kopf.WebhookServer(
            addr=options.listen_host,
            port=options.listen_port,
            certfile=options.cert_file,
            pkeyfile=options.key_file,
            file_check_interval=options.cert_check_interval,
        )

    @kopf.on.startup(id="injector_repair", registry=registry)
    async def repair(memo: Any, **_: Any) -> None:
        if options.restart_uninjected and options.namespace:
            memo.setdefault("tasks", []).append(
                asyncio.create_task(restart_uninjected(memo, options), name="restart-uninjected")
            )

    @kopf.on.mutate(
        "v1",
        "pods",
        id=WEBHOOK_ID,
        operations=["CREATE"],
        side_effects=True,  # Events, never on dry runs: sideEffects NoneOnDryRun
        ignore_failures=options.failure_policy == "Ignore",
        registry=registry,
    )
    async def inject(
        body: kopf.Body,
        patch: kopf.Patch,
        warnings: list[str],
        dryrun: bool,
        memo: Any,
        logger: Logger,
        **_: Any,
    ) -> None:
        try:
            decision = await _decide(body, template, memo["api"], options.lookup_timeout)
        except Exception as exc:  # a bug must not block pods when the failure policy says Ignore
            logger.exception("the sidecar injector failed")
            decision = _failed(template, f"the injector failed: {exc}")
        match decision:
            case injection.Injected(patch=ops, summary=summary):
                patch.fns.append(lambda raw: jsonpatch.apply_patch(raw, ops, in_place=True))
                logger.info(f"Sidecar {summary}")
            case injection.Unchanged(why=why):
                logger.debug(f"No sidecar injected: {why}")
            case injection.Skipped(reason=reason, message=message):
                warnings.append(message)
                logger.warning(message)
                target = injection.event_target(body)
                if target is not None and not dryrun:
                    task = asyncio.create_task(_post(memo["api"], target, reason, message, logger))
                    background.add(task)
                    task.add_done_callback(background.discard)
            case injection.Denied(message=message):
                logger.warning(f"Denied: {message}")
                raise kopf.AdmissionError(message, code=400)


async def _decide(
    body: Mapping[str, Any], template: injection.SidecarTemplate, api: Kube, timeout: float
) -> injection.Decision:
    """Read the CacheConfig the pod names (if any), then decide."""
    name = injection.config_name(body)
    config: dict[str, Any] | None = None
    error: str | None = None
    if name is not None:
        namespace = str((body.get("metadata") or {}).get("namespace") or "")
        try:
            config = await api.read_cacheconfig(namespace, name, timeout=timeout)
        except KubeError as exc:
            error = str(exc)
    return injection.decide(body, template, config=config, config_error=error)


def _failed(template: injection.SidecarTemplate, message: str) -> injection.Decision:
    if template.deny_invalid:
        return injection.Denied("InjectorFailed", message)
    return injection.Skipped("InjectorFailed", f"sidecar not injected: {message}")


async def _post(api: Kube, target: Mapping[str, Any], reason: str, message: str, logger: Logger) -> None:
    try:
        await api.post_event(target, type_="Warning", reason=reason, message=message)
    except KubeError as exc:
        logger.warning(f"Could not record the Event: {exc}")


async def restart_uninjected(
    memo: Any, options: InjectorSettings, *, attempts: int = 24, every: float = 5.0
) -> None:
    """Restart, once each, the listed Deployments whose pods were admitted before the injector answered.

    `helm install` creates the chart's example app in the same moment as the operator and its webhook
    configuration (Helm creates webhook configurations after Deployments), so its first pods may be admitted
    without the sidecar. The webhook answers once this operator runs; a restart then gets them injected.
    """
    pending = list(options.restart_uninjected)
    for _ in range(attempts):
        await asyncio.sleep(every)
        api: Kube | None = memo.get("api")
        if api is None:
            continue
        for deployment in list(pending):
            try:
                live, missed = await api.uninjected_pods(options.namespace, deployment)
                if missed:
                    await api.restart_deployment(options.namespace, deployment)
                    log.info(
                        f"restarted Deployment {deployment}: {missed} pod(s) missed the sidecar at admission"
                    )
                if live or missed:  # no pod yet: look again next time
                    pending.remove(deployment)
            except KubeError as exc:
                log.warning(f"checking Deployment {deployment} for missed injection: {exc}")
        if not pending:
            return
