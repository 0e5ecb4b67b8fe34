"""The service's OpenAPI description: request bodies, result and error schemas (``GET /openapi.json``).

FastAPI describes what its signatures say; the picture is read from the raw request (so that its size
is checked before it is read), so the bodies and the answers are described here, for client generators.
"""

from __future__ import annotations

from typing import Any

from edgefmnist.runtime.serve_gate import PROTECTED_PREFIXES
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

ERROR_SCHEMA = {"schema": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}}
BINARY = {"type": "string", "format": "binary"}
RESULT_SCHEMA: dict[str, Any] = {  # one entry of `infer --json`, plus timings (runtime/infer.py: Classified)
    "type": "object",
    "required": ["image", "label", "index", "probability", "unsure", "top_k", "typicality", "timings"],
    "properties": {
        "image": {"type": "string", "description": "the upload's file name, or 'upload' for a raw body"},
        "label": {"type": "string", "description": "the best class (also when unsure)"},
        "index": {"type": "integer", "minimum": 0, "maximum": 9},
        "probability": {"type": "number", "description": "its calibrated probability, 0..1"},
        "unsure": {"type": "boolean"},
        "top_k": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"label": {"type": "string"}, "probability": {"type": "number"}},
            },
        },
        "typicality": {"type": ["number", "null"], "description": "0..1; null for a model without the reference"},
        "unsure_reasons": {
            "type": "array",
            "items": {"type": "string", "enum": ["no_object", "low_confidence", "atypical"]},
        },
        "warning": {"type": "string", "description": "why no object was found"},
        "timings": {
            "type": "object",
            "properties": {
                "preprocess_ms": {"type": "number", "description": "decoding and preprocessing this picture"},
                "inference_us": {
                    "type": "number",
                    "description": "the network and the verdict; in a batch, the one call for all its pictures",
                },
            },
        },
        "preprocessed": {"type": "string", "description": "with ?preprocessed=true: the 28x28 as a PNG data URL"},
    },
}
ITEM_ERROR_SCHEMA = {  # a batch's entry for a picture that could not be classified
    "type": "object",
    "required": ["image", "error"],
    "properties": {"image": {"type": "string"}, "error": {"type": "string"}},
}
ERRORS = {
    408: "Body not complete within the upload deadline",
    413: "Body over the size limit, or a decompression bomb",
    415: "A body type other than image/*, application/octet-stream or multipart/form-data",
    503: "Workers and queue full (Retry-After: 1)",
}


def error_doc(description: str) -> dict[str, Any]:
    """One error response: ``description`` and the ``{"error": "one line"}`` body."""
    return {"description": description, "content": {"application/json": ERROR_SCHEMA}}


def request_body(batch: bool) -> dict[str, Any]:
    """``openapi_extra`` of the classify endpoints: one picture raw or as field ``file``, or several ``file`` fields."""
    field = {"type": "array", "items": BINARY} if batch else BINARY
    multipart = {"schema": {"type": "object", "properties": {"file": field}, "required": ["file"]}}
    raw = {} if batch else {"image/*": {"schema": BINARY}, "application/octet-stream": {"schema": BINARY}}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": multipart, **raw}}}


def responses(batch: bool) -> dict[int | str, dict[str, Any]]:
    """``responses`` of the classify endpoints: the result (a list of them for a batch) and each error status."""
    result = {"type": "array", "items": {"oneOf": [RESULT_SCHEMA, ITEM_ERROR_SCHEMA]}} if batch else RESULT_SCHEMA
    return {
        200: {"description": "The verdict", "content": {"application/json": {"schema": result}}},
        **{status: error_doc(text) for status, text in ERRORS.items()},
    }


def service_openapi(app: FastAPI, token: bool) -> dict[str, Any]:
    """FastAPI's OpenAPI description with its 422 validation responses as the service's 400 ``{"error"}``;
    with ``token`` (``--token``), the bearer scheme and a 401 on every path that needs it."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        for path, operations in schema["paths"].items():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                if responses.pop("422", None) is not None:
                    responses["400"] = error_doc("Bad request")
                if token and path.startswith(PROTECTED_PREFIXES):
                    operation["security"] = [{"bearer": []}]
                    responses["401"] = error_doc("Missing or wrong token")
        if token:
            schema.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        schemas = schema.get("components", {}).get("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        if "components" in schema and not schemas:
            schema["components"].pop("schemas")
        app.openapi_schema = schema
    return app.openapi_schema
