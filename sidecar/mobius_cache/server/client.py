"""A small typed client for the sidecar (httpx), sync and async.

Requests are described once (:class:`_Call`) and their replies parsed once; :class:`SidecarClient` and
:class:`AsyncSidecarClient` only differ in how they send. Errors come back as :class:`SidecarError` with the
API's ``error`` code and ``detail``; a miss is ``None``, never an exception.

    with SidecarClient("http://127.0.0.1:8787") as sidecar:
        sidecar.put("api:v1:users:abc", b'{"n": 1}', content_type="application/json", ttl=60)
        hit = sidecar.get("api:v1:users:abc")   # CachedValue(data=b'{"n": 1}', content_type=..., etag=...)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

__all__ = ["AsyncSidecarClient", "CachedValue", "PutResult", "SidecarClient", "SidecarError"]

DEFAULT_URL = "http://127.0.0.1:8787"


class SidecarError(Exception):
    """The sidecar answered with an error status (``status``, ``code``, ``detail``, ``retry_after``)."""

    def __init__(self, status: int, code: str, detail: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.retry_after = retry_after


@dataclass(frozen=True)
class CachedValue:
    data: bytes
    content_type: str
    etag: str
    ttl: int | None = None  # only from head()


@dataclass(frozen=True)
class PutResult:
    etag: str
    ttl: int


@dataclass
class _Call:
    """One request and how to read its reply."""

    method: str
    path: str
    kind: str  # "value", "head", "put", "json"
    params: list[tuple[str, str | int | float | bool | None]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes | None = None
    json: Any = None


def _key_path(key: str) -> str:
    return "/v1/cache/" + quote(key, safe=":@!$&'()*+,;=-._~")


def _raise_for(resp: httpx.Response) -> None:
    try:
        body = resp.json()
        code, detail = str(body["error"]), str(body["detail"])
    except (ValueError, KeyError, TypeError):
        code, detail = "http_error", resp.text[:200]
    retry = resp.headers.get("retry-after")
    raise SidecarError(resp.status_code, code, detail, float(retry) if retry else None)


def _parse(call: _Call, resp: httpx.Response) -> Any:
    if call.kind in ("value", "head"):
        if resp.status_code == 404 and resp.headers.get("x-cache") in ("miss", "bypass"):
            return None
        if resp.status_code != 200:
            _raise_for(resp)
        ttl = resp.headers.get("x-cache-ttl")
        return CachedValue(
            data=resp.content,
            content_type=resp.headers.get("content-type", ""),
            etag=resp.headers.get("etag", ""),
            ttl=int(ttl) if ttl is not None else None,
        )
    if call.kind == "put":
        if resp.status_code == 412:
            return None
        if resp.status_code != 204:
            _raise_for(resp)
        return PutResult(etag=resp.headers["etag"], ttl=int(resp.headers["x-cache-ttl"]))
    if resp.status_code != 200:
        _raise_for(resp)
    return resp.json()


class _Calls:
    """The API as request descriptions (shared by the sync and async clients)."""

    @staticmethod
    def get(key: str) -> _Call:
        return _Call("GET", _key_path(key), "value")

    @staticmethod
    def head(key: str) -> _Call:
        return _Call("HEAD", _key_path(key), "head")

    @staticmethod
    def put(
        key: str,
        data: bytes | str,
        *,
        content_type: str,
        ttl: int | None,
        tags: Sequence[str],
        depends_on: Sequence[str],
        if_absent: bool,
        if_match: str | None,
    ) -> _Call:
        params: list[tuple[str, str | int | float | bool | None]] = [("tag", t) for t in tags]
        params += [("depends_on", d) for d in depends_on]
        if ttl is not None:
            params.append(("ttl", str(ttl)))
        headers = {"content-type": content_type}
        if if_absent:
            headers["if-none-match"] = "*"
        if if_match is not None:
            headers["if-match"] = if_match
        content = data.encode() if isinstance(data, str) else data
        return _Call("PUT", _key_path(key), "put", params, headers, content)

    @staticmethod
    def delete(key: str, cascade: bool) -> _Call:
        return _Call("DELETE", _key_path(key), "json", [("cascade", "true")] if cascade else [])

    @staticmethod
    def incr(key: str, by: int, ttl: int | None) -> _Call:
        body: dict[str, Any] = {"by": by} | ({"ttl": ttl} if ttl is not None else {})
        return _Call("POST", _key_path(key) + "/incr", "json", json=body)

    @staticmethod
    def json(method: str, path: str, body: Any = None) -> _Call:
        return _Call(method, path, "json", json=body)


def _invalidate_body(
    keys: Sequence[str], pattern: str | None, tags: Sequence[str], cascade: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"keys": list(keys), "tags": list(tags)}
    if pattern is not None:
        body["pattern"] = pattern
    if cascade is not None:
        body["cascade"] = cascade
    return body


def _auth(token: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"} if token else {}


class SidecarClient:
    """Blocking client. ``timeout`` bounds every request (the sidecar itself answers in well under 1 s).

    ``uds``: talk to the sidecar's Unix socket (``MOBIUS_SIDECAR_UDS``) instead of TCP; ``base_url`` then only
    names the host in the requests."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeout: float = 5.0,
        uds: str | None = None,
    ) -> None:
        transport = httpx.HTTPTransport(uds=uds) if uds else None
        self._http = httpx.Client(
            base_url=base_url, headers=_auth(token), timeout=timeout, transport=transport
        )

    def _send(self, call: _Call) -> Any:
        resp = self._http.request(
            call.method,
            call.path,
            params=call.params,
            headers=call.headers,
            content=call.content,
            json=call.json,
        )
        return _parse(call, resp)

    def get(self, key: str) -> CachedValue | None:
        result: CachedValue | None = self._send(_Calls.get(key))
        return result

    def head(self, key: str) -> CachedValue | None:
        result: CachedValue | None = self._send(_Calls.head(key))
        return result

    def put(
        self,
        key: str,
        data: bytes | str,
        *,
        content_type: str = "application/octet-stream",
        ttl: int | None = None,
        tags: Sequence[str] = (),
        depends_on: Sequence[str] = (),
        if_absent: bool = False,
        if_match: str | None = None,
    ) -> PutResult | None:
        """Store ``data``; None when a precondition (``if_absent``/``if_match``) did not hold (412)."""
        call = _Calls.put(
            key,
            data,
            content_type=content_type,
            ttl=ttl,
            tags=tags,
            depends_on=depends_on,
            if_absent=if_absent,
            if_match=if_match,
        )
        result: PutResult | None = self._send(call)
        return result

    def delete(self, key: str, *, cascade: bool = False) -> int:
        return int(self._send(_Calls.delete(key, cascade))["deleted"])

    def incr(self, key: str, by: int = 1, *, ttl: int | None = None) -> int:
        return int(self._send(_Calls.incr(key, by, ttl))["value"])

    def batch_get(self, keys: Sequence[str]) -> dict[str, Any]:
        result: dict[str, Any] = self._send(_Calls.json("POST", "/v1/batch/get", {"keys": list(keys)}))
        return result

    def batch_set(self, items: Sequence[Mapping[str, Any]]) -> int:
        return int(self._send(_Calls.json("POST", "/v1/batch/set", {"items": list(items)}))["stored"])

    def invalidate(
        self,
        *,
        keys: Sequence[str] = (),
        pattern: str | None = None,
        tags: Sequence[str] = (),
        cascade: str | None = None,
    ) -> int:
        body = _invalidate_body(keys, pattern, tags, cascade)
        return int(self._send(_Calls.json("POST", "/v1/invalidate", body))["deleted"])

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._send(_Calls.json("GET", "/v1/stats"))
        return result

    def ready(self) -> dict[str, Any]:
        result: dict[str, Any] = self._send(_Calls.json("GET", "/readyz"))
        return result

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SidecarClient:
        return self

    def __exit__(
        self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]
    ) -> None:
        self.close()


