"""The board as a classification service: FastAPI on uvicorn (``pip install 'edgefmnist[serve]'``).

    edgefmnist serve --model models/cnn.onnx --host 0.0.0.0 --token "$TOKEN"
    curl -F file=@shirt.jpg http://127.0.0.1:8000/v1/classify

Endpoints: ``POST /v1/classify`` (raw ``image/*`` body or multipart field ``file``),
``POST /v1/classify/batch`` (multipart, several ``file`` fields), ``GET /v1/model`` (the model's
metadata and the unsure thresholds, ``min_confidence`` and ``min_typicality``),
``GET /healthz``, ``GET /metrics`` (Prometheus text format), ``GET /`` (a page for a phone),
``GET /openapi.json`` (FastAPI's OpenAPI; no ``/docs``: its Swagger UI would come from a CDN).
A result is what ``edgefmnist infer --json`` gives for the same picture, from the same code
(:mod:`edgefmnist.runtime.infer`), plus ``timings``.

Every error is JSON ``{"error": "one line"}`` with its status: 400 not an image or a bad query
parameter, 401 bad or missing token, 404/405 unknown route, 408 upload slower than the upload
deadline, 413 body larger than the limit (checked before it is read) or a decompression bomb,
415 a body type other than ``image/*``, ``application/octet-stream`` or ``multipart/form-data``,
503 when the worker pool and its queue are full. The limits live in :class:`ServeSettings`.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
from edgefmnist.runtime.infer import Classified, check_min_confidence, check_min_typicality, classify_preprocessed
from edgefmnist.runtime.multipart_body import MultipartError, TooManyParts, parse_multipart
from edgefmnist.runtime.picture import PictureTooLarge
from edgefmnist.runtime.predictor import Predictor
from edgefmnist.runtime.preprocess import Preprocessed, preprocess
from edgefmnist.runtime.serve_gate import (
    CLIENT_CLOSED,
    ASGIApp,
    Gate,
    ServeSettings,
    ServiceError,
    ServiceMetrics,
    error_response,
)
from edgefmnist.runtime.serve_openapi import request_body, responses, service_openapi
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from edgefmnist.errors import EdgeFmnistError, first_line

Upload = tuple[str, bytes | bytearray]  # a picture's name (its file name, or "upload") and its encoded bytes

TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"  # RFC 9110, 5.6.2
QUOTED_STRING = r'"(?:[^"\\]|\\.)*"'  # RFC 9110, 5.6.4
# RFC 9110, 8.3.1: type "/" subtype *( OWS ";" OWS [ parameter ] ), a parameter's value a token or a quoted string;
# the only form in which a Content-Type may hold a comma (inside a quoted string)
ONE_MEDIA_TYPE = re.compile(rf"{TOKEN}/{TOKEN}(?:[ \t]*;[ \t]*(?:{TOKEN}=(?:{TOKEN}|{QUOTED_STRING}))?)*")
RAW_TYPES = ("image/", "application/octet-stream")  # Content-Types taken as the picture itself
CLASSIFY_QUERY = ("preprocessed",)  # the query parameters a classification request takes
MAX_SHOWN_NAME = 40  # characters of a refused query parameter's name that its error repeats
# pydantic's strings for a boolean, in any case (its "bool_parsing" error names none of them)
ACCEPTED_BOOLEANS = " (true or false; also 1/0, yes/no, on/off, t/f, y/n)"
OTHER_FORM_PARTS = 16  # multipart parts of other fields a request may carry beside its files (a form's extras)


class Classifier:
    """Pictures in memory -> ``infer --json`` results, on a bounded pool of worker threads."""

    def __init__(self, predictor: Predictor, settings: ServeSettings, metrics: ServiceMetrics) -> None:
        self.predictor = predictor
        self.settings = settings
        self.metrics = metrics
        self.pool = ThreadPoolExecutor(settings.threads, thread_name_prefix="classify")

    def classify(self, pictures: list[Upload], with_pixels: bool) -> list[dict[str, Any]]:
        """Each ``(name, encoded bytes)`` -> its result dict, or ``{"image", "error", "status"}`` for a bad picture.

        Timings: ``preprocess_ms`` (decode and preprocess, per picture) and ``inference_us``
        (the predictor and the verdict, for the whole call). Each picture is counted in the
        metrics by its verdict.
        """
        entries: list[dict[str, Any]] = []
        good: list[tuple[int, Preprocessed, float]] = []
        for name, data in pictures:
            start = time.perf_counter()
            try:
                picture = preprocess(data, name)
            except EdgeFmnistError as exc:
                status = 413 if isinstance(exc, PictureTooLarge) else 400
                entries.append({"image": name, "error": str(exc), "status": status})
                self.metrics.pictures.labels("refused").inc()
                continue
            preprocess_ms = 1000 * (time.perf_counter() - start)
            good.append((len(entries), picture, preprocess_ms))
            entries.append({})
        if good:
            start = time.perf_counter()
            results = classify_preprocessed(
                self.predictor,
                [picture for _, picture, _ in good],
                [pictures[i][0] for i, _, _ in good],
                self.settings.top_k,
                self.settings.min_confidence,
                self.settings.min_typicality,
            )
            inference_us = 1e6 * (time.perf_counter() - start)
            for (i, picture, preprocess_ms), result in zip(good, results, strict=True):
                pixels = picture.pixels if with_pixels else None
                entries[i] = self.result_dict(result, pixels, preprocess_ms, inference_us)
                self.metrics.pictures.labels("unsure" if result.unsure else "answered").inc()
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

    async def run(self, pictures: list[Upload], with_pixels: bool) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, self.classify, pictures, with_pixels)


def png_data_url(pixels: np.ndarray) -> str:
    """uint8 ``[28, 28]`` -> ``data:image/png;base64,...`` (what the page shows as "what the network saw")."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels, "L").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


