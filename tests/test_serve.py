"""`edgefmnist serve` as a real process on a free local port: every endpoint, every error status,
the token, the limits, hostile uploads, a slow client, overload and SIGTERM during load."""

from __future__ import annotations

import base64
import gzip
import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import (
    REGRESSION_SET,
    assert_one_line_error,
    png_declaring,
    png_with_huge_text,
    without_typicality_reference,
)
from PIL import Image
from serve_client import Reply, ServerProcess, multipart

from edgefmnist import spec

RESULT_KEYS = ("label", "index", "probability", "unsure", "top_k")


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def infer_json(paths: list[Path], *args: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "edgefmnist.cli", "infer", *[f"--image={p}" for p in paths], "--json", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_error(reply: Reply, status: int, *fragments: str) -> None:
    assert reply.status == status, reply.body
    assert reply.headers["content-type"] == "application/json"
    message = reply.json()["error"]
    assert message and "\n" not in message and "Traceback" not in message
    for fragment in fragments:
        assert fragment in message, message


@pytest.fixture(scope="module")
def fashion_pngs(fashion: Any) -> list[bytes]:
    return [png_bytes(fashion.test.images[i]) for i in range(6)]


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    process = ServerProcess("--max-body-mb", "1")
    yield process
    code, err = process.stop()
    assert code == 0 and "Traceback" not in err, err


def test_classify_equals_infer_json_raw_and_multipart(
    server: ServerProcess, fashion_pngs: list[bytes], tmp_path: Path
) -> None:
    paths = []
    for i, data in enumerate(fashion_pngs[:3]):
        paths.append(tmp_path / f"{i}.png")
        paths[-1].write_bytes(data)
    expected = infer_json(paths)
    for data, want in zip(fashion_pngs, expected, strict=False):
        for reply in (server.post_image(data), server.post_files([("x.png", data)])):
            assert reply.status == 200, reply.body
            got = reply.json()
            assert {key: got[key] for key in RESULT_KEYS} == {key: want[key] for key in RESULT_KEYS}
            assert got["timings"]["preprocess_ms"] > 0 and got["timings"]["inference_us"] > 0
    assert server.post_files([("x.png", fashion_pngs[0])]).json()["image"] == "x.png"


def test_an_upload_is_decoded_from_its_own_bytes_whatever_its_file_name(server: ServerProcess, tmp_path: Path) -> None:
    """An uncompressed TIFF named after a file on the server: its pixels are not read from that file."""
    secret = tmp_path / "secret.tif"
    Image.fromarray(np.tile(np.arange(256, dtype=np.uint8), (100, 1))[:, :100]).save(secret)
    black = io.BytesIO()
    Image.new("L", (100, 100), 0).save(black, format="TIFF")
    reply = server.post_files([(str(secret), black.getvalue())], "/v1/classify?preprocessed=true")
    assert reply.status == 200 and reply.json()["unsure_reasons"][0] == "no_object", reply.body


def test_preprocessed_image_is_what_infer_feeds_the_network(server: ServerProcess, tmp_path: Path) -> None:
    photo = sorted((REGRESSION_SET / "shoes").glob("*.jpg"))[0]
    saved = tmp_path / "seen.png"
    want = infer_json([photo], "--save-preprocessed", str(saved))[0]
    reply = server.post_files([(photo.name, photo.read_bytes())], "/v1/classify?preprocessed=true")
    got = reply.json()
    assert {key: got[key] for key in RESULT_KEYS} == {key: want[key] for key in RESULT_KEYS}
    prefix = "data:image/png;base64,"
    assert got["preprocessed"].startswith(prefix)
    seen = np.asarray(Image.open(io.BytesIO(base64.b64decode(got["preprocessed"][len(prefix) :]))))
    assert seen.shape == (28, 28) and np.array_equal(seen, np.asarray(Image.open(saved)))


def test_batch_classifies_each_file_and_names_the_bad_one(server: ServerProcess, fashion_pngs: list[bytes]) -> None:
    files = [("a.png", fashion_pngs[0]), ("notes.txt", b"hello"), ("b.png", fashion_pngs[1])]
    reply = server.post_files(files, "/v1/classify/batch")
    assert reply.status == 200, reply.body
    entries = reply.json()
    assert [entry["image"] for entry in entries] == ["a.png", "notes.txt", "b.png"]
    assert entries[1] == {"image": "notes.txt", "error": "notes.txt: not an image Pillow can read"}
    for entry, data in ((entries[0], fashion_pngs[0]), (entries[2], fashion_pngs[1])):
        single = server.post_image(data).json()
        assert {key: entry[key] for key in RESULT_KEYS} == {key: single[key] for key in RESULT_KEYS}


def picture_counts(server: ServerProcess) -> dict[str, float]:
    """``edgefmnist_pictures_total`` by verdict, from ``/metrics``."""
    text = server.request("GET", "/metrics").body.decode()
    return {verdict: float(n) for verdict, n in re.findall(r'edgefmnist_pictures_total\{verdict="(\w+)"\} (\S+)', text)}


def test_metrics_count_the_pictures_of_each_verdict(server: ServerProcess, fashion_pngs: list[bytes]) -> None:
    before = picture_counts(server)
    assert set(before) == {"answered", "unsure", "refused"}  # every series there, before its first picture
    grey = io.BytesIO()
    Image.new("L", (64, 64), 128).save(grey, format="PNG")
    files = [("a.png", fashion_pngs[0]), ("notes.txt", b"hello"), ("grey.png", grey.getvalue())]
    entries = server.post_files(files, "/v1/classify/batch").json()
    verdicts = ["refused" if "error" in entry else "unsure" if entry["unsure"] else "answered" for entry in entries]
    assert verdicts[1:] == ["refused", "unsure"]
    verdicts.append("unsure" if server.post_image(fashion_pngs[1]).json()["unsure"] else "answered")  # one alone
    after = picture_counts(server)
    assert {verdict: after[verdict] - before[verdict] for verdict in after} == {v: verdicts.count(v) for v in after}


def test_model_health_metrics_openapi_and_page(server: ServerProcess, fashion_pngs: list[bytes]) -> None:
    model = server.request("GET", "/v1/model").json()
    assert model["file"] == "cnn.onnx" and len(model["class_names"]) == 10 and model["precision"] == "fp32"
    assert model["min_confidence"] == spec.DEFAULT_MIN_CONFIDENCE
    assert model["min_typicality"] == spec.DEFAULT_MIN_TYPICALITY
    assert server.request("GET", "/healthz").json()["status"] == "ok"
    server.post_image(fashion_pngs[0])
    server.post_image(b"not a picture")
    metrics = server.request("GET", "/metrics")
    assert metrics.status == 200 and metrics.headers["content-type"].startswith("text/plain")
    text = metrics.body.decode()
    assert 'edgefmnist_requests_total{path="/v1/classify",status="200"}' in text
    assert 'edgefmnist_requests_total{path="/v1/classify",status="400"}' in text
    assert 'edgefmnist_request_seconds_bucket{le="0.1",path="/v1/classify"}' in text
    assert "edgefmnist_requests_in_flight 1.0" in text  # the /metrics request itself
    paths = server.request("GET", "/openapi.json").json()["paths"]
    assert {"/v1/classify", "/v1/classify/batch", "/v1/model", "/healthz", "/metrics"} <= set(paths)
    for path in ("/v1/classify", "/v1/classify/batch"):  # bad query parameters are the service's 400, not 422
        post = paths[path]["post"]
        assert set(post["responses"]) == {"200", "400", "408", "413", "415", "503"}  # 401 only with --token
        assert post["responses"]["413"]["content"]["application/json"]["schema"]["required"] == ["error"]
        file_field = post["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]["file"]
        result = post["responses"]["200"]["content"]["application/json"]["schema"]
        if path.endswith("batch"):  # several file fields, a list of results or errors
            file_field, (result, error) = file_field["items"], result["items"]["oneOf"]
            batch = server.post_files([("x.png", fashion_pngs[0]), ("bad.png", b"no picture")], path).json()
            assert set(error["required"]) <= set(batch[1]) <= set(error["properties"])
        else:  # or the picture as the body
            assert {"image/*", "application/octet-stream"} < set(post["requestBody"]["content"])
        assert file_field == {"type": "string", "format": "binary"}
        answer = server.post_image(fashion_pngs[0]).json()
        assert set(result["required"]) <= set(answer) <= set(result["properties"])
        assert answer["image"] == "upload" and "'upload' for a raw body" in result["properties"]["image"]["description"]
    assert set(paths["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain"}
    page = server.request("GET", "/")
    html = page.body.decode()
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert '<input id="file" type="file" accept="image/*">' in html  # no capture: camera or gallery, as the user picks
    assert "http://" not in html and "https://" not in html  # self-contained: nothing from a CDN


def test_model_reports_the_thresholds_that_decide_the_unsure_reasons(fashion_pngs: list[bytes]) -> None:
    strict = ServerProcess("--min-confidence", "0.9", "--min-typicality", "0.6")
    try:
        model = strict.request("GET", "/v1/model").json()
        assert (model["min_confidence"], model["min_typicality"]) == (0.9, 0.6)
        seen = set()
        for data in fashion_pngs:
            got = strict.post_image(data).json()
            fired = (
                ("low_confidence", got["probability"] <= model["min_confidence"]),
                ("atypical", got["typicality"] < model["min_typicality"]),
            )
            assert got.get("unsure_reasons", []) == [reason for reason, failed in fired if failed]
            seen.add(tuple(got.get("unsure_reasons", [])))
        assert {(), ("atypical",), ("low_confidence", "atypical")} <= seen  # the first 6 test images
    finally:
        assert strict.stop()[0] == 0


def test_model_without_the_typicality_reference_reports_no_min_typicality(
    fashion_pngs: list[bytes], tmp_path: Path
) -> None:
    from edgefmnist.runtime.predictor import default_model_path

    older = without_typicality_reference(default_model_path(), tmp_path / "older.onnx")
    target = ServerProcess("--model", str(older), "--min-typicality", "0.9")
    try:
        described = target.request("GET", "/v1/model").json()
        assert described["file"] == "older.onnx"
        assert (described["min_confidence"], described["min_typicality"]) == (spec.DEFAULT_MIN_CONFIDENCE, None)
        got = target.post_image(fashion_pngs[0]).json()
        assert got["typicality"] is None and "unsure_reasons" not in got
    finally:
        assert target.stop()[0] == 0


def test_head_is_answered_where_get_is(server: ServerProcess) -> None:
    for path in ("/", "/healthz", "/v1/model", "/metrics", "/openapi.json"):
        get, head = server.request("GET", path), server.request("HEAD", path)
        assert head.status == get.status == 200, (path, head.status)
        assert head.body == b"" and head.headers["content-type"] == get.headers["content-type"]
        if path != "/metrics":  # the metrics text changes with every request
            assert head.headers["content-length"] == get.headers["content-length"] == str(len(get.body))
    assert server.request("HEAD", "/v1/classify").status == 405
    assert server.request("HEAD", "/v1/nothing").status == 404


def chunked_post(server: ServerProcess, size: int) -> Reply:
    """POST ``size`` bytes as chunked transfer encoding: no Content-Length to refuse it by."""
    import http.client

    connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
    try:
        chunks = (b"\0" * 65536 for _ in range(size // 65536))
        connection.request("POST", "/v1/classify", chunks, {"Content-Type": "image/png"}, encode_chunked=True)
        response = connection.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


def post_with_two_content_types(server: ServerProcess, data: bytes) -> Reply:
    """POST ``data`` with two Content-Type headers (``image/png`` and ``text/plain``)."""
    import http.client

    connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
    try:
        connection.putrequest("POST", "/v1/classify")
        for value in ("image/png", "text/plain"):
            connection.putheader("Content-Type", value)
        connection.putheader("Content-Length", str(len(data)))
        connection.endheaders(data)
        response = connection.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


def tiny_parts(count: int) -> tuple[bytes, dict[str, str]]:
    """A multipart body of ``count`` one-byte fields, and its headers."""
    body, content_type = multipart([("x", b"a")] * count, field="note")
    return body, {"Content-Type": content_type}


def truncated_png() -> bytes:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = png_bytes(noise)
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    "send, status, fragments",
    [
        (lambda s: s.post_image(b"just some text"), 400, ["not an image"]),
        (lambda s: s.post_image(truncated_png()), 400, ["corrupt or truncated"]),
        (lambda s: s.post_image(b""), 400, ["empty body"]),
        (lambda s: s.post_image(b"--x\r\nbroken", content_type="multipart/form-data; boundary=x"), 400, ["multipart"]),
        (
            lambda s: s.post_image(b"", content_type="multipart/form-data; boundary=x"),
            400,
            ["empty body: send the picture as the multipart field 'file'"],
        ),
        (
            lambda s: s.request("POST", "/v1/classify/batch", b"", {"Content-Type": "multipart/form-data; boundary=x"}),
            400,
            ["empty body: send the pictures as multipart fields 'file'"],
        ),
        (lambda s: s.post_files([], "/v1/classify"), 400, ["no picture: send it as the multipart field 'file'"]),
        (
            lambda s: s.request("POST", "/v1/classify/batch", *tiny_parts(1)),
            400,
            ["no picture: send them as multipart fields 'file'"],
        ),
        (
            lambda s: s.request("POST", "/v1/classify", *tiny_parts(5000)),
            413,
            ["more than 80 multipart parts in one request (64 files and 16 others)"],
        ),
        (lambda s: s.post_image(b"x" * 100, content_type="text/plain"), 415, ["text/plain"]),
        (lambda s: s.post_image(b"x", "/v1/classify/batch"), 415, ["multipart"]),
        (lambda s: s.request("POST", "/v1/classify", b"x"), 415, ["no Content-Type: send image/*"]),
        (
            lambda s: s.request("POST", "/v1/classify", b"x", {"Content-Type": ";;;"}),
            415,
            ["a Content-Type that names no media type (';;;'): send image/*"],
        ),
        (
            lambda s: s.post_image(b"\xff\xd8", content_type="multipart/form-data; boundary=xyz"),
            400,
            ["malformed multipart body: no line of the body is the boundary that Content-Type gives ('--xyz')"],
        ),
        (lambda s: s.post_image(gzip.compress(b"x"), **{"Content-Encoding": "gzip"}), 415, ["Content-Encoding 'gzip'"]),
        (
            lambda s: s.request(
                "POST",
                "/v1/classify",
                gzip.compress(b"x"),
                {"Content-Type": "image/png", "Content-Encoding": "identity, gzip"},
            ),
            415,
            ["Content-Encoding 'gzip'"],
        ),  # fmt: skip
        (lambda s: post_with_two_content_types(s, b"x"), 400, ["more than one Content-Type header"]),
        (
            lambda s: s.post_image(b"x", content_type="image/png, text/plain"),  # two headers joined by a proxy
            400,
            ["Content-Type 'image/png, text/plain' is not one media type: a comma stands outside a closed"],
        ),
        (
            lambda s: s.request(
                "POST", "/v1/classify", b"x", {"Content-Type": "multipart/form-data; boundary=x, image/png"}
            ),
            400,
            ["Content-Type 'multipart/form-data; boundary=x, image/png' is not one media type"],
        ),
        (lambda s: s.post_image(b"x", content_type="image/"), 415, ["unsupported Content-Type 'image/'"]),
        (lambda s: s.post_image(png_declaring(100_000, 100_000)), 413, ["100000 x 100000", "bomb"]),
        (lambda s: s.post_image(png_with_huge_text(Image.new("L", (28, 28)))), 413, ["ICC-profile chunks", "bomb"]),
        (lambda s: s.post_image(b"\0" * (2 << 20)), 413, ["of 2,097,152 bytes is larger than the limit of 1,048,576"]),
        (lambda s: chunked_post(s, 2 << 20), 413, ["bytes or more is larger than the limit of 1,048,576 bytes"]),
        (lambda s: s.request("GET", "/v1/nothing"), 404, ["Not Found"]),
        (lambda s: s.request("GET", "/v1/classify"), 405, ["Method Not Allowed"]),
        (lambda s: s.post_image(b"x", "/v1/classify?preprocessed=maybe"), 400, ["'preprocessed'", "(true or false;"]),
        (lambda s: s.post_image(b"x", "/v1/classify/batch?preprocessed=2"), 400, ["query parameter 'preprocessed'"]),
        (lambda s: s.post_image(b"x", "/v1/classify?preprocesed=1"), 400, ["unknown query parameter 'preprocesed'"]),
        (
            lambda s: s.post_image(b"x", "/v1/classify?" + "p" * 5000 + "=1"),
            400,
            [f"unknown query parameter '{'p' * 40}'... (5,000 characters) (this endpoint takes preprocessed)"],
        ),
        (
            lambda s: s.post_files([("a.png", b"x")], "/v1/classify/batch?preprocessed=true&preprocessed=false"),
            400,
            ["query parameter 'preprocessed' given 2 times: give it once"],
        ),
        (lambda s: s.request("GET", "/docs"), 404, ["Not Found"]),
        (lambda s: s.request("GET", "/redoc"), 404, ["Not Found"]),
    ],
    ids=[
        "not-image",
        "truncated",
        "empty",
        "bad-multipart",
        "empty-multipart",
        "empty-batch",
        "no-file",
        "batch-no-file",
        "many-parts",
        "text",
        "batch-raw",
        "no-type",
        "empty-type",
        "multipart-without-its-boundary",
        "gzip",
        "gzip-listed-second",
        "two-types",
        "comma-joined-types",
        "comma-joined-after-parameters",
        "no-subtype",
        "bomb",
        "text-bomb",
        "too-large",
        "chunked-too-large",
        "404",
        "405",
        "bad-query",
        "batch-bad-query",
        "misspelt-query",
        "long-unknown-query",
        "repeated-query",
        "no-docs",
        "no-redoc",
    ],
)
def test_errors_are_json_one_liners_with_their_status(
    server: ServerProcess, send: Callable[[ServerProcess], Reply], status: int, fragments: list[str]
) -> None:
    assert_error(send(server), status, *fragments)
    assert server.request("GET", "/healthz").status == 200  # and the service lives on


@pytest.mark.parametrize(
    ("value", "joined"),
    [
        ("image/png", False),
        ('image/jpeg; name="a,b"', False),
        ('multipart/form-data; boundary="a,b"', False),
        ('image/jpeg; name="a\\",b"', False),  # an escaped quote does not end the string
        ("image/png, text/plain", True),
        ("image/png; q=1, text/plain", True),
        ('image/jpeg; name="a", text/plain', True),
        ('image/png; a="x, image/jpeg', True),  # a quote never closed
        ('image/png; a="x\\,y', True),  # nor with a backslash before the comma
        ('image/png; a=x"y, image/jpeg; b="z', True),  # a quote inside a token opens no string
        ("multipart/form-data; boundary=ab,c123", True),  # a boundary with a comma must be quoted
    ],
)
def test_a_comma_outside_a_closed_quoted_string_is_two_media_types(value: str, joined: bool) -> None:
    from edgefmnist.runtime.serve import joined_media_types

    assert joined_media_types(value) is joined


def test_a_quoted_comma_in_a_content_type_parameter_is_accepted(
    server: ServerProcess, fashion_pngs: list[bytes]
) -> None:
    assert server.post_image(fashion_pngs[0], content_type='image/png; name="a,b"').status == 200
    part = b'--a,b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
    body = part + fashion_pngs[0] + b"\r\n--a,b--\r\n"  # RFC 2046, 5.1.1: a boundary may hold a comma
    reply = server.request("POST", "/v1/classify", body, {"Content-Type": 'multipart/form-data; boundary="a,b"'})
    assert reply.status == 200, reply.body


def test_a_websocket_upgrade_is_answered_as_plain_http(server: ServerProcess) -> None:
    upgrade = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    assert_error(server.request("GET", "/v1/classify", headers=upgrade), 405, "Method Not Allowed")
    health = server.request("GET", "/healthz", headers=upgrade)
    assert health.status == 200 and json.loads(health.body)["status"] == "ok"


def test_token_is_required_on_the_api_but_not_on_health_or_page(fashion_pngs: list[bytes]) -> None:
    guarded = ServerProcess("--token", "s3cret")
    try:
        assert_error(guarded.post_image(fashion_pngs[0]), 401, "token")
        assert_error(guarded.post_image(fashion_pngs[0], Authorization="Bearer wrong"), 401, "token")
        assert_error(guarded.post_image(fashion_pngs[0], Authorization="s3cret"), 401, "token")
        assert_error(guarded.request("GET", "/metrics"), 401)
        assert guarded.post_image(fashion_pngs[0], Authorization="Bearer s3cret").status == 200
        assert guarded.request("GET", "/v1/model", headers={"Authorization": "Bearer s3cret"}).status == 200
        assert guarded.request("GET", "/healthz").status == 200 and guarded.request("GET", "/").status == 200
        with socket.create_connection((guarded.host, guarded.port)) as sock:  # which token would count?
            sock.sendall(b"GET /v1/model HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\n")
            sock.sendall(b"Authorization: Bearer s3cret\r\n\r\n")
            answer = raw_json_answer(sock)
        assert answer.startswith(b"HTTP/1.1 400 ") and b"more than one Authorization header" in answer
        slash = guarded.post_image(fashion_pngs[0], path="/v1/classify/", Authorization="Bearer s3cret")
        assert_error(slash, 404)  # not a 307 that a client would follow without its upload
        described = guarded.request("GET", "/openapi.json").json()
        assert described["components"]["securitySchemes"] == {"bearer": {"type": "http", "scheme": "bearer"}}
        for path, operations in described["paths"].items():  # the description says where the token is needed
            for operation in operations.values():
                guarded_path = path.startswith(("/v1/", "/metrics"))
                assert ("401" in operation["responses"]) == guarded_path == ("security" in operation), path
    finally:
        assert guarded.stop()[0] == 0


def open_slow_upload(server: ServerProcess, declared: int) -> socket.socket:
    """A client that has sent its headers and one byte of a ``declared``-byte body."""
    sock = socket.create_connection((server.host, server.port))
    head = f"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: {declared}\r\n\r\n"
    sock.sendall(head.encode() + b"\x89")
    return sock


def test_a_client_sending_one_byte_a_second_does_not_block_others(
    server: ServerProcess, fashion_pngs: list[bytes]
) -> None:
    slow = open_slow_upload(server, len(fashion_pngs[0]))
    slow.setblocking(False)
    try:
        for second in range(1, 4):
            start = time.perf_counter()
            for _ in range(5):
                assert server.post_image(fashion_pngs[1]).status == 200
            with pytest.raises(BlockingIOError):  # answered while the slow upload is still open and unanswered
                slow.recv(1)
            time.sleep(max(0.0, 1.0 - (time.perf_counter() - start)))
            slow.send(fashion_pngs[0][second : second + 1])
    finally:
        slow.close()


@pytest.mark.slow
def test_an_upload_slower_than_the_timeout_gets_408_and_frees_its_place(fashion_pngs: list[bytes]) -> None:
    small = ServerProcess("--threads", "1", "--queue", "0", "--upload-timeout", "1")
    try:
        slow = open_slow_upload(small, 1000)
        slow.settimeout(10)
        start = time.perf_counter()
        answer = slow.recv(4096).decode()
        answered = time.perf_counter()
        assert 0.9 < answered - start < 5
        while chunk := slow.recv(4096):  # the server closes the connection after the answer, at once
            answer += chunk.decode()
        assert time.perf_counter() - answered < 0.8  # not another upload timeout (1 s) later
        assert answer.startswith("HTTP/1.1 408") and '{"error":"upload not complete after 1 s"}' in answer
        assert "\r\nconnection: close\r\n" in answer.lower()
        slow.close()
        assert small.post_image(fashion_pngs[0]).status == 200
    finally:
        assert small.stop()[0] == 0


def raw_json_answer(sock: socket.socket) -> bytes:
    """One answer with a JSON body, read from ``sock`` (its body may come in a packet of its own)."""
    sock.settimeout(5)
    answer = b""
    while not answer.endswith(b"}"):
        chunk = sock.recv(4096)
        assert chunk, f"the server closed the connection after {answer!r}"
        answer += chunk
    return answer


def seconds_until_closed(sock: socket.socket, trickle: bytes = b"") -> float:
    """Seconds until the server closes ``sock`` without an answer, sending ``trickle`` a byte every 0.2 s."""
    start = time.perf_counter()
    sock.settimeout(0.2)
    for byte in [*trickle, *[None] * 100]:
        try:
            assert sock.recv(4096) == b"", "the server answered a request whose head never came"
            return time.perf_counter() - start
        except TimeoutError:
            if byte is not None:
                sock.send(bytes([byte]))
    raise AssertionError("the connection stayed open")


def test_a_request_head_slower_than_the_timeout_is_closed_and_frees_its_descriptor(fashion_pngs: list[bytes]) -> None:
    small = ServerProcess("--upload-timeout", "1")
    try:
        silent = socket.create_connection((small.host, small.port))
        assert 0.8 < seconds_until_closed(silent) < 5
        partial = socket.create_connection((small.host, small.port))
        partial.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # no blank line: the head never ends
        assert 0.8 < seconds_until_closed(partial) < 5
        trickling = socket.create_connection((small.host, small.port))  # each byte in time, the head not
        assert 0.8 < seconds_until_closed(trickling, b"GET /healthz HTTP/1.1\r\nX-Slow: yes") < 5
        kept = socket.create_connection((small.host, small.port))  # a head sent in time, after an answer, is late
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert raw_json_answer(kept).startswith(b"HTTP/1.1 200")
        assert seconds_until_closed(kept, b"GET /healthz HTTP/1.1\r\n") < 5
        for sock in (silent, partial, trickling, kept):
            sock.close()
        assert small.post_image(fashion_pngs[0]).status == 200
    finally:
        code, err = small.stop()
        assert code == 0 and "Traceback" not in err


@pytest.mark.parametrize(
    ("lengths", "answer"),
    [
        ([b"10", b"10"], b'{"error":"upload: not an image Pillow can read"}'),  # equal: one length, RFC 9112 6.3
        ([b"10, 10"], b'{"error":"upload: not an image Pillow can read"}'),
        ([b"10", b"11"], b"Invalid HTTP request received."),  # which one is the body's? uvicorn's own 400
        ([b"-1"], b"Invalid HTTP request received."),
    ],
)
def test_repeated_or_negative_content_lengths(server: ServerProcess, lengths: list[bytes], answer: bytes) -> None:
    head = b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
    head += b"".join(b"Content-Length: " + length + b"\r\n" for length in lengths)
    with socket.create_connection((server.host, server.port)) as sock:
        sock.sendall(head + b"\r\n" + b"0123456789")
        sock.settimeout(5)
        received = b""
        while not received.endswith(answer) and (chunk := sock.recv(4096)):
            received += chunk
    assert received.startswith(b"HTTP/1.1 400") and received.endswith(answer), received


def test_a_request_with_both_content_length_and_chunks_is_refused_and_its_connection_closed(
    server: ServerProcess,
) -> None:
    head = b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 5\r\n"
    with socket.create_connection((server.host, server.port)) as sock:  # RFC 9112, 6.3: a smuggling risk
        sock.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        sock.settimeout(5)
        received = b""
        while chunk := sock.recv(4096):  # ends when the service closes the connection
            received += chunk
    assert received.startswith(b"HTTP/1.1 400") and b"connection: close" in received.lower(), received
    assert received.endswith(b'{"error":"both Content-Length and Transfer-Encoding: send one"}'), received


def test_a_request_target_in_absolute_form_is_read_as_its_path(fashion_pngs: list[bytes]) -> None:
    guarded = ServerProcess("--token", "s3cret")  # RFC 9112, 3.2.2; and the token is checked on that path
    try:
        for target, token, status in [
            (b"http://x/healthz", b"", b"200"),
            (b"http://x/v1/model", b"", b"401"),
            (b"https://x:1/v1/model?q=1", b"Authorization: Bearer s3cret\r\n", b"200"),
            (b"http://x", b"", b"200"),  # the page
            (b"HTTP://x/v1/model", b"Authorization: Bearer s3cret\r\n", b"200"),  # a scheme in any case
            (b"http://x/v1/model%3Fq", b"Authorization: Bearer s3cret\r\n", b"404"),  # split, then decoded
            (b"http://x/%68ealthz", b"", b"200"),
            (b"http://x/healthz#x", b"", b"200"),  # a fragment is dropped, in this form
            (b"/healthz#x", b"", b"200"),  # and in origin form
            (b"/v1/model%23x", b"Authorization: Bearer s3cret\r\n", b"404"),  # an encoded # is part of the path
        ]:
            with socket.create_connection((guarded.host, guarded.port)) as sock:
                sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + token + b"\r\n")
                sock.settimeout(5)
                answer = sock.recv(64)
            assert answer.startswith(b"HTTP/1.1 " + status), (target, answer)
    finally:
        assert guarded.stop()[0] == 0


def test_a_fragment_is_dropped_before_the_query_is_read(server: ServerProcess, fashion_pngs: list[bytes]) -> None:
    absolute = f"http://{server.host}:{server.port}"
    for path in [
        "/v1/classify?preprocessed=true#x",
        "/v1/classify?#frag",
        "/v1/classify#x?preprocesed=1",  # no query: it is part of the fragment
        f"{absolute}/v1/classify?preprocessed=true#x",
        f"{absolute}/v1/classify#a?b=1",
    ]:
        reply = server.post_image(fashion_pngs[0], path)
        assert reply.status == 200, (path, reply.body)
        assert ("preprocessed" in reply.json()) == ("preprocessed=true" in path), path


def test_a_connection_answered_before_its_body_is_closed_when_the_rest_is_late() -> None:
    small = ServerProcess("--token", "t0ken", "--upload-timeout", "1")
    try:
        sock = socket.create_connection((small.host, small.port))
        sock.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 10\r\n\r\n")
        assert raw_json_answer(sock).startswith(b"HTTP/1.1 401")  # before the body is read
        sock.sendall(b"0123456789")  # the rest of the request, then nothing
        assert 0.8 < seconds_until_closed(sock) < 5
        sock.close()
        trickling = socket.create_connection((small.host, small.port))  # 413, then a body that never ends
        trickling.sendall(
            b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t0ken\r\n"
            b"Content-Type: image/png\r\nContent-Length: 100000000\r\n\r\n"
        )
        assert raw_json_answer(trickling).startswith(b"HTTP/1.1 413")
        assert seconds_until_closed(trickling, b"x" * 50) < 5
        trickling.close()
    finally:
        assert small.stop()[0] == 0


def test_accept_failures_are_one_warning_line_and_other_loop_errors_pass_on() -> None:
    from edgefmnist.runtime.server import AcceptFailureWarning

    said: list[str] = []
    passed: list[dict] = []

    class Loop:
        def default_exception_handler(self, context: dict) -> None:
            passed.append(context)

    handler = AcceptFailureWarning(said.append)
    failure = {"message": AcceptFailureWarning.MESSAGE, "exception": OSError(24, "Too many open files")}
    for _ in range(1000):
        handler(Loop(), failure)  # type: ignore[arg-type]
    handler(Loop(), {"message": "Task exception was never retrieved"})  # type: ignore[arg-type]
    assert said == [
        "edgefmnist: warning: cannot accept connections (Too many open files); new ones wait until some close"
    ]
    assert passed == [{"message": "Task exception was never retrieved"}]


def test_the_soft_limit_on_open_files_is_raised_to_the_hard_limit() -> None:
    resource = pytest.importorskip("resource")
    from edgefmnist.runtime.server import raise_open_file_limit

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard < 256:
        pytest.skip(f"hard limit {hard}: nothing to raise here")
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, hard))
        raise_open_file_limit()
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_client_that_hangs_up_mid_body_is_counted_as_499_not_400(fashion_pngs: list[bytes]) -> None:
    small = ServerProcess()
    try:
        open_slow_upload(small, 1000).close()
        for _ in range(50):
            text = small.request("GET", "/metrics").body.decode()
            if 'status="499"' in text:
                break
            time.sleep(0.1)
        assert 'edgefmnist_requests_total{path="/v1/classify",status="499"} 1.0' in text
        assert 'status="400"' not in text
    finally:
        code, err = small.stop()
    counts = re.findall(r'^edgefmnist_requests_total\{path="[^"]*",status="(\d+)"\} (\d+)', text, re.MULTILINE)
    read = sum(int(float(n)) for status, n in counts if status != "499") + 1  # + the /metrics that printed them
    assert code == 0 and f"stopped after answering {read} requests\n" in err, err  # the hang-up is not counted


def test_too_many_files_in_a_batch_is_413(server: ServerProcess, fashion_pngs: list[bytes]) -> None:
    assert_error(server.post_files([("a.png", fashion_pngs[0])] * 65, "/v1/classify/batch"), 413, "65 files", "64")


def test_full_pool_and_queue_answer_503_at_once(fashion_pngs: list[bytes]) -> None:
    small = ServerProcess("--threads", "1", "--queue", "0")
    try:
        holder = open_slow_upload(small, 1000)  # admitted: it holds the only place while it uploads
        time.sleep(0.3)
        start = time.perf_counter()
        reply = small.post_image(fashion_pngs[0])
        assert time.perf_counter() - start < 5  # not after the holder's upload timeout (30 s)
        assert_error(reply, 503, "busy")
        holder.setblocking(False)
        with pytest.raises(BlockingIOError):  # the place is still held: the 503 did not wait for it
            holder.recv(1)
        assert reply.headers["retry-after"] == "1"
        holder.close()
        time.sleep(0.3)
        assert small.post_image(fashion_pngs[0]).status == 200
    finally:
        assert small.stop()[0] == 0


def test_a_log_record_is_one_line_with_its_exception_s_type() -> None:
    from edgefmnist.runtime.server import OneLineLogFormatter

    try:
        raise ValueError("bad thing\nsecond line")
    except ValueError:
        record = logging.LogRecord(
            "uvicorn.error", logging.ERROR, "", 0, "Exception in ASGI application\n", (), sys.exc_info()
        )
    assert (
        OneLineLogFormatter().format(record)
        == "edgefmnist: error: Exception in ASGI application (ValueError: bad thing)"
    )


def test_uvicorn_s_own_log_lines_are_the_toolkit_s_lines() -> None:
    target = ServerProcess()
    with socket.create_connection((target.host, target.port)) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(4096).startswith(b"HTTP/1.1 400")
    code, err = target.stop()
    assert code == 0 and "edgefmnist: warning: Invalid HTTP request received." in err.splitlines(), err
    assert all(line.startswith("edgefmnist: ") for line in err.splitlines()), err


def test_a_second_ctrl_c_stops_at_once_and_what_was_in_progress_gets_a_503() -> None:
    target = ServerProcess("--threads", "1", "--upload-timeout", "30")
    slow = open_slow_upload(target, 1000)  # would keep a graceful stop waiting for 30 s
    try:
        time.sleep(0.3)
        target.process.send_signal(signal.SIGINT)
        time.sleep(1.0)  # the graceful stop has begun, and waits for the upload
        target.process.send_signal(signal.SIGINT)
        answer = raw_json_answer(slow)
    finally:
        slow.close()
    _, err = target.process.communicate(timeout=10)  # it stops by itself
    code = target.process.returncode
    assert code == 130 and "Traceback" not in err and "ERROR" not in err, err
    assert answer.startswith(b"HTTP/1.1 503 ") and b"stopped before it answered this request" in answer
    assert err.splitlines() == ["edgefmnist: stopped at once after answering 1 request", "edgefmnist: interrupted"]


def sigterm_and_wait_until_refused(target: ServerProcess) -> None:
    """SIGTERM, then wait until the listening socket is closed: the graceful stop has begun."""
    target.process.send_signal(signal.SIGTERM)
    for _ in range(50):
        try:
            socket.create_connection((target.host, target.port), timeout=1).close()
        except ConnectionRefusedError:
            return
        time.sleep(0.1)
    raise AssertionError("the service still accepts connections 5 s after SIGTERM")


def raw_post(sock: socket.socket, png: bytes) -> bytes:
    """Send one classification request on ``sock`` and read its answer."""
    head = f"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: {len(png)}\r\n\r\n"
    sock.sendall(head.encode() + png)
    return raw_json_answer(sock)


@pytest.mark.parametrize("kept_alive", [False, True], ids=["just-accepted", "kept-alive"])
def test_a_request_sent_just_after_sigterm_on_an_open_connection_is_answered_then_closed(
    fashion_pngs: list[bytes], kept_alive: bool
) -> None:
    target = ServerProcess()
    with socket.create_connection((target.host, target.port)) as sock:
        if kept_alive:
            assert b"\r\nconnection: close\r\n" not in raw_post(sock, fashion_pngs[0]).lower()
        time.sleep(1.0)  # accepted, and waiting for a request
        sigterm_and_wait_until_refused(target)
        time.sleep(0.2)  # the connections open were told to stop
        answer = raw_post(sock, fashion_pngs[1])
        assert answer.startswith(b"HTTP/1.1 200 ") and b'"label"' in answer, answer
        assert b"\r\nconnection: close\r\n" in answer.lower()  # RFC 9112, 9.6: no next request here
        assert sock.recv(4096) == b""  # then closed
    code, err = target.stop()
    answered = "2 requests" if kept_alive else "1 request"
    assert code == 0 and err.splitlines() == [f"edgefmnist: stopped after answering {answered}"], err


def test_a_second_ctrl_c_cancels_what_is_in_progress_and_closes_idle_connections_itself() -> None:
    """Python 3.12.1's ``asyncio.Server.wait_closed`` waits for every connection: uvicorn's force
    exit closes none, so without this an idle connection held a second Ctrl-C for 2 s and an
    upload for its whole deadline. Python 3.11's does not wait, so this is checked in the loop."""
    import asyncio

    import uvicorn
    from edgefmnist.runtime.server import GracefulServer, head_deadline_of

    async def app(scope: dict, receive: Callable, send: Callable) -> None:
        raise AssertionError("no request is sent")

    protocol_class = head_deadline_of(30.0, lambda: False)
    config = uvicorn.Config(app, http=protocol_class, lifespan="off", ws="none")
    config.load()
    server = GracefulServer(config)

    async def second_ctrl_c() -> tuple[bool, bool]:
        server.loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        protocol_of = lambda: protocol_class(config=config, server_state=server.server_state, app_state={})  # noqa: E731
        transport, _ = await server.loop.connect_accepted_socket(protocol_of, ours)  # idle: waits on its client
        in_progress = asyncio.create_task(asyncio.sleep(60))
        server.server_state.tasks.add(in_progress)
        server.servers = [await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)]
        server.handle_exit(signal.SIGINT, None)
        server.handle_exit(signal.SIGINT, None)
        await asyncio.sleep(0.01)  # not uvicorn's next tick (0.1 s): nothing may be accepted meanwhile
        closed = transport.is_closing() and not server.servers[0].is_serving()
        theirs.close()
        return in_progress.cancelled(), closed

    cancelled, closed = asyncio.run(second_ctrl_c())
    assert server.force_exit and cancelled and closed
    GracefulServer(config).stop_at_once()  # before uvicorn has started: nothing to close yet


