"""A real ``edgefmnist serve`` process on a free local port, and a small HTTP client for the tests."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from typing import Any

SERVING = re.compile(r"serving \S+ on http://(\S+):(\d+)")


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class ServerProcess:
    """``edgefmnist serve --port 0 ARGS`` in a subprocess; ``port`` is read from its first line."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edgefmnist.cli", "serve", "--port", "0", *args],
            stderr=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.process.stderr is not None
        self.first_lines: list[str] = []
        for _ in range(5):
            line = self.process.stderr.readline()
            self.first_lines.append(line)
            match = SERVING.search(line)
            if match:
                self.host, self.port = match.group(1), int(match.group(2))
                return
            if not line:
                break
        self.process.kill()
        raise AssertionError(f"the server did not start: {''.join(self.first_lines)}")

    def stop(self, timeout: float = 60) -> tuple[int, str]:
        """SIGTERM, then the exit code and the rest of stderr."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        _, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, err

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Reply:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            connection.close()

    def post_image(
        self, data: bytes, path: str = "/v1/classify", content_type: str = "image/png", **headers: str
    ) -> Reply:
        return self.request("POST", path, data, {"Content-Type": content_type, **headers})

    def post_files(self, files: list[tuple[str, bytes]], path: str = "/v1/classify", **headers: str) -> Reply:
        body, content_type = multipart(files)
        return self.request("POST", path, body, {"Content-Type": content_type, **headers})


def multipart(files: list[tuple[str, bytes]], field: str = "file") -> tuple[bytes, str]:
    """A multipart/form-data body with one part per ``(filename, bytes)``, and its Content-Type."""
    boundary = uuid.uuid4().hex
    chunks = []
    for name, data in files:
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    return b"".join(chunks) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"
