"""Hot reload of the policy file the operator writes (the ``CacheConfig`` spec, JSON or YAML).

The operator mounts a ConfigMap; Kubernetes swaps the file in place (a symlink flip), so the watcher polls:
every ``interval`` seconds it reads the file and compares a content hash. A new, valid policy is handed to
``apply``; a broken one is logged and refused, and the last good policy stays in force. Parsing is pure
(:func:`parse_policy`) so it is tested without files or a server.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mobius_cache._config import CacheConfig

__all__ = ["PolicyError", "PolicyState", "PolicyWatcher", "load_policy", "parse_policy"]

log = logging.getLogger("mobius_cache.server.policy")


class PolicyError(ValueError):
    """The policy file cannot be used; the message says what is wrong with it."""


def parse_policy(text: str, *, redis_url: str) -> CacheConfig:
    """Turn a policy document into a :class:`CacheConfig`; the sidecar's own Redis URL always wins."""
    try:
        doc: Any = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise PolicyError(f"not valid JSON or YAML: {exc}") from None
    if not isinstance(doc, Mapping):
        raise PolicyError(f"the policy must be a mapping (a CacheConfig spec), not {type(doc).__name__}")
    strategies = doc.get("strategies")
    if strategies is not None and not isinstance(strategies, Mapping):
        raise PolicyError("'strategies' must be a mapping of namespace -> strategy")
    try:
        return CacheConfig.from_spec(doc, redis_url=redis_url)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'policy'}: {err['msg']}" for err in exc.errors()
        )
        raise PolicyError(problems) from None
    except (TypeError, ValueError) as exc:
        raise PolicyError(str(exc)) from None


def load_policy(path: Path, *, redis_url: str) -> tuple[CacheConfig, str]:
    """Read and parse ``path``; return the config and the content hash (to notice the next change)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PolicyError(f"{path} is not UTF-8 text") from None
    return parse_policy(text, redis_url=redis_url), hashlib.sha256(raw).hexdigest()


@dataclass
class PolicyState:
    """What /readyz and /v1/stats report about the policy: where it is, what is applied, the last error."""

    path: str | None
    applied_hash: str | None = None
    reloads: int = 0
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.path, "hash": self.applied_hash, "reloads": self.reloads, "error": self.error}


class PolicyWatcher:
    """Polls the policy file and applies each new valid version with ``apply`` (``Cache.update_config``)."""

    def __init__(
        self,
        path: Path,
        *,
        redis_url: str,
        apply: Callable[[CacheConfig], None],
        interval: float = 1.0,
    ) -> None:
        self.path = path
        self.redis_url = redis_url
        self.apply = apply
        self.interval = interval
        self.state = PolicyState(path=str(path))
        self._seen_hash: str | None = None
        self._task: asyncio.Task[None] | None = None

    def initial(self) -> CacheConfig | None:
        """The policy at start-up, or None (then the environment's settings apply) when it is unusable."""
        if not self.path.exists():
            self._missing()
            return None
        try:
            config, digest = load_policy(self.path, redis_url=self.redis_url)
        except PolicyError as exc:
            self._refuse(str(exc), digest=None)
            return None
        self._seen_hash = self.state.applied_hash = digest
        log.info("policy %s loaded", self.path)
        return config

    def check(self) -> bool:
        """Look at the file once; apply it when it changed and is valid. True when a new one was applied."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            # Not written yet is normal until the operator's ConfigMap exists (the volume is optional).
            if self.state.applied_hash is None:
                self._missing()
            else:  # removed after it was applied: say so once, and keep what was applied
                self._refuse(f"{self.path} was removed", digest=None)
            return False
        except OSError as exc:
            self._refuse(f"cannot read {self.path}: {exc.strerror or exc}", digest=None)
            return False
        digest = hashlib.sha256(raw).hexdigest()
        if digest == self._seen_hash:
            if digest == self.state.applied_hash:
                self.state.error = None  # e.g. the applied file came back after a removal
            return False
        self._seen_hash = digest
        try:
            config = parse_policy(raw.decode("utf-8"), redis_url=self.redis_url)
        except UnicodeDecodeError:
            self._refuse(f"{self.path} is not UTF-8 text", digest)
            return False
        except PolicyError as exc:
            self._refuse(str(exc), digest)
            return False
        try:
            self.apply(config)
        except (ValueError, TypeError) as exc:
            self._refuse(f"the cache refused the policy: {exc}", digest)
            return False
        self.state.applied_hash = digest
        self.state.reloads += 1
        self.state.error = None
        log.info("policy %s reloaded (default TTL %ss)", self.path, config.default_ttl)
        return True

    def _missing(self) -> None:
        """No policy file yet (the chart mounts the operator's ConfigMap as optional): one log line, then wait."""
        message = f"{self.path} does not exist yet; the environment's settings apply until it appears"
        if message != self.state.error:
            log.info("policy %s (checked every %ss)", message, self.interval)
        self.state.error = message
        self._seen_hash = None

    def _refuse(self, message: str, digest: str | None) -> None:
        if message != self.state.error:  # one line per distinct problem, not one per poll
            log.error("policy %s refused, the last good policy stays in force: %s", self.path, message)
        self.state.error = message
        if digest is not None:
            self._seen_hash = digest

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="mobius-policy-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.check()
            except Exception:  # the watcher must outlive any surprise; the sidecar keeps serving
                log.exception("policy watcher error (will retry)")
