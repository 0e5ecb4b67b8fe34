"""Run the classification service under uvicorn: bind, serve, stop cleanly on SIGTERM or Ctrl-C.

    edgefmnist serve --host 0.0.0.0 --port 8000 --token "$TOKEN"

The socket is bound here, before uvicorn starts, so a port in use is one line and exit 1,
and ``--port 0`` takes a free port (the line ``serving MODEL on http://HOST:PORT`` names it).
On SIGTERM or SIGINT the listening socket closes, every request already received is
answered, then the process exits 0 (uvicorn's graceful shutdown; newer uvicorn would
re-raise the signal after it, which ends the process with status -15 instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import signal
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from types import FrameType

import uvicorn
from edgefmnist.runtime.predictor import Predictor
from edgefmnist.runtime.serve import create_app
from edgefmnist.runtime.serve_gate import ServeSettings

from edgefmnist.errors import EdgeFmnistError, counted, printable

SHUTDOWN_SECONDS = 60  # the longest a graceful stop waits for requests still being answered


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``; raises :class:`EdgeFmnistError` (one line) if it cannot."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise EdgeFmnistError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        raise EdgeFmnistError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    sock.set_inheritable(True)
    return sock


class GracefulServer(uvicorn.Server):
    """uvicorn's server whose SIGTERM/SIGINT start the graceful stop and are not re-raised after it.

    The handlers are installed by :func:`stop_signals` before the address is announced, so a
    signal that arrives while uvicorn starts up still stops it gracefully.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.contextmanager
def stop_signals(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """``handler`` for SIGTERM and SIGINT inside the block; the previous handlers after it."""
    original = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, previous in original.items():
            signal.signal(sig, previous)


def serve(
    predictor: Predictor,
    settings: ServeSettings,
    host: str,
    port: int,
    say: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
    warnings: Sequence[str] = (),
) -> int:
    """Serve until SIGTERM/SIGINT, then answer what was received and return the number of requests answered.

    ``warnings`` are said once the socket is bound, so that a refusal stays one error line.

    Raises :class:`EdgeFmnistError` if the socket cannot be bound or a setting is out of range.
    """
    app, metrics = create_app(predictor, settings)
    sock = bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    for warning in warnings:
        say(warning)
    if not is_loopback(host) and not settings.token:
        say(f"edgefmnist: warning: listening on {host} without --token: anyone on the network can use the service")
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=SHUTDOWN_SECONDS,
        server_header=False,
    )
    server = GracefulServer(config)
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    try:
        with stop_signals(server.handle_exit):
            say(
                f"edgefmnist: serving {printable(predictor.path.name)} on http://{shown}:{bound_port} "
                f"({counted(settings.threads, 'worker')}, queue {settings.queue})"
            )
            asyncio.run(server.serve(sockets=[sock]))
    finally:
        sock.close()
    say(f"edgefmnist: stopped after answering {metrics.answered} requests")
    return metrics.answered