def test_an_early_401_s_connection_still_receiving_its_body_at_sigterm_answers_the_retry(
    fashion_pngs: list[bytes],
) -> None:
    token = "t0ken-with-enough-entropy-1234"
    guarded = ServerProcess("--token", token)
    png = fashion_pngs[0] + b"\0" * 200_000  # trailing bytes after IEND: still a PNG
    with socket.create_connection((guarded.host, guarded.port)) as sock:
        head = f"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: {len(png)}"
        sock.sendall(head.encode() + b"\r\n\r\n" + png[:1000])
        assert raw_json_answer(sock).startswith(b"HTTP/1.1 401 ")  # answered early, before the body
        sigterm_and_wait_until_refused(guarded)
        retry = f"POST /v1/classify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        retry += f"Content-Type: image/png\r\nContent-Length: {len(fashion_pngs[0])}\r\n\r\n"
        sock.sendall(png[1000:] + retry.encode() + fashion_pngs[0])
        answer = raw_json_answer(sock)
        assert answer.startswith(b"HTTP/1.1 200 ") and b"\r\nconnection: close\r\n" in answer.lower(), answer
    assert guarded.stop()[0] == 0


def test_a_connection_accepted_once_the_stop_has_begun_waits_only_the_stop_s_head_deadline() -> None:
    import asyncio

    import uvicorn
    from edgefmnist.runtime.server import STOP_HEAD_SECONDS, head_deadline_of
    from uvicorn.server import ServerState

    async def app(scope: dict, receive: Callable, send: Callable) -> None:
        raise AssertionError("no request is sent")

    protocol_class = head_deadline_of(30.0, lambda: True)
    config = uvicorn.Config(app, http=protocol_class, lifespan="off", ws="none")
    config.load()

    async def accept() -> tuple[bool, float]:  # as asyncio does after uvicorn told the open connections to stop
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        protocol_of = lambda: protocol_class(config=config, server_state=ServerState(), app_state={})  # noqa: E731
        transport, protocol = await loop.connect_accepted_socket(protocol_of, ours)
        assert protocol.head_deadline is not None
        left = protocol.head_deadline.when() - loop.time()
        kept_open = not transport.is_closing()  # waiting for a request, not closed as uvicorn would
        transport.close()
        theirs.close()
        return kept_open, left

    kept_open, seconds_left = asyncio.run(accept())
    assert kept_open and seconds_left <= STOP_HEAD_SECONDS  # not the 30 s of --upload-timeout


