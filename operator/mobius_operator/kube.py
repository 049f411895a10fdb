"""The operator's own Kubernetes calls, with kubernetes_asyncio.

Read the Redis password Secret; create-or-patch the policy ConfigMap; patch a CacheConfig's status from the
re-assert loop (kopf patches it in the change handlers); create-or-patch the release's default CacheConfig, owned
by the operator's Deployment; and, for the sidecar injector, read one CacheConfig and post Events. Credentials
come from the same places as kopf's login: the pod's service account in a cluster, otherwise ``KUBECONFIG`` /
``~/.kube/config``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime
import json
import os
import socket
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from mobius_operator.injection import INJECT, INJECTED

__all__ = ["InvalidObjectError", "Kube", "KubeError", "SecretError"]


MERGE_PATCH = "application/merge-patch+json"  # custom objects have no strategic merge


class SecretError(Exception):
    """The password Secret (or its key) cannot be read; the message names it."""


class KubeError(Exception):
    """A Kubernetes API call failed (status, network, timeout); the message says which object."""


class Kube:
    """The two calls the operator makes itself, each bounded by ``timeout`` seconds."""

    def __init__(self, api: client.ApiClient, timeout: float = 10.0) -> None:
        self.api = api
        self.timeout = timeout
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    @classmethod
    async def connect(cls, *, timeout: float = 10.0) -> Kube:
        """A client for the current environment (in-cluster service account, else the kubeconfig)."""
        configuration = client.Configuration()
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            # Read KUBECONFIG now, not at kubernetes_asyncio's import (its default is frozen then).
            path = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
            await config.load_kube_config(config_file=path, client_configuration=configuration)
        return cls(client.ApiClient(configuration), timeout)

    async def close(self) -> None:
        await self.api.close()

    async def read_secret_value(self, namespace: str, name: str, key: str) -> str:
        """The decoded value of ``data[key]`` in Secret ``namespace/name``."""
        try:
            secret = await self.core.read_namespaced_secret(name, namespace, _request_timeout=self.timeout)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SecretError(f"cannot read Secret {namespace}/{name}: {exc or type(exc).__name__}") from exc
        except ApiException as exc:
            if exc.status == 404:
                raise SecretError(
                    f"Secret {namespace}/{name} (spec.redis.passwordSecretRef) does not exist"
                ) from exc
            if exc.status == 403:
                raise SecretError(
                    f"the operator may not read Secret {namespace}/{name} (RBAC: get secrets)"
                ) from exc
            raise SecretError(f"cannot read Secret {namespace}/{name}: {exc.status} {exc.reason}") from exc
        data: Mapping[str, str] = secret.data or {}
        if key not in data:
            raise SecretError(
                f"Secret {namespace}/{name} has no key {key!r} (spec.redis.passwordSecretRef.key)"
            )
        try:
            return base64.b64decode(data[key], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise SecretError(f"Secret {namespace}/{name} key {key!r} is not valid base64 UTF-8") from exc

    async def upsert_configmap(self, body: Mapping[str, Any]) -> str:
        """Create-or-patch the ConfigMap (see :meth:`_upsert`); API and network errors become KubeError."""
        meta = body["metadata"]
        try:
            return await self._upsert(body)
        except ApiException as exc:
            raise KubeError(
                f"cannot write ConfigMap {meta['namespace']}/{meta['name']}: {exc.status} {exc.reason}"
            ) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KubeError(
                f"cannot write ConfigMap {meta['namespace']}/{meta['name']}: {exc or type(exc).__name__}"
            ) from exc

    async def _upsert(self, body: Mapping[str, Any]) -> str:
        """Create the ConfigMap, or patch data, labels and owners that differ: 'created', 'patched', 'unchanged'.

        Idempotent, so replays of the same event (and operator restarts) leave one identical object.
        """
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        raw: Any = dict(body)  # the generated client accepts plain dicts as bodies
        try:
            current = await self.core.read_namespaced_config_map(
                name, namespace, _request_timeout=self.timeout
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            try:
                await self.core.create_namespaced_config_map(namespace, raw, _request_timeout=self.timeout)
                return "created"
            except ApiException as create_exc:
                if create_exc.status != 409:  # 409: created meanwhile by another run; patch it below
                    raise
                current = await self.core.read_namespaced_config_map(
                    name, namespace, _request_timeout=self.timeout
                )
        have_owners = [(o.uid, o.kind) for o in current.metadata.owner_references or []]
        want_owners = [(o["uid"], o["kind"]) for o in meta.get("ownerReferences", [])]
        labels = current.metadata.labels or {}
        if (
            (current.data or {}) == body["data"]
            and have_owners == want_owners
            and all(labels.get(k) == v for k, v in meta.get("labels", {}).items())
        ):
            return "unchanged"
        patch: Any = {
            "metadata": {
                "labels": meta.get("labels", {}),
                "ownerReferences": meta.get("ownerReferences", []),
            },
            "data": body["data"],
        }
        await self.core.patch_namespaced_config_map(name, namespace, patch, _request_timeout=self.timeout)
        return "patched"

    async def read_cacheconfig(self, namespace: str, name: str, *, timeout: float) -> dict[str, Any] | None:
        """The ``spec`` of CacheConfig ``namespace/name``, ``None`` when it does not exist; else KubeError."""
        try:
            obj = await self.custom.get_namespaced_custom_object(
                "cache.mobius.io", "v1alpha1", namespace, "cacheconfigs", name, _request_timeout=timeout
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise KubeError(f"{exc.status} {exc.reason}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KubeError(str(exc) or type(exc).__name__) from exc
        spec = obj.get("spec") if isinstance(obj, Mapping) else None
        return dict(spec) if isinstance(spec, Mapping) else {}

    async def post_event(self, target: Mapping[str, Any], *, type_: str, reason: str, message: str) -> None:
        """Record a core/v1 Event on ``target`` (apiVersion, kind, name, namespace, uid); errors -> KubeError."""
        namespace = str(target["namespace"])
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body: Any = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{target['name']}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
            "involvedObject": {k: v for k, v in target.items() if v},
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "mobius-operator"},
            "reportingComponent": "mobius-operator",
            "reportingInstance": socket.gethostname(),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self.core.create_namespaced_event(namespace, body, _request_timeout=self.timeout)
        except ApiException as exc:
            raise KubeError(f"cannot post an Event in {namespace}: {exc.status} {exc.reason}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KubeError(f"cannot post an Event in {namespace}: {exc or type(exc).__name__}") from exc

    async def patch_status(
        self, group: str, version: str, plural: str, namespace: str, name: str, status: Mapping[str, Any]
    ) -> None:
        """Merge-patch the status subresource of one custom object."""
        body: Any = {"status": dict(status)}
        with _failing(f"patch the status of {plural} {namespace}/{name}"):
            await self.custom.patch_namespaced_custom_object_status(
                group,
                version,
                namespace,
                plural,
                name,
                body,
                _request_timeout=self.timeout,
                _content_type=MERGE_PATCH,  # type: ignore[call-arg]  # accepted, not in the stubs
            )

    async def deployment_uid(self, namespace: str, name: str) -> str:
        """The UID of a Deployment (the owner of the default CacheConfig)."""
        with _failing(f"read Deployment {namespace}/{name}"):
            deployment = await self.apps.read_namespaced_deployment(
                name, namespace, _request_timeout=self.timeout
            )
        return str(deployment.metadata.uid)

    async def upsert_custom_object(
        self, group: str, version: str, plural: str, body: Mapping[str, Any]
    ) -> str:
        """Create the object, or merge-patch its spec, labels and owners: 'created' or 'patched'.

        A 422 (the API server's schema or CEL rules refused it) raises :class:`InvalidObjectError`: retrying
        cannot help, the values must change.
        """
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        raw: Any = dict(body)
        try:
            try:
                await self.custom.create_namespaced_custom_object(
                    group, version, namespace, plural, raw, _request_timeout=self.timeout
                )
                return "created"
            except ApiException as exc:
                if exc.status != 409:
                    raise
            patch: Any = {
                "metadata": {
                    "labels": meta.get("labels", {}),
                    "ownerReferences": meta.get("ownerReferences", []),
                },
                "spec": body["spec"],
            }
            await self.custom.patch_namespaced_custom_object(
                group,
                version,
                namespace,
                plural,
                name,
                patch,
                _request_timeout=self.timeout,
                _content_type=MERGE_PATCH,  # type: ignore[call-arg]  # accepted, not in the stubs
            )
            return "patched"
        except ApiException as exc:
            if exc.status == 422:
                raise InvalidObjectError(
                    f"{plural} {namespace}/{name} refused by the API server: {_message(exc)}"
                ) from exc
            raise KubeError(f"cannot write {plural} {namespace}/{name}: {exc.status} {exc.reason}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KubeError(f"cannot write {plural} {namespace}/{name}: {exc or type(exc).__name__}") from exc

    async def uninjected_pods(self, namespace: str, deployment: str) -> tuple[int, int]:
        """(live pods, those that asked for the sidecar but were admitted without it) of the Deployment."""
        with _failing(f"list the pods of Deployment {namespace}/{deployment}"):
            obj = await self.apps.read_namespaced_deployment(
                deployment, namespace, _request_timeout=self.timeout
            )
            selector = ",".join(f"{k}={v}" for k, v in (obj.spec.selector.match_labels or {}).items())
            pods = await self.core.list_namespaced_pod(
                namespace, label_selector=selector, _request_timeout=self.timeout
            )
        live = [p for p in pods.items if p.metadata.deletion_timestamp is None]
        missed = 0
        for pod in live:
            annotations = pod.metadata.annotations or {}
            if annotations.get(INJECT) == "true":
                missed += annotations.get(INJECTED) != "true"
        return len(live), missed

    async def restart_deployment(self, namespace: str, deployment: str) -> None:
        """What `kubectl rollout restart` does: a new pod-template annotation, so new pods replace the old."""
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body: Any = {
            "spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": now}}}}
        }
        with _failing(f"restart Deployment {namespace}/{deployment}"):
            await self.apps.patch_namespaced_deployment(
                deployment, namespace, body, _request_timeout=self.timeout
            )


@contextlib.contextmanager
def _failing(what: str) -> Iterator[None]:
    """API, network and timeout errors of one call, as a KubeError that says what was being done."""
    try:
        yield
    except ApiException as exc:
        raise KubeError(f"cannot {what}: {exc.status} {exc.reason}") from exc
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise KubeError(f"cannot {what}: {exc or type(exc).__name__}") from exc


class InvalidObjectError(KubeError):
    """The API server refused an object as invalid (422): fix the values, do not retry."""


def _message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or b"{}").get("message", exc.reason))
    except (TypeError, ValueError):
        return str(exc.reason)
