"""The ``redis+sentinel://`` URL: which Sentinels to ask, for which master, and how to talk to the data nodes.

::

    redis+sentinel://[user:password@]host:port[,host:port...]/<master-name>[/<db>][?query]
    rediss+sentinel://...      the same over TLS (Sentinels and data nodes)

``user:password`` authenticate against the Redis data nodes (master and replicas), like in a ``redis://`` URL;
the Sentinels' own credentials are separate settings (``MOBIUS_REDIS_SENTINEL_USERNAME`` /
``MOBIUS_REDIS_SENTINEL_PASSWORD``), because Sentinels and data nodes usually have different ACLs. A host
without a port means Sentinel's default port, 26379. The query string is redis-py's (e.g.
``ssl_ca_certs=/etc/tls/ca.crt``) and applies to the data nodes and, with ``rediss+sentinel``, to the
Sentinels' TLS too.

Pure parsing, no I/O and no redis import: the configuration model and the operator's pure core use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

__all__ = ["SENTINEL_SCHEMES", "SentinelURL", "is_sentinel_url", "parse_sentinel_url"]

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
DEFAULT_SENTINEL_PORT = 26379
_HOST_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::([1-9][0-9]{0,4}))?$")  # as in the CRD
_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,255}$")  # the CRD's pattern is the same


@dataclass(frozen=True)
class SentinelURL:
    """A parsed ``redis+sentinel://`` URL."""

    sentinels: tuple[tuple[str, int], ...]
    master_name: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    query: str = ""

    def data_node_url(self) -> str:
        """A ``redis[s]://`` URL with this URL's credentials, db and query, for a data node whose address
        the Sentinels give later (redis-py parses it: TLS and query options are handled as for any URL)."""
        auth = ""
        if self.username or self.password:
            auth = quote(self.username or "", safe="") + (
                ":" + quote(self.password, safe="") if self.password else ""
            )
            auth += "@"
        query = f"?{self.query}" if self.query else ""
        return f"{'rediss' if self.tls else 'redis'}://{auth}sentinel-managed/{self.db}{query}"

    @property
    def key(self) -> str:
        """Identifies the monitored service: its name and the (sorted) Sentinels that watch it."""
        hosts = ",".join(sorted(f"{h.lower()}:{p}" for h, p in self.sentinels))
        return f"{self.master_name}@{hosts}"


def is_sentinel_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in SENTINEL_SCHEMES


def parse_sentinel_url(url: str) -> SentinelURL:
    """Parse ``url``; a ``ValueError`` says what is wrong and shows the expected form."""
    form = "redis+sentinel://[user:password@]host:port[,host:port...]/<master-name>[/<db>]"
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SENTINEL_SCHEMES:
        raise ValueError(f"a Sentinel URL starts with redis+sentinel:// or rediss+sentinel://: {form}")
    rest, _, query = rest.partition("?")
    if "#" in rest or "#" in query:
        raise ValueError("a Sentinel URL has no #fragment")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        userinfo, hosts = "", netloc
    username, password = _userinfo(userinfo) if at else (None, None)
    sentinels = tuple(_host(h) for h in hosts.split(","))  # "" → error below, with the form
    parts = path.split("/") if path else []
    if parts and parts[-1] == "":
        parts.pop()  # a trailing slash
    if not parts:
        raise ValueError(f"the Sentinel URL names no master (the Sentinels' service name): {form}")
    if len(parts) > 2:
        raise ValueError(f"the Sentinel URL's path is /<master-name>[/<db>], not /{path}")
    name = parts[0]
    if not _NAME_RE.match(name):
        raise ValueError(f"invalid master name {name!r}: 1-255 of A-Z, a-z, 0-9, '.', '_' and '-'")
    db = 0
    if len(parts) == 2:
        if not re.fullmatch(r"[0-9]{1,2}", parts[1]):
            raise ValueError(f"the database in a Sentinel URL is a number 0-99, not {parts[1]!r}")
        db = int(parts[1])
    return SentinelURL(
        sentinels=sentinels,
        master_name=name,
        db=db,
        username=username,
        password=password,
        tls=scheme.lower() == "rediss+sentinel",
        query=query,
    )


def _userinfo(text: str) -> tuple[str | None, str | None]:
    user, colon, password = text.partition(":")
    return (unquote(user) or None, unquote(password) if colon and password else None)


def _host(text: str) -> tuple[str, int]:
    match = _HOST_RE.match(text.strip())
    if not text.strip() or not match:
        raise ValueError(
            f"invalid Sentinel address {text!r}: use host:port (e.g. sentinel-0.redis:26379), "
            "several separated by commas"
        )
    host, port = match.group(1), match.group(2)
    number = int(port) if port else DEFAULT_SENTINEL_PORT
    if not 1 <= number <= 65535:
        raise ValueError(f"invalid Sentinel port {port} in {text!r}: 1-65535")
    return host.strip("[]"), number