def test_an_answer_that_says_connection_close_itself_says_it_once_during_the_stop() -> None:
    target = ServerProcess("--upload-timeout", "3")
    with socket.create_connection((target.host, target.port)) as sock:
        time.sleep(1.0)  # accepted
        sigterm_and_wait_until_refused(target)
        sock.sendall(
            b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n\r\nx"
        )
        answer = raw_json_answer(sock)  # the body never comes: 408, which closes the connection anyway
    head = answer.split(b"\r\n\r\n")[0].lower().split(b"\r\n")
    assert head[0].startswith(b"http/1.1 408 ") and head.count(b"connection: close") == 1, head
    assert target.stop()[0] == 0


def test_an_answer_in_progress_at_sigterm_says_connection_close(fashion_pngs: list[bytes]) -> None:
    target = ServerProcess()
    png = fashion_pngs[0]
    slow = open_slow_upload(target, len(png))
    try:
        time.sleep(1.0)  # accepted, its body being read
        sigterm_and_wait_until_refused(target)
        slow.sendall(png[1:])
        answer = raw_json_answer(slow)
    finally:
        slow.close()
    assert answer.startswith(b"HTTP/1.1 200 ") and b"\r\nconnection: close\r\n" in answer.lower(), answer
    assert target.stop()[0] == 0


