"""Domain events → invalidations.

The platform's services say what happened (``document_updated(document_id=..., project_id=...)``); this
module says what that makes stale. ``plan_for`` is pure (unit-tested without Redis); ``handle_event`` applies
a plan through the cache, whose invalidations are published on the events channel, so every instance sees
them.

| event              | payload                        | invalidates                                                   |
|--------------------|--------------------------------|---------------------------------------------------------------|
| document_updated   | document_id, project_id        | the embedding; tags project:{p} (search), resource:document:{d} (api) |
| document_deleted   | document_id, project_id        | same as document_updated                                      |
| project_updated    | project_id                     | cascade from project:{p}:metadata; tag project:{p}            |
| index_rebuilt      | project_id, old_version        | tag index:{p}:{old_version}                                   |
| user_logged_out    | user_id                        | user:{u}:session                                              |
| config_changed     | name                           | config:{name}                                                 |
| resource_updated   | kind, resource_id              | tag resource:{kind}:{id}                                      |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._client import Cache
from .._exceptions import InvalidInputError
from .api import resource_tag

__all__ = ["DOMAIN_EVENTS", "InvalidationPlan", "handle_event", "plan_for"]


@dataclass(frozen=True)
class InvalidationPlan:
    keys: tuple[str, ...] = ()
    cascade: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()


def _document(document_id: Any, project_id: Any) -> InvalidationPlan:
    return InvalidationPlan(
        keys=(f"document:{document_id}:embedding",),
        tags=(f"project:{project_id}", resource_tag("document", document_id)),
    )


DOMAIN_EVENTS: dict[str, Callable[..., InvalidationPlan]] = {
    "document_updated": _document,
    "document_deleted": _document,
    "project_updated": lambda project_id: InvalidationPlan(
        cascade=(f"project:{project_id}:metadata",), tags=(f"project:{project_id}",)
    ),
    "index_rebuilt": lambda project_id, old_version: InvalidationPlan(
        tags=(f"index:{project_id}:{old_version}",)
    ),
    "user_logged_out": lambda user_id: InvalidationPlan(keys=(f"user:{user_id}:session",)),
    "config_changed": lambda name: InvalidationPlan(keys=(f"config:{name}",)),
    "resource_updated": lambda kind, resource_id: InvalidationPlan(tags=(resource_tag(kind, resource_id),)),
}


def plan_for(event: str, **payload: Any) -> InvalidationPlan:
    """What ``event`` makes stale. Unknown events and missing or extra fields are errors, not no-ops."""
    builder = DOMAIN_EVENTS.get(event)
    if builder is None:
        raise InvalidInputError(f"unknown domain event {event!r}; known: {', '.join(sorted(DOMAIN_EVENTS))}")
    try:
        return builder(**payload)
    except TypeError as exc:
        raise InvalidInputError(f"bad payload for {event}: {exc}") from exc


async def apply_plan(cache: Cache, plan: InvalidationPlan) -> int:
    deleted = 0
    if plan.keys:
        deleted += await cache.invalidate_keys(list(plan.keys))
    for root in plan.cascade:
        deleted += await cache.invalidate(root, cascade=True)
    if plan.tags:
        deleted += await cache.invalidate_tags(*plan.tags)
    for pattern in plan.patterns:
        deleted += await cache.invalidate_pattern(pattern)
    return deleted


async def handle_event(cache: Cache, event: str, **payload: Any) -> int:
    """Apply the invalidations of a domain event; returns how many keys were removed."""
    return await apply_plan(cache, plan_for(event, **payload))