class AsyncSidecarClient:
    """The same API for asyncio code."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeout: float = 5.0,
        uds: str | None = None,
    ) -> None:
        transport = httpx.AsyncHTTPTransport(uds=uds) if uds else None
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=_auth(token), timeout=timeout, transport=transport
        )

    async def _send(self, call: _Call) -> Any:
        resp = await self._http.request(
            call.method,
            call.path,
            params=call.params,
            headers=call.headers,
            content=call.content,
            json=call.json,
        )
        return _parse(call, resp)

    async def get(self, key: str) -> CachedValue | None:
        result: CachedValue | None = await self._send(_Calls.get(key))
        return result

    async def put(
        self,
        key: str,
        data: bytes | str,
        *,
        content_type: str = "application/octet-stream",
        ttl: int | None = None,
        tags: Sequence[str] = (),
        depends_on: Sequence[str] = (),
        if_absent: bool = False,
        if_match: str | None = None,
    ) -> PutResult | None:
        call = _Calls.put(
            key,
            data,
            content_type=content_type,
            ttl=ttl,
            tags=tags,
            depends_on=depends_on,
            if_absent=if_absent,
            if_match=if_match,
        )
        result: PutResult | None = await self._send(call)
        return result

    async def delete(self, key: str, *, cascade: bool = False) -> int:
        return int((await self._send(_Calls.delete(key, cascade)))["deleted"])

    async def batch_get(self, keys: Sequence[str]) -> dict[str, Any]:
        result: dict[str, Any] = await self._send(_Calls.json("POST", "/v1/batch/get", {"keys": list(keys)}))
        return result

    async def invalidate(
        self,
        *,
        keys: Sequence[str] = (),
        pattern: str | None = None,
        tags: Sequence[str] = (),
        cascade: str | None = None,
    ) -> int:
        body = _invalidate_body(keys, pattern, tags, cascade)
        return int((await self._send(_Calls.json("POST", "/v1/invalidate", body)))["deleted"])

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncSidecarClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