def test_a_graceful_stop_outlasts_the_upload_deadline() -> None:
    from edgefmnist.runtime.server import SHUTDOWN_SECONDS, STOP_HEAD_SECONDS, graceful_stop_seconds

    for upload_seconds in (0.5, 30, 100, 3600):  # an upload still in time is answered, not cut at 60 s
        assert graceful_stop_seconds(upload_seconds) >= STOP_HEAD_SECONDS + upload_seconds + SHUTDOWN_SECONDS


def test_a_connection_still_silent_after_sigterm_is_closed_without_waiting_for_the_head_deadline() -> None:
    target = ServerProcess("--upload-timeout", "60")
    with socket.create_connection((target.host, target.port)) as sock:
        time.sleep(1.0)  # accepted
        sigterm_and_wait_until_refused(target)
        sock.settimeout(15)
        assert sock.recv(4096) == b""  # closed, not answered
        code, err = target.stop(timeout=15)
    assert code == 0 and err.splitlines() == ["edgefmnist: stopped after answering 0 requests"], err


def test_a_second_ctrl_c_does_not_wait_for_the_classification_running_in_a_worker() -> None:
    picture = png_bytes(np.tile((np.arange(6000) % 256).astype(np.uint8), (6000, 1)))  # 36 MP: 0.2 s or more each
    body, content_type = multipart([(f"g{i}.png", picture) for i in range(40)])
    target = ServerProcess("--threads", "1", "--max-body-mb", "100")
    with socket.create_connection((target.host, target.port)) as sock:
        head = f"POST /v1/classify/batch HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
        sock.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        time.sleep(0.5)  # the batch is being classified
        target.process.send_signal(signal.SIGINT)
        time.sleep(0.3)
        target.process.send_signal(signal.SIGINT)
        answer = raw_json_answer(sock)
        try:
            code = target.process.wait(timeout=3)  # the batch alone takes seconds more: not waited for
        finally:
            target.process.kill()
    err = target.process.communicate()[1]
    assert answer.startswith(b"HTTP/1.1 503 ") and b"stopped before it answered this request" in answer, answer
    assert code == 130 and err.splitlines()[-1] == "edgefmnist: interrupted", err


