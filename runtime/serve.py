"""The board as a classification service: FastAPI on uvicorn (``pip install 'edgefmnist[serve]'``).

    edgefmnist serve --model models/cnn.onnx --host 0.0.0.0 --token "$TOKEN"
    curl -F file=@shirt.jpg http://127.0.0.1:8000/v1/classify

Endpoints: ``POST /v1/classify`` (raw ``image/*`` body or multipart field ``file``),
``POST /v1/classify/batch`` (multipart, several ``file`` fields), ``GET /v1/model``,
``GET /healthz``, ``GET /metrics`` (Prometheus text format), ``GET /`` (a page for a phone),
``GET /docs`` and ``/openapi.json`` (FastAPI's OpenAPI). A result is what ``edgefmnist infer
--json`` gives for the same picture, from the same code (:mod:`edgefmnist.runtime.infer`),
plus ``timings``.

Every error is JSON ``{"error": "one line"}`` with its status: 400 not an image, 401 bad or
missing token, 404/405 unknown route, 408 upload slower than the upload deadline, 413 body
larger than the limit (checked before it is read) or a decompression bomb, 415 a body type
other than ``image/*``, ``application/octet-stream`` or ``multipart/form-data``, 503 when the
worker pool and its queue are full. The limits live in :class:`ServeSettings`.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import io
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import numpy as np
from edgefmnist.runtime.infer import Classified, check_min_confidence, classify_arrays
from edgefmnist.runtime.multipart_body import MultipartError, parse_multipart
from edgefmnist.runtime.picture import PictureTooLarge
from edgefmnist.runtime.predictor import Predictor
from edgefmnist.runtime.preprocess import preprocess
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from edgefmnist import spec
from edgefmnist.errors import EdgeFmnistError, first_line

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MIB = 1024 * 1024
CLASSIFY_PATHS = ("/v1/classify", "/v1/classify/batch")
PROTECTED_PREFIXES = ("/v1/", "/metrics")
RAW_TYPES = ("image/", "application/octet-stream")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class ServeSettings:
    """The service's limits and defaults.

    ``threads``: worker threads, each classifying one request at a time (onnxruntime runs one
    intra-op thread per call); ``queue``: requests admitted beyond the busy workers, after
    which new classification requests get 503; ``max_body``: request body limit in bytes;
    ``max_files``: pictures per batch request; ``upload_seconds``: the time a client has to
    send its whole body (else 408), so slow clients cannot hold a slot for ever.
    """

    threads: int = 2
    queue: int = 32
    max_body: int = 20 * MIB
    max_files: int = 64
    upload_seconds: float = 30.0
    token: str | None = None
    top_k: int = 3
    min_confidence: float = spec.DEFAULT_MIN_CONFIDENCE


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
        self.answered = 0

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class Gate:
    """ASGI middleware in front of the app: metrics, token, admission, body limit and upload deadline.

    Everything it refuses is refused before the body is read: a missing or wrong token (401,
    compared with ``hmac.compare_digest``), a ``Content-Length`` above ``max_body`` (413), a
    classification request when ``threads + queue`` are already admitted (503). A body that
    grows past ``max_body`` without a length, or arrives slower than ``upload_seconds``, makes
    ``receive`` raise :class:`ServiceError` (413, 408) inside the endpoint.
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
        path = scope["path"] if scope["path"] in self.known_paths else "other"
        start = time.perf_counter()
        status = 500
        self.metrics.in_flight.inc()

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.guarded(scope, receive, send_counted)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(path, str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - start)
            self.metrics.answered += 1

    async def guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {key.decode("latin-1").lower(): value for key, value in scope["headers"]}
        refusal = self.refusal(scope["path"], headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        receive = self.limited(receive)
        if scope["path"] not in CLASSIFY_PATHS:
            await self.app(scope, receive, send)
            return
        if self.admitted >= self.capacity:
            workers, queue = self.settings.threads, self.settings.queue
            busy = f"busy: {self.admitted} requests admitted ({workers} workers, queue {queue}); retry later"
            await error_response(503, busy, {"Retry-After": "1"})(scope, receive, send)
            return
        self.admitted += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.admitted -= 1

    def refusal(self, path: str, headers: dict[str, bytes]) -> JSONResponse | None:
        """The response that refuses a request from its headers alone, or None."""
        if self.token is not None and path.startswith(PROTECTED_PREFIXES):
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
                return error_response(413, too_large(int(length), self.settings.max_body))
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
                raise ServiceError(408, f"upload not complete after {self.settings.upload_seconds:g} s") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.settings.max_body:
                    raise ServiceError(413, too_large(received, self.settings.max_body))
                done = not message.get("more_body", False)
            return message

        return receive_limited


def too_large(size: int, limit: int) -> str:
    return f"request body of {size:,} bytes or more is larger than the limit of {limit:,} bytes"


class Classifier:
    """Pictures in memory -> ``infer --json`` results, on a bounded pool of worker threads."""

    def __init__(self, predictor: Predictor, settings: ServeSettings) -> None:
        self.predictor = predictor
        self.settings = settings
        self.pool = ThreadPoolExecutor(settings.threads, thread_name_prefix="classify")

    def classify(self, pictures: list[tuple[str, bytes]], with_pixels: bool) -> list[dict[str, Any]]:
        """Each ``(name, bytes)`` -> its result dict, or ``{"image", "error", "status"}`` for a bad picture.

        Timings: ``preprocess_ms`` (decode and preprocess, per picture) and ``inference_us``
        (the predictor and the verdict, for the whole call).
        """
        entries: list[dict[str, Any]] = []
        good: list[tuple[int, np.ndarray, str, float]] = []
        for name, data in pictures:
            start = time.perf_counter()
            try:
                picture = preprocess(data, name)
            except EdgeFmnistError as exc:
                status = 413 if isinstance(exc, PictureTooLarge) else 400
                entries.append({"image": name, "error": str(exc), "status": status})
                continue
            preprocess_ms = 1000 * (time.perf_counter() - start)
            good.append((len(entries), picture.pixels, picture.nothing_found, preprocess_ms))
            entries.append({})
        if good:
            start = time.perf_counter()
            results = classify_arrays(
                self.predictor,
                np.stack([pixels for _, pixels, _, _ in good]),
                [pictures[i][0] for i, _, _, _ in good],
                self.settings.top_k,
                self.settings.min_confidence,
                [reason for _, _, reason, _ in good],
            )
            inference_us = 1e6 * (time.perf_counter() - start)
            for (i, pixels, _, preprocess_ms), result in zip(good, results, strict=True):
                entries[i] = self.result_dict(result, pixels if with_pixels else None, preprocess_ms, inference_us)
        return entries

    @staticmethod
    def result_dict(
        result: Classified, pixels: np.ndarray | None, preprocess_ms: float, inference_us: float
    ) -> dict[str, Any]:
        entry = result.to_dict()
        entry["timings"] = {"preprocess_ms": round(preprocess_ms, 3), "inference_us": round(inference_us, 1)}
        if pixels is not None:
            entry["preprocessed"] = png_data_url(pixels)
        return entry

    async def run(self, pictures: list[tuple[str, bytes]], with_pixels: bool) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, self.classify, pictures, with_pixels)