async def read_body(request: Request) -> bytearray:
    """The whole request body, gathered into one buffer as it arrives (Starlette's ``body()`` would
    hold its chunks and their joined copy at once). A client that hangs up before sending it all
    gets a 499 it will not read (nginx's "client closed request"), so that the metrics count it
    apart from bad requests."""
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
    except ClientDisconnect:
        raise ServiceError(CLIENT_CLOSED, "the client disconnected before the body was complete") from None
    return body


async def read_pictures(request: Request, max_files: int, batch: bool) -> list[Upload]:
    """The uploaded pictures as ``(name, bytes)``: a raw ``image/*`` body, or multipart ``file`` fields."""
    if len(request.headers.getlist("content-type")) > 1:  # which one the sender meant is anyone's guess
        raise ServiceError(400, "more than one Content-Type header: send one")
    content_type = request.headers.get("content-type", "")
    media_type = content_type.partition(";")[0].strip().lower()
    if joined_media_types(content_type):  # repeated headers joined by a proxy (RFC 9110, 5.3): anyone's guess too
        raise ServiceError(
            400,
            f"Content-Type {content_type!r} is not one media type: a comma stands outside a closed quoted string",
        )
    codings = [c.strip().lower() for value in request.headers.getlist("content-encoding") for c in value.split(",")]
    encoding = next((coding for coding in codings if coding not in ("identity", "")), None)
    if encoding:  # a gzipped picture would read as a picture Pillow cannot read
        raise ServiceError(415, f"unsupported Content-Encoding {encoding!r}: send the picture's bytes as they are")
    if media_type == "multipart/form-data":
        return await read_multipart_pictures(request, content_type, max_files, batch)
    if batch:
        got = repr(media_type) if media_type else content_type_absence(request, content_type)
        raise ServiceError(415, f"expected multipart/form-data with 'file' fields, got {got}")
    if not media_type.startswith(RAW_TYPES) or media_type.endswith("/"):  # image/ names no format
        raise ServiceError(
            415,
            f"unsupported Content-Type {media_type!r}: send image/* or multipart/form-data ('file')"
            if media_type
            else f"{content_type_absence(request, content_type)}: send image/* or multipart/form-data ('file')",
        )
    body = await read_body(request)
    if not body:
        raise ServiceError(400, "empty body: send the picture's bytes")
    return [("upload", body)]