@pytest.mark.slow
def test_sigterm_during_load_answers_every_accepted_request_and_exits_0() -> None:
    photos = [p.read_bytes() for p in sorted((REGRESSION_SET / "dress").glob("*.jpg"))[:4]]
    target = ServerProcess("--threads", "2")
    outcomes: list[tuple[str, float]] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + 20

    def client(n: int) -> None:
        while time.monotonic() < stop_at:
            try:
                reply = target.post_image(photos[n % len(photos)], content_type="image/jpeg")
                outcome = "ok" if reply.status == 200 and "label" in reply.json() else f"bad {reply.status}"
            except (ConnectionRefusedError, ConnectionResetError):
                outcome = "refused"  # the listening socket is closed: not accepted
            except Exception as exc:  # a truncated or missing answer to an accepted request
                outcome = f"lost {type(exc).__name__}"
            with lock:
                outcomes.append((outcome, time.monotonic()))
            if outcome == "refused":
                return

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(2.0)
    sigterm_at = time.monotonic()
    code, err = target.stop()
    for thread in threads:
        thread.join()
    answered = int(err.split("answering ")[1].split()[0])
    kinds = [outcome for outcome, _ in outcomes]
    assert code == 0 and "Traceback" not in err, err
    assert set(kinds) <= {"ok", "refused"}, kinds
    assert kinds.count("ok") == answered  # the server answered exactly what the clients received
    assert any(outcome == "ok" and at > sigterm_at for outcome, at in outcomes)  # in flight at SIGTERM, finished
    assert kinds.count("refused") == 8