def png_data_url(pixels: np.ndarray) -> str:
    """uint8 ``[28, 28]`` -> ``data:image/png;base64,...`` (what the page shows as "what the network saw")."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels, "L").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


async def read_body(request: Request) -> bytes:
    """The whole request body; a client that hangs up before sending it all gets a 400 it will not read."""
    try:
        return await request.body()
    except ClientDisconnect:
        raise ServiceError(400, "the client disconnected before the body was complete") from None


async def read_pictures(request: Request, max_files: int, batch: bool) -> list[tuple[str, bytes]]:
    """The uploaded pictures as ``(name, bytes)``: a raw ``image/*`` body, or multipart ``file`` fields."""
    content_type = request.headers.get("content-type", "")
    media_type = content_type.partition(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        body = await read_body(request)
        try:
            files_ = parse_multipart(body, content_type, "file")
        except MultipartError as exc:
            raise ServiceError(400, f"malformed multipart body: {exc}") from None
        if not files_:
            raise ServiceError(400, "no picture: send it as the multipart field 'file'")
        if not batch and len(files_) > 1:
            raise ServiceError(400, f"{len(files_)} files in one request: use /v1/classify/batch")
        if len(files_) > max_files:
            raise ServiceError(413, f"{len(files_)} files in one request; the limit is {max_files}")
        return files_
    if batch:
        raise ServiceError(415, f"expected multipart/form-data with 'file' fields, got {media_type or 'no type'!r}")
    if not media_type.startswith(RAW_TYPES):
        raise ServiceError(
            415, f"unsupported Content-Type {media_type or 'none'!r}: send image/* or multipart/form-data ('file')"
        )
    body = await read_body(request)
    if not body:
        raise ServiceError(400, "empty body: send the picture's bytes")
    return [("upload", body)]


def model_description(predictor: Predictor) -> dict[str, Any]:
    """The model's metadata as JSON values, with its file name and the service's verdict settings."""
    props = predictor.metadata.to_props()
    return {"file": predictor.path.name, **{key: json.loads(value) for key, value in props.items()}}


def page_html() -> str:
    """The self-contained page at ``/`` (package data ``serve_page.html``: no CDN, works offline)."""
    return (files("edgefmnist.runtime") / "serve_page.html").read_text(encoding="utf-8")


def create_app(predictor: Predictor, settings: ServeSettings) -> tuple[ASGIApp, ServiceMetrics]:
    """The ASGI application (the FastAPI app behind a :class:`Gate`) and its metrics.

    Raises :class:`EdgeFmnistError` for settings out of range.
    """
    check_min_confidence(settings.min_confidence)
    if settings.threads < 1 or settings.queue < 0 or settings.max_body < 1 or settings.max_files < 1:
        raise EdgeFmnistError("serve: threads, max body and max files must be at least 1, queue at least 0")
    classifier = Classifier(predictor, settings)
    metrics = ServiceMetrics()
    page = page_html()
    app = FastAPI(
        title="edgefmnist",
        summary="Fashion-MNIST classification on an edge board",
        version="1",
        lifespan=None,
    )

    @app.exception_handler(ServiceError)
    async def service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        return error_response(500, f"internal error ({type(exc).__name__}: {first_line(exc)})")

    @app.post("/v1/classify", summary="Classify one picture (raw image/* body or multipart field 'file')")
    async def classify(request: Request, preprocessed: bool = False) -> JSONResponse:
        pictures = await read_pictures(request, settings.max_files, batch=False)
        entry = (await classifier.run(pictures, preprocessed))[0]
        if "error" in entry:
            status = entry.pop("status")
            return error_response(status, entry["error"])
        return JSONResponse(entry)

    @app.post("/v1/classify/batch", summary="Classify several pictures (multipart, repeated field 'file')")
    async def classify_batch(request: Request, preprocessed: bool = False) -> JSONResponse:
        pictures = await read_pictures(request, settings.max_files, batch=True)
        entries = await classifier.run(pictures, preprocessed)
        for entry in entries:
            entry.pop("status", None)
        return JSONResponse(entries)

    @app.get("/v1/model", summary="The model's metadata")
    async def model() -> JSONResponse:
        return JSONResponse(model_description(predictor))

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok", "model": predictor.path.name})

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    known = {route.path for route in app.routes if hasattr(route, "path")}
    return Gate(app, settings, metrics, known), metrics