async def read_multipart_pictures(request: Request, content_type: str, max_files: int, batch: bool) -> list[Upload]:
    """The ``file`` fields of a multipart body as ``(name, bytes)``: one, or with ``batch`` at most
    ``max_files``. Raises :class:`ServiceError` 400 for an empty or malformed body, no file, or
    several without ``batch``; 413 for too many files or parts."""
    body = await read_body(request)
    if not body:
        what = "the pictures as multipart fields" if batch else "the picture as the multipart field"
        raise ServiceError(400, f"empty body: send {what} 'file'")
    most = max_files + OTHER_FORM_PARTS
    try:  # in a worker thread: the event loop keeps answering other requests meanwhile
        files_ = await run_in_threadpool(parse_multipart, body, content_type, "file", most)
    except TooManyParts:
        raise ServiceError(
            413,
            f"more than {most} multipart parts in one request ({max_files} files and {OTHER_FORM_PARTS} others)",
        ) from None
    except MultipartError as exc:
        raise ServiceError(400, f"malformed multipart body: {exc}") from None
    if not files_:
        what = "them as multipart fields" if batch else "it as the multipart field"
        raise ServiceError(400, f"no picture: send {what} 'file'")
    if not batch and len(files_) > 1:
        raise ServiceError(400, f"{len(files_)} files in one request: use /v1/classify/batch")
    if len(files_) > max_files:
        raise ServiceError(413, f"{len(files_)} files in one request; the limit is {max_files}")
    return files_


def joined_media_types(content_type: str) -> bool:
    """Whether a Content-Type holds a comma outside a closed quoted string: a list of media types,
    where it may hold one, with its parameters (:data:`ONE_MEDIA_TYPE`)."""
    return "," in content_type and not ONE_MEDIA_TYPE.fullmatch(content_type.strip())


def content_type_absence(request: Request, content_type: str) -> str:
    """What stands where a media type should: no Content-Type header, or one that names none (``;;;``)."""
    if "content-type" not in request.headers:
        return "no Content-Type"
    return f"a Content-Type that names no media type ({content_type!r})"


def json_name(path: Path) -> str:
    """``path``'s file name for a JSON answer: a byte that is not UTF-8 becomes U+FFFD, which JSON
    can carry (the name's own surrogate escape cannot be encoded)."""
    return os.fsencode(path.name).decode("utf-8", "replace")


def model_description(predictor: Predictor, settings: ServeSettings) -> dict[str, Any]:
    """The model's metadata as JSON values, with its file name and the unsure thresholds in force.

    ``min_confidence`` and ``min_typicality`` are the thresholds of the ``low_confidence`` and
    ``atypical`` reasons; ``min_typicality`` is None for a model without the typicality reference
    (that rule is not checked).
    """
    props = predictor.metadata.to_props()
    checks_typicality = predictor.metadata.has_typicality_reference
    return {
        "file": json_name(predictor.path),
        **{key: json.loads(value) for key, value in props.items()},
        "min_confidence": settings.min_confidence,
        "min_typicality": settings.min_typicality if checks_typicality else None,
    }


def page_html() -> str:
    """The self-contained page at ``/`` (package data ``serve_page.html``: no CDN, works offline)."""
    return (files("edgefmnist.runtime") / "serve_page.html").read_text(encoding="utf-8")


def validation_message(errors: Sequence[Any]) -> str:
    """FastAPI's request validation errors as one line, e.g. ``query parameter 'preprocessed': Input ...``."""
    parts = []
    for error in errors:
        where, *names = error.get("loc", ()) or ("request",)
        name = ".".join(str(part) for part in names)
        message = error.get("msg", "invalid") + (ACCEPTED_BOOLEANS if error.get("type") == "bool_parsing" else "")
        parts.append(f"{where} parameter {name!r}: {message}" if name else message)
    return "; ".join(parts) or "invalid request"


