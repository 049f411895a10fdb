"""Caching strategies for the platform's five kinds of data, plus domain events and warming.

| namespace  | class            | TTL     | serializer | eviction                 | invalidated by                  |
|------------|------------------|---------|------------|--------------------------|---------------------------------|
| document   | EmbeddingCache   | 7 days  | float32    | evictable                | document_updated, project cascade |
| search     | SearchCache      | 5 min   | JSON       | evictable                | tags project:{p}, index:{p}:{v} |
| user       | SessionStore     | 30 min sliding | JSON | never silently (noeviction store) | user_logged_out           |
| api        | ApiResponseCache | 60 s    | JSON/raw   | evictable                | tags resource:{kind}:{id}       |
| config     | ConfigCache      | 24 h    | JSON       | evictable, warmed        | config_changed                  |

TTLs and serializers come from ``CacheConfig.strategies`` (and so from a CacheConfig resource); the table
shows the defaults.
"""

from ._hashing import normalize_query, params_hash, query_hash
from .api import ApiResponseCache, resource_tag
from .configuration import ConfigCache
from .embeddings import EmbeddingCache, bytes_saved
from .events import DOMAIN_EVENTS, InvalidationPlan, apply_plan, handle_event, plan_for
from .search import SearchCache
from .sessions import SessionStore, SessionStoreUnsafeError
from .warming import WarmReport, warm

__all__ = [
    "DOMAIN_EVENTS",
    "ApiResponseCache",
    "ConfigCache",
    "EmbeddingCache",
    "InvalidationPlan",
    "SearchCache",
    "SessionStore",
    "SessionStoreUnsafeError",
    "WarmReport",
    "apply_plan",
    "bytes_saved",
    "handle_event",
    "normalize_query",
    "params_hash",
    "plan_for",
    "query_hash",
    "resource_tag",
    "warm",
]
