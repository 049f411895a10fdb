"""The example app: writes and reads a value through the sidecar every few seconds and logs what it saw.

Standard library only; it knows nothing about Redis, only the sidecar's HTTP API on loopback.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from email.message import Message

BASE = os.environ.get("MOBIUS_SIDECAR_URL", "http://127.0.0.1:8787")  # set by the sidecar injector
KEY = f"config:example-{socket.gethostname()}"


def call(
    method: str, path: str, body: bytes | None = None, content_type: str = ""
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request to the sidecar; errors come back as their status code, never as an exception."""
    request = urllib.request.Request(BASE + path, data=body, method=method)
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            return response.status, _headers(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, _headers(exc.headers), exc.read()


def _headers(message: Message) -> dict[str, str]:
    """Header names in their canonical case (HTTP/1.1 servers may send them in lower case)."""
    return {name.title(): value for name, value in message.items()}


def main() -> None:
    while True:
        try:
            doc = json.dumps({"written_at": time.time()}).encode()
            put, _, _ = call("PUT", f"/v1/cache/{KEY}?ttl=60", doc, "application/json")
            got, headers, body = call("GET", f"/v1/cache/{KEY}")
            print(f"PUT {put}, GET {got} X-Cache={headers.get('X-Cache')} {body[:80]!r}", flush=True)
        except OSError as exc:
            print(f"sidecar not reachable yet: {exc}", flush=True)
        time.sleep(5)


if __name__ == "__main__":
    main()