@pytest.mark.slow
def test_labels_through_the_server_equal_infer_json_on_1000_test_images_and_photos(
    fashion: Any, tmp_path: Path
) -> None:
    paths = []
    for i in range(1000):
        paths.append(tmp_path / f"test-{i:04d}.png")
        Image.fromarray(fashion.test.images[i]).save(paths[-1])
    paths += [sorted(folder.glob("*.jpg"))[0] for folder in sorted(REGRESSION_SET.iterdir()) if folder.is_dir()]
    expected = infer_json([tmp_path, *paths[1000:]])
    assert [Path(row["image"]).name for row in expected] == [p.name for p in paths]
    target = ServerProcess()
    try:
        for path, want in zip(paths, expected, strict=True):
            got = target.post_files([(path.name, path.read_bytes())]).json()
            compared = (*RESULT_KEYS, "warning", "unsure_reasons")
            assert {key: got.get(key) for key in compared} == {key: want.get(key) for key in compared}, path
    finally:
        assert target.stop()[0] == 0


def test_more_threads_than_cores_start_with_a_warning(server: ServerProcess) -> None:
    from edgefmnist.cores import available_cores

    threads = available_cores() + 1
    crowded = ServerProcess("--threads", str(threads))
    try:
        warning, serving = crowded.first_lines
        assert warning.startswith(
            f"edgefmnist: warning: --threads {threads} is more than the {available_cores()} cores"
        )
        assert f"({threads} workers" in serving and crowded.request("GET", "/healthz").status == 200
    finally:
        assert crowded.stop()[0] == 0
    assert "warning" not in "".join(server.first_lines)  # the default: the cores, at most 4


