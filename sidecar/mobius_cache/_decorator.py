"""``@cache.cached(...)``: cache-aside for async functions and methods, keyed from their arguments."""

from __future__ import annotations

import functools
import hashlib
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from ._exceptions import InvalidKeyError

if TYPE_CHECKING:
    from ._client import Cache

T = TypeVar("T")


def make_cached(
    cache: Cache,
    ttl: int | None,
    key: str | Callable[..., str] | None,
    tags: Sequence[str],
) -> Callable[[Callable[..., Awaitable[T]]], Callable[..., Awaitable[T]]]:
    def decorate(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"@cached needs an async function; {fn.__qualname__} is not one")
        sig = inspect.signature(fn)
        params = list(sig.parameters)
        skip_first = bool(params) and params[0] in ("self", "cls")

        def key_for(*args: Any, **kwargs: Any) -> str:
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            if skip_first:
                arguments.pop(params[0], None)
            if callable(key):
                return key(**arguments)
            if key is not None:
                try:
                    return key.format(**arguments)
                except (KeyError, IndexError) as exc:
                    raise InvalidKeyError(f"key template {key!r} names an unknown argument: {exc}") from exc
            digest = hashlib.blake2b(
                orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS, default=repr), digest_size=12
            ).hexdigest()
            return f"fn:{fn.__module__}.{fn.__qualname__}:{digest}"

        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> T:
            return await cache.get_or_set(
                key_for(*args, **kwargs), lambda: fn(*args, **kwargs), ttl, tags=tags
            )

        async def invalidate(*args: Any, **kwargs: Any) -> int:
            return await cache.invalidate(key_for(*args, **kwargs))

        wrapper.key_for = key_for  # type: ignore[attr-defined]
        wrapper.invalidate = invalidate  # type: ignore[attr-defined]
        return wrapper

    return decorate
