"""Limits at the door: request body sizes (413), write rates per caller (429), and who may read /metrics and /docs.

Bodies are read, up to their limit, before the app sees them, so that a client that sends no Content-Length
(chunked) meets the same limit as one that announces its size.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import HTTPException, status

from core.settings import ApiSettings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Routes that take a photo, and so the larger upload limit.
UPLOAD_PATHS = ("/api/v1/photos", "/open311/v2/requests")
OPS_PATHS = ("/metrics", "/docs", "/redoc", "/openapi.json")


@dataclass(slots=True)
class TokenBucket:
    """`rate` per second sustained, `burst` at once."""

    rate: float
    burst: float
    tokens: float = 0.0
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def take(self, now: float) -> float:
        """0 if a request may go now; otherwise the seconds until it may."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class RateLimiter:
    """One token bucket per key (a token id, or a client address for anonymous reports)."""

    MAX_KEYS = 100_000  # forget the idle buckets beyond this many, so that many addresses cannot fill memory

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate = rate_per_s
        self.burst = burst
        self._buckets: dict[str, TokenBucket] = {}

    def check(self, key: str, what: str) -> None:
        """Count one request for `key`; 429 with Retry-After when it is over its rate."""
        now = time.monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.MAX_KEYS:
                self._buckets.clear()
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, stamp=now)  # full at `now`, not later
        wait = bucket.take(now)
        if wait:
            raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                                f"too many {what}: at most {self.rate:g}/s (bursts of {self.burst}); "
                                f"retry in {wait:.1f} s", headers={"Retry-After": str(max(1, round(wait)))})


def is_loopback(host: str | None) -> bool:
    """Whether a client address is this machine (the test client's 'testclient' is)."""
    if host in (None, "testclient", "localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host)).is_loopback
    except ValueError:
        return False


class DoorMiddleware:
    """Body size limits for every request, and the loopback rule for operations pages."""

    def __init__(self, app: App, settings: ApiSettings,
                 ops_check: Callable[[str | None], tuple[int, str] | None]) -> None:
        self.app = app
        self.settings = settings
        self.ops_check = ops_check  # (status, detail) to refuse a remote caller's bearer token, None to let it in

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith(OPS_PATHS) and not self._public(path):
            client = scope.get("client")
            if not is_loopback(client[0] if client else None):
                refusal = self.ops_check(_header(scope, b"authorization"))
                if refusal is not None:
                    await _reply(send, *refusal)
                    return
        if scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        limit = self.settings.max_upload_bytes if path.startswith(UPLOAD_PATHS) else self.settings.max_body_bytes
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _reply(send, status.HTTP_413_CONTENT_TOO_LARGE,
                         f"request body of {int(declared)} bytes is over the limit of {limit} bytes for {path}")
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _reply(send, status.HTTP_413_CONTENT_TOO_LARGE,
                             f"request body is over the limit of {limit} bytes for {path}")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _public(self, path: str) -> bool:
        return self.settings.public_metrics if path.startswith("/metrics") else self.settings.public_docs


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


async def _reply(send: Send, code: int, detail: str) -> None:
    body = orjson.dumps({"detail": detail})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if code == status.HTTP_401_UNAUTHORIZED:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": code, "headers": headers})
    await send({"type": "http.response.body", "body": body})