def query_problem(params: Sequence[tuple[str, str]]) -> str | None:
    """Why a classification request's query (``(name, value)`` pairs) is refused: a parameter it
    does not take (a misspelt ``?preprocesed=true`` would be ignored) or one given twice
    (``?preprocessed=true&preprocessed=false``: which one counts?); else None."""
    names = [name for name, _ in params]
    for name in names:
        shown = (
            repr(name) if len(name) <= MAX_SHOWN_NAME else f"{name[:MAX_SHOWN_NAME]!r}... ({len(name):,} characters)"
        )
        if name not in CLASSIFY_QUERY:
            return f"unknown query parameter {shown} (this endpoint takes {', '.join(CLASSIFY_QUERY)})"
        if names.count(name) > 1:
            return f"query parameter {shown} given {names.count(name)} times: give it once"
    return None


def answer_errors_as_json(app: FastAPI) -> None:
    """Make ``app`` answer every error as :func:`error_response` does: a :class:`ServiceError`,
    Starlette's HTTP errors (404, 405, ...), a request FastAPI cannot validate (400), and any
    other exception (500, naming its type)."""

    @app.exception_handler(ServiceError)
    async def service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, validation_message(exc.errors()))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        return error_response(500, f"internal error ({type(exc).__name__}: {first_line(exc)})")


def create_app(predictor: Predictor, settings: ServeSettings) -> tuple[ASGIApp, ServiceMetrics]:
    """The ASGI application (the FastAPI app behind a :class:`Gate`) and its metrics.

    Raises :class:`EdgeFmnistError` for settings out of range.
    """
    check_min_confidence(settings.min_confidence)
    check_min_typicality(settings.min_typicality)
    if settings.threads < 1 or settings.queue < 0 or settings.max_body < 1 or settings.max_files < 1:
        raise EdgeFmnistError("serve: threads, max body and max files must be at least 1, queue at least 0")
    metrics = ServiceMetrics()
    classifier = Classifier(predictor, settings, metrics)
    page = page_html()
    app = FastAPI(
        title="edgefmnist",
        summary="Fashion-MNIST classification on an edge board",
        version="1",
        lifespan=None,
        docs_url=None,
        redoc_url=None,
        redirect_slashes=False,  # /v1/classify/ is a 404, not a 307 a client may not follow with its upload
    )
    app.openapi = lambda: service_openapi(app, token=bool(settings.token))  # type: ignore[method-assign]

    answer_errors_as_json(app)

    async def classified(request: Request, preprocessed: bool, batch: bool) -> list[dict[str, Any]]:
        """The entries of a classify request's pictures, after its query and body are checked."""
        if problem := query_problem(request.query_params.multi_items()):
            raise ServiceError(400, problem)
        pictures = await read_pictures(request, settings.max_files, batch=batch)
        return await classifier.run(pictures, preprocessed)

    @app.post(
        "/v1/classify",
        summary="Classify one picture (raw image/* body or multipart field 'file')",
        openapi_extra=request_body(batch=False),
        responses=responses(batch=False),
    )
    async def classify(request: Request, preprocessed: bool = False) -> JSONResponse:
        entry = (await classified(request, preprocessed, batch=False))[0]
        if "error" in entry:
            status = entry.pop("status")
            return error_response(status, entry["error"])
        return JSONResponse(entry)

    @app.post(
        "/v1/classify/batch",
        summary="Classify several pictures (multipart, repeated field 'file')",
        openapi_extra=request_body(batch=True),
        responses=responses(batch=True),
    )
    async def classify_batch(request: Request, preprocessed: bool = False) -> JSONResponse:
        entries = await classified(request, preprocessed, batch=True)
        for entry in entries:
            entry.pop("status", None)
        return JSONResponse(entries)

    @app.get("/v1/model", summary="The model's metadata and the unsure thresholds in force")
    async def model() -> JSONResponse:
        return JSONResponse(model_description(predictor, settings))

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok", "model": json_name(predictor.path)})

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    known = {route.path for route in app.routes if hasattr(route, "path")}
    return Gate(app, settings, metrics, known), metrics