def test_port_in_use_is_one_line_and_exit_1(server: ServerProcess) -> None:
    from edgefmnist.cores import available_cores

    result = subprocess.run(
        [sys.executable, "-m", "edgefmnist.cli", "serve", "--port", str(server.port)]
        + ["--threads", str(available_cores() + 1)],  # its warning waits for the socket: one line still
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"edgefmnist: error: cannot listen on 127.0.0.1:{server.port}")


@pytest.mark.parametrize(
    ("host", "error"),
    [
        ("", "not an empty or blank string"),
        (" ", "not an empty or blank string"),
        ("[ ]", "not an empty or blank string"),
        ("localhost:8080", "give the address alone, and the port with --port"),
        ("[::1]:8080", "give the address alone, and the port with --port"),
        ("[::1", "brackets go around a whole IPv6 address"),
        ("http://127.0.0.1", "is a URL: give the address alone (127.0.0.1)"),
        ("a..b", "'a..b' is not a host name (encoding with 'idna' codec failed"),
        ("x" * 64 + ".example", "is not a host name (encoding with 'idna' codec failed"),
        ("\udcff", "is not a host name"),
    ],
)
def test_an_empty_host_or_one_with_a_port_is_a_usage_error(host: str, error: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edgefmnist.cli", "serve", "--host", host, "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_line_error(result, 2, "--host", error)


def test_binding_a_name_idna_cannot_encode_is_one_line() -> None:
    from edgefmnist.runtime.server import bind

    from edgefmnist.errors import EdgeFmnistError

    with pytest.raises(EdgeFmnistError, match=r"^cannot listen on a\.\.b:0 \(encoding with 'idna' codec failed"):
        bind("a..b", 0)


@pytest.mark.parametrize(
    "args, env, error",
    [
        (["--token="], {}, "--token is empty"),
        (["--token", "  "], {}, "--token is empty"),
        ([], {"EDGEFMNIST_TOKEN": ""}, "$EDGEFMNIST_TOKEN is empty"),
        ([], {"EDGEFMNIST_TOKEN": " "}, "$EDGEFMNIST_TOKEN is empty"),
        ([], {"EDGEFMNIST_TOKEN": "secret\r"}, "$EDGEFMNIST_TOKEN has white space at an end"),
        (["--token", " secret"], {}, "--token has white space at an end"),
        (["--token", " secret"], {"EDGEFMNIST_TOKEN": " secret"}, "--token has white space at an end"),  # the flag wins
        (["--token", "sec\nret"], {}, "--token holds a control character"),
        ([], {"EDGEFMNIST_TOKEN": "sec\x01ret"}, "$EDGEFMNIST_TOKEN holds a control character"),
        (["--token", "sec\udc85ret"], {}, "--token holds a byte that is not UTF-8"),
        (["--token", "pässwörd"], {}, "--token holds 'ä', which is not ASCII"),
        ([], {"EDGEFMNIST_TOKEN": "秘密"}, "$EDGEFMNIST_TOKEN holds '秘', which is not ASCII"),
        (["--token", "sec\x85ret"], {}, "--token holds '\\x85', which is not ASCII"),  # a C1 control, escaped once
    ],
)
def test_a_token_no_client_could_send_is_refused(args: list[str], env: dict, error: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edgefmnist.cli", "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )
    assert_one_line_error(result, 2, error)


def test_an_ipv6_host_may_be_written_in_brackets_and_spaces_around_a_host_are_dropped() -> None:
    from edgefmnist.cli_params import must_be_an_address

    assert must_be_an_address("[::1]") == "::1" and must_be_an_address("::1") == "::1"
    assert must_be_an_address(" 127.0.0.1 ") == "127.0.0.1" and must_be_an_address("[ fe80::1 ]") == "fe80::1"


def test_addresses_are_written_as_urls_write_them_and_loopback_is_known_in_every_form() -> None:
    from edgefmnist.runtime.server import host_port, is_loopback, reached_as

    assert host_port("::", 8000) == "[::]:8000" and host_port("2001:db8::5", 1) == "[2001:db8::5]:1"
    assert host_port("127.0.0.1", 80) == "127.0.0.1:80"
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.0.2.2", "::ffff:192.0.2.2"))
    assert reached_as("127.0.0.1", 80) == "" and reached_as("::1", 80) == ""
    assert reached_as("0.0.0.0", 80).startswith("; on the network: http://")


@pytest.mark.slow
def test_a_loopback_address_in_another_form_is_not_warned_about() -> None:
    server = ServerProcess("--host", "127.1")
    try:
        assert server.first_lines == [server.first_lines[0]] and "warning" not in server.first_lines[0]
    finally:
        assert server.stop()[0] == 0


@pytest.mark.slow
def test_listening_on_the_network_without_a_token_warns() -> None:
    exposed = ServerProcess("--host", "0.0.0.0")
    try:
        assert "without --token" in exposed.first_lines[0]
        assert re.search(r"; on the network: http://\S+:\d+$", exposed.first_lines[1]), exposed.first_lines
        assert exposed.request("GET", "/healthz").status == 200
    finally:
        assert exposed.stop()[0] == 0
    quiet = ServerProcess()
    try:
        assert quiet.first_lines == [quiet.first_lines[0]] and "warning" not in quiet.first_lines[0]
        assert "on the network" not in quiet.first_lines[0]  # 127.0.0.1 is what it says
    finally:
        assert quiet.stop()[0] == 0


@pytest.mark.slow
def test_sigterm_as_soon_as_the_address_is_announced_exits_0() -> None:
    for _ in range(2):
        code, err = ServerProcess().stop()
        assert code == 0 and "stopped after answering 0 requests" in err, err


def test_help_shows_examples_and_the_extra() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edgefmnist.cli", "serve", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "edgefmnist serve --host 0.0.0.0" in result.stdout
    assert "edgefmnist[serve]" in result.stdout and "--upload-timeout" in result.stdout


def test_a_malformed_multipart_body_is_answered_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    from edgefmnist.runtime.multipart_body import MultipartError, parse_multipart

    with caplog.at_level(logging.WARNING), pytest.raises(MultipartError, match="boundary"):
        parse_multipart(b"--xgarbage\r\n", "multipart/form-data; boundary=x", "file", 10)
    with pytest.raises(MultipartError, match=r"^a part's headers are malformed \(byte 17\)$"):
        parse_multipart(
            b"--x\r\nContent-Type : image/png\r\n\r\nx\r\n--x--\r\n", "multipart/form-data; boundary=x", "file", 10
        )
    with caplog.at_level(logging.WARNING), pytest.raises(MultipartError, match="Boundary length 300"):
        parse_multipart(b"", "multipart/form-data; boundary=" + "a" * 300, "file", 10)  # RFC 2046 allows 70
    assert caplog.records == []  # the 400 answer carries the reason; stderr stays for the service's own news


def test_a_multipart_preamble_is_skipped() -> None:
    from edgefmnist.runtime.multipart_body import MultipartError, parse_multipart

    part = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\nPNG\r\n--x--\r\n'
    for preamble in (
        b"",
        b"This is a multi-part message in MIME format.\r\n",
        b"\r\n",
        b"--xy\r\n",
        b"bare LF\n",
        b"--x is the boundary\r\n",
    ):
        assert parse_multipart(preamble + part, "multipart/form-data; boundary=x", "file", 10) == [("a.png", b"PNG")]
    for body in (b"only a preamble\r\n", b"pre\r\n--xZ\r\n", b"a--x\r\n"):  # no line is '--x' (RFC 2046, 5.1.1)
        with pytest.raises(
            MultipartError, match=r"^no line of the body is the boundary that Content-Type gives \('--x'\)$"
        ):
            parse_multipart(body, "multipart/form-data; boundary=x", "file", 10)
    with pytest.raises(MultipartError, match=r"^a part's headers are malformed \(byte 29\)$"):
        parse_multipart(  # byte 29 is the space before the colon, after the boundary line's padding
            b"preamble\r\n--x \t\r\nContent-Type : image/png\r\n\r\nx\r\n--x--\r\n",
            "multipart/form-data; boundary=x",
            "file",
            10,
        )


def test_a_multipart_body_as_clients_send_it_is_parsed_without_a_copy_of_it_or_of_its_files() -> None:
    from edgefmnist.runtime.multipart_body import parse_multipart, parser_input

    part = b'Content-Disposition: form-data; name="file"; filename="a.png"\r\n\r\nPNG\r\n--x--\r\n'
    body = bytearray(b"--x\r\n" + part)
    data_in, offset = parser_input(body, b"x")
    assert data_in is body and offset(9) == 9
    padded = b"pre\r\n--x \r\n" + part  # cut and unpadded: a copy, its offsets mapped back
    data_in, offset = parser_input(padded, b"x")
    assert data_in == b"--x\r\n" + part and offset(0) == 5 and offset(9) == 15
    ((name, data),) = parse_multipart(body, "multipart/form-data; boundary=x", "file", 10)
    assert (name, data) == ("a.png", b"PNG") and isinstance(data, bytearray)  # the part's own buffer
    picture = os.urandom(4 << 20)
    body = bytearray(b"--x\r\n" + part.replace(b"PNG", picture))
    tracemalloc.start()
    try:
        ((_, data),) = parse_multipart(body, "multipart/form-data; boundary=x", "file", 10)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert data == picture and peak < 1.1 * len(picture)  # the file once: no copy of the body or of the file


def test_multipart_boundary_lines_as_rfc_2046_writes_them() -> None:
    from edgefmnist.runtime.multipart_body import MultipartError, parse_multipart

    part = b'Content-Disposition: form-data; name="file"; filename="a.png"\r\n\r\nPNG\r\n--x--\r\n'
    for first_line in (b"--x \r\n", b"--x\t \r\n", b"pre\r\n--x   \r\n"):  # transport padding
        assert parse_multipart(first_line + part, "multipart/form-data; boundary=x", "file", 10) == [("a.png", b"PNG")]
    assert parse_multipart(b"pre\r\n--x--\r\n", "multipart/form-data; boundary=x", "file", 10) == []
    with pytest.raises(MultipartError, match=r"^the '--x' at byte 4 does not start a line, as a boundary line must$"):
        parse_multipart(b"pre --x\r\n" + part, "multipart/form-data; boundary=x", "file", 10)
    with pytest.raises(
        MultipartError, match=r"^the first boundary line ends with a bare LF \(byte 3\): lines end with CRLF$"
    ):
        parse_multipart(b"--x\n" + part.replace(b"\r\n", b"\n"), "multipart/form-data; boundary=x", "file", 10)
    headers = b"".join(b"X-%d: v\r\n" % i for i in range(9))
    with pytest.raises(MultipartError, match=r"^a part has more than 8 headers \(byte 69\)$"):  # the ninth
        parse_multipart(b"--x\r\n" + headers + part, "multipart/form-data; boundary=x", "file", 10)
    with pytest.raises(MultipartError, match=r"^a part's header line is longer than 4224 bytes \(byte \d+\)$"):
        parse_multipart(b"--x\r\nX-a: " + b"a" * 5000 + b"\r\n" + part, "multipart/form-data; boundary=x", "file", 10)
    with pytest.raises(
        MultipartError, match=r"^no line of the body is the boundary that Content-Type gives \('--xé'\)$"
    ):
        parse_multipart(b"", "multipart/form-data; boundary=x\u00c3\u00a9", "file", 10)  # UTF-8 read as Latin-1


def test_a_model_name_that_is_not_utf8_is_json_in_the_answers(tmp_path: Path) -> None:
    import json

    from edgefmnist.runtime.predictor import Predictor, default_model_path
    from edgefmnist.runtime.serve import json_name, model_description
    from edgefmnist.runtime.serve_gate import ServeSettings

    (model := tmp_path / os.fsdecode(b"m\xff.onnx")).write_bytes(default_model_path().read_bytes())
    assert json_name(model) == "m\ufffd.onnx"
    description = model_description(Predictor(model, threads=1), ServeSettings(threads=1))
    assert json.loads(json.dumps(description, ensure_ascii=False).encode())["file"] == "m\ufffd.onnx"
