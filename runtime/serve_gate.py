"""The service's front door: settings, metrics, and the ASGI gate that refuses before reading a body.

    edgefmnist serve --token "$TOKEN" --max-body-mb 20 --queue 32      # what Gate enforces

:class:`Gate` sits in front of the FastAPI app of :mod:`edgefmnist.runtime.serve`: Prometheus
metrics of every request (``prometheus_client``, in a registry of its own), the bearer token,
the admission limit (``threads + queue`` classification requests, else 503), the body limit
(413) and the upload deadline (408). Every refusal is ``{"error": "one line"}``.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from edgefmnist import contract, spec
from edgefmnist.errors import counted

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MIB = 1024 * 1024
CLASSIFY_PATHS = ("/v1/classify", "/v1/classify/batch")
PROTECTED_PREFIXES = ("/v1/", "/metrics")
STOPPED = "the service was stopped before it answered this request"
# nginx's non-standard 499 "Client Closed Request": the status counted for a request whose client hung up
# mid-body (no one reads it)
CLIENT_CLOSED = 499
# Seconds: prometheus_client's default buckets, which start at 5 ms, with 1 and 2.5 ms below them (a request
# for a 28x28 picture takes a few milliseconds) and without 75 ms, 0.75 s and 7.5 s
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
PICTURE_VERDICTS = ("answered", "unsure", "refused")  # edgefmnist_pictures_total's label values


@dataclass(frozen=True)
class ServeSettings:
    """The service's limits and defaults.

    ``threads``: worker threads, each classifying one request at a time (onnxruntime runs one
    intra-op thread per call); ``queue``: requests admitted beyond the busy workers, after
    which new classification requests get 503; ``max_body``: request body limit in bytes;
    ``max_files``: pictures per batch request; ``upload_seconds``: the time a client has to
    send its whole body (else 408), so slow clients cannot hold a slot for ever, and before
    that its request's head (else the connection is closed, :mod:`edgefmnist.runtime.server`).
    """

    threads: int = 2
    queue: int = contract.SERVE_QUEUE
    max_body: int = round(contract.SERVE_BODY_MB * MIB)
    max_files: int = 64
    upload_seconds: float = contract.SERVE_UPLOAD_SECONDS
    token: str | None = None
    top_k: int = contract.DEFAULT_TOP_K
    min_confidence: float = spec.DEFAULT_MIN_CONFIDENCE
    min_typicality: float = spec.DEFAULT_MIN_TYPICALITY


class ServiceError(Exception):
    """An HTTP error status with a one-line message, answered as ``{"error": message}``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class ServiceMetrics:
    """Prometheus metrics of one service, in their own registry (``prometheus_client``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "edgefmnist_requests",
            "HTTP requests answered, by path and status",
            ["path", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "edgefmnist_request_seconds",
            "Time from request start to the end of the response, seconds",
            ["path"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge("edgefmnist_requests_in_flight", "Requests being answered", registry=self.registry)
        self.pictures = Counter(
            "edgefmnist_pictures",
            "Pictures of classify requests that were read, by verdict: answered, unsure, or refused "
            "(unreadable or too large to decode)",
            ["verdict"],
            registry=self.registry,
        )
        for verdict in PICTURE_VERDICTS:  # each series from the start, at 0: a rate over it needs no first event
            self.pictures.labels(verdict)
        self.answered = 0

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def origin_form(scope: Scope) -> Scope:
    """``scope`` with a request target in absolute form (``GET http://host/v1/model``, as clients
    send it to a proxy) read as its path, ``/v1/model``, and query: RFC 9112, section 3.2.2, has
    a server accept that form, and uvicorn's h11 protocol passes the whole URL on as the path. The
    target is split before it is percent-decoded, so ``%3F`` stays part of the path. A
    ``#fragment``, which no client should send, is dropped in either form, after a query too
    (``/v1/classify?preprocessed=true#x`` is ``/v1/classify?preprocessed=true``)."""
    raw_path: bytes = scope.get("raw_path") or quote(scope["path"], safe="/:").encode()
    query: bytes = scope.get("query_string", b"")
    target = raw_path + b"?" + query if query else raw_path  # uvicorn split it at the first "?"
    if target[:8].lower().startswith((b"http://", b"https://")):  # a scheme is case-insensitive
        parts = urlsplit(target)
        raw_path, query = parts.path, parts.query
    elif b"#" in target:
        raw_path, _, query = target.partition(b"#")[0].partition(b"?")
    else:
        return scope
    raw_path = raw_path or b"/"
    return {**scope, "path": unquote(raw_path.decode("latin-1")), "raw_path": raw_path, "query_string": query}


class Gate:
    """ASGI middleware in front of the app: metrics, token, admission, body limit and upload deadline.

    Everything it refuses is refused before the body is read: a missing or wrong token (401,
    compared with ``hmac.compare_digest``), a ``Content-Length`` above ``max_body`` (413), a
    classification request when ``threads + queue`` are already admitted (503). A body that
    grows past ``max_body`` without a length, or arrives slower than ``upload_seconds``, makes
    ``receive`` raise :class:`ServiceError` (413, 408) inside the endpoint. ``HEAD`` is answered
    wherever ``GET`` is (health checkers and proxies use it).
    """

    def __init__(self, app: ASGIApp, settings: ServeSettings, metrics: ServiceMetrics, known_paths: set[str]) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self.known_paths = known_paths
        self.admitted = 0
        self.capacity = settings.threads + settings.queue
        self.token = settings.token.encode() if settings.token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope = origin_form(scope)  # first: the token and the routes are looked up by the path
        if scope["method"] == "HEAD":  # answered as GET; uvicorn sends the headers without the body
            scope = {**scope, "method": "GET"}
        path = scope["path"] if scope["path"] in self.known_paths else "other"
        start = time.perf_counter()
        status: int | None = None  # until the answer starts
        self.metrics.in_flight.inc()

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.guarded(scope, receive, send_counted)
        except asyncio.CancelledError:  # the server stopped at once (a second Ctrl-C, or its graceful stop timed out)
            if status is None:  # nothing sent yet: say so, rather than uvicorn's traceback and plain-text 500
                await error_response(503, STOPPED)(scope, receive, send_counted)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(path, str(status or 500)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - start)
            if status is not None and status != CLIENT_CLOSED:  # the shutdown line counts answers read
                self.metrics.answered += 1

    async def guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self.refusal(scope["path"], scope["headers"])
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        receive = self.limited(receive)
        if scope["path"] not in CLASSIFY_PATHS:
            await self.app(scope, receive, send)
            return
        if self.admitted >= self.capacity:
            workers, queue = self.settings.threads, self.settings.queue
            admitted, busy_workers = counted(self.admitted, "request"), counted(workers, "worker")
            busy = f"busy: {admitted} admitted ({busy_workers}, queue {queue}); retry later"
            await error_response(503, busy, {"Retry-After": "1"})(scope, receive, send)
            return
        self.admitted += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.admitted -= 1

    def refusal(self, path: str, raw_headers: list[tuple[bytes, bytes]]) -> JSONResponse | None:
        """The response that refuses a request from its headers (ASGI's ``(name, value)`` pairs) alone, or None."""
        headers = {key.decode("latin-1").lower(): value for key, value in raw_headers}
        if "content-length" in headers and "transfer-encoding" in headers:  # RFC 9112, 6.3: then close
            return error_response(400, "both Content-Length and Transfer-Encoding: send one", {"Connection": "close"})
        if self.token is not None and path.startswith(PROTECTED_PREFIXES):
            if sum(key.lower() == b"authorization" for key, _ in raw_headers) > 1:  # which one would count?
                return error_response(400, "more than one Authorization header: send the token once")
            scheme, _, given = headers.get("authorization", b"").partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.token):
                return error_response(
                    401, "missing or wrong token: send 'Authorization: Bearer TOKEN'", {"WWW-Authenticate": "Bearer"}
                )
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return error_response(400, f"Content-Length {length.decode('latin-1')!r} is not a number")
            if int(length) > self.settings.max_body:
                return error_response(413, too_large(int(length), self.settings.max_body, declared=True))
        return None

    def limited(self, receive: Receive) -> Receive:
        """``receive`` that raises :class:`ServiceError` past ``max_body`` bytes or the upload deadline."""
        deadline = time.monotonic() + self.settings.upload_seconds
        received = 0
        done = False

        async def receive_limited() -> Message:
            nonlocal received, done
            if done:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                raise ServiceError(  # RFC 9110, 15.5.9: a 408 closes the connection, and says so
                    408, f"upload not complete after {self.settings.upload_seconds:g} s", {"Connection": "close"}
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.settings.max_body:
                    raise ServiceError(413, too_large(received, self.settings.max_body))
                done = not message.get("more_body", False)
            return message

        return receive_limited


def too_large(size: int, limit: int, declared: bool = False) -> str:
    """The 413's message: a body ``declared`` by its Content-Length, or one of ``size`` bytes so far."""
    return f"request body of {size:,} bytes{'' if declared else ' or more'} is larger than the limit of {limit:,} bytes"
