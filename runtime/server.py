"""Run the classification service under uvicorn: bind, serve, stop cleanly on SIGTERM or Ctrl-C.

    edgefmnist serve --host 0.0.0.0 --port 8000 --token "$TOKEN"

The socket is bound here, before uvicorn starts, so a port in use is one line and exit 1,
and ``--port 0`` takes a free port (the line ``serving MODEL on http://HOST:PORT`` names it).
On SIGTERM or SIGINT the listening socket closes, every request already received is
answered, and so is one whose head arrives within ``STOP_HEAD_SECONDS`` on a connection
already open; those answers say ``Connection: close``, and the process exits 0 once they are
sent (uvicorn's graceful shutdown, for at most :func:`graceful_stop_seconds`; newer uvicorn
would re-raise the signal after it, which ends the process with status -15 instead). A second
SIGINT stops at once: requests still in progress get a 503, and the process exits 130.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import FrameType
from typing import Any

import h11
import uvicorn
from edgefmnist.runtime.predictor import Predictor
from edgefmnist.runtime.serve import create_app
from edgefmnist.runtime.serve_gate import ServeSettings
from uvicorn.protocols.http.h11_impl import H11Protocol

from edgefmnist.errors import EdgeFmnistError, counted, first_line, printable

SHUTDOWN_SECONDS = 60  # how long a graceful stop waits for answers, beyond the upload deadline
STOP_HEAD_SECONDS = 2.0  # how long a graceful stop waits for a request's head on a connection already open


class OneLineLogFormatter(logging.Formatter):
    """uvicorn's log records as the toolkit's own lines on stderr: ``edgefmnist: warning: Invalid
    HTTP request received.``; an exception is its type and first line, never a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        message = next((text.strip() for text in record.getMessage().splitlines() if text.strip()), "")
        line = f"edgefmnist: {record.levelname.lower()}: {message}"
        if record.exc_info and record.exc_info[1] is not None:
            line += f" ({type(record.exc_info[1]).__name__}: {first_line(record.exc_info[1])})"
        return printable(line)


LOG_CONFIG = {  # uvicorn's LOGGING_CONFIG with one formatter, and no access log
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"line": {"()": OneLineLogFormatter}},
    "handlers": {"stderr": {"formatter": "line", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"level": "INFO"},
        "uvicorn.access": {"handlers": [], "level": "INFO", "propagate": False},
    },
}


class RequestHeadDeadline(H11Protocol):
    """uvicorn's h11 protocol, closing without an answer a connection whose request line and
    headers have not all arrived within ``head_seconds`` of its opening or of the previous
    answer (with the rest of a body that was answered before it was read).

    uvicorn bounds no such wait (its keep-alive timer is cancelled by a request's first byte and
    armed again only by an answer; uvicorn issue #157, "--timeout-request-start"), so a client
    that sends a request's head slowly or not at all (Slowloris) would hold its connection, and
    its file descriptor, for ever: enough of them take every descriptor the process may open.
    Once the head is in, the upload deadline of :class:`~edgefmnist.runtime.serve_gate.Gate`
    bounds the body (408). :func:`head_deadline_of` makes the class for a given ``head_seconds``
    and ``server_stopping``, which tells whether the graceful stop has begun.
    """

    head_seconds: float = 30.0
    server_stopping: Callable[[], bool]
    head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.follow_head()
        if self.server_stopping():  # accepted in the same batch as the last ones before the stop
            self.shutdown()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.server_stopping() and self.cycle is not None:
            self.cycle.keep_alive = False  # answered, then closed
        self.follow_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.follow_head()

    def follow_head(self) -> None:
        """Armed from the moment the connection waits on the client alone, and not restarted by its
        bytes: at the opening, and once an answer is sent, also when the rest of a body answered
        early (a 401, 413 or 408) is still to come, so that it must all arrive, and the next head
        too, within the deadline. Disarmed while a request is read or answered."""
        if self.waiting_for_client() and not self.transport.is_closing():
            if self.head_deadline is None:
                self.head_deadline = self.loop.call_later(self.head_seconds, self.head_too_slow)
        else:
            self.disarm_head_deadline()

    def waiting_for_client(self) -> bool:
        """Whether the connection waits on the client alone: for a request's head (just accepted,
        or kept alive after an answer), or for the rest of a body already answered."""
        return self.conn.their_state is h11.IDLE or self.conn.our_state is h11.DONE

    def shutdown(self) -> None:
        """uvicorn's graceful stop, except on a connection :meth:`waiting_for_client`: uvicorn
        would close it, and a request already on its way would be lost (the client sees a reset or
        a closed connection). Its next request is answered, and the connection then closed, if the
        request's head arrives within :data:`STOP_HEAD_SECONDS` (or the head deadline, if sooner);
        else it is closed then."""
        if not self.waiting_for_client() or self.transport.is_closing():
            super().shutdown()
            return
        stop_at = self.loop.time() + STOP_HEAD_SECONDS
        if self.head_deadline is None or self.head_deadline.when() > stop_at:
            self.disarm_head_deadline()
            self.head_deadline = self.loop.call_at(stop_at, self.head_too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm_head_deadline()
        super().connection_lost(exc)

    def disarm_head_deadline(self) -> None:
        if self.head_deadline is not None:
            self.head_deadline.cancel()
            self.head_deadline = None

    def head_too_slow(self) -> None:
        self.head_deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def _unsupported_upgrade_warning(self) -> None:
        """Silent: the service serves no WebSocket (``ws="none"``), so an ``Upgrade`` request is
        answered as plain HTTP, with the JSON of any other request, not logged as a fault."""


class CloseWhileStopping:
    """ASGI middleware: an answer that starts once the graceful stop has begun carries
    ``Connection: close`` (RFC 9112, 9.6), so that the client opens a new connection for its next
    request instead of sending it on one about to close. ``stopping()`` tells whether it has begun."""

    def __init__(self, app: Callable[..., Any], stopping: Callable[[], bool]) -> None:
        self.app = app
        self.stopping = stopping

    async def __call__(self, scope: dict, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        async def send_closing(message: dict) -> None:
            headers = message.get("headers", [])
            if message["type"] == "http.response.start" and self.stopping() and not has_connection_header(headers):
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, send_closing)


def has_connection_header(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether an ASGI answer's ``headers`` already hold a ``Connection`` header."""
    return any(name.lower() == b"connection" for name, _ in headers)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``, ``::ffff:127.0.0.1``)."""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # an IPv4 address in IPv6 form
    return (mapped or address).is_loopback


def host_port(host: str, port: int) -> str:
    """``host:port``, an IPv6 address in brackets (``[::1]:8000``), as a URL writes it."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``; raises :class:`EdgeFmnistError` (one line) if it cannot."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise EdgeFmnistError(f"cannot listen on {host_port(host, port)} ({exc.strerror or exc})") from None
    except UnicodeError as exc:  # a name IDNA cannot encode (the CLI refuses it first)
        raise EdgeFmnistError(f"cannot listen on {host_port(host, port)} ({first_line(exc)})") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        raise EdgeFmnistError(f"cannot listen on {host_port(host, port)} ({exc.strerror or exc})") from None
    sock.set_inheritable(True)
    return sock


def graceful_stop_seconds(upload_seconds: float) -> int:
    """How long a graceful stop waits for requests in progress: a head may take
    :data:`STOP_HEAD_SECONDS`, its body up to its deadline ``upload_seconds`` (then it is answered
    408), and the answer :data:`SHUTDOWN_SECONDS`. Past that uvicorn cancels what is left (503)."""
    return math.ceil(STOP_HEAD_SECONDS + upload_seconds) + SHUTDOWN_SECONDS


def head_deadline_of(seconds: float, server_stopping: Callable[[], bool]) -> type[RequestHeadDeadline]:
    """:class:`RequestHeadDeadline` with ``head_seconds`` set to ``seconds`` and the server's
    ``server_stopping``: uvicorn makes one protocol per connection from the class it is given."""
    attributes = {"head_seconds": seconds, "server_stopping": staticmethod(server_stopping)}
    return type("RequestHeadDeadline", (RequestHeadDeadline,), attributes)


def raise_open_file_limit() -> None:
    """Raise this process's soft limit on open files to its hard limit (POSIX ``RLIMIT_NOFILE``):
    every connection holds a descriptor, and a soft limit of 1,024 (systemd's default) is reached
    by a thousand idle clients. Left as it is where it cannot be raised or is not known."""
    try:
        import resource
    except ImportError:  # not POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class AcceptFailureWarning:
    """An event-loop exception handler that says "cannot accept connections" in one line, at most
    once every ``every`` seconds, where asyncio would log a traceback for every failed
    ``accept()`` while the process has no descriptor left (thousands a second); every other
    context goes to the loop's default handler."""

    MESSAGE = "socket.accept() out of system resource"  # asyncio's, selector_events._accept_connection

    def __init__(self, say: Callable[[str], None], every: float = 60.0) -> None:
        self.say, self.every, self.last = say, every, -float("inf")

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict) -> None:
        if context.get("message") != self.MESSAGE:
            loop.default_exception_handler(context)
            return
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            exc = context.get("exception")
            why = f" ({exc.strerror})" if isinstance(exc, OSError) and exc.strerror else ""
            self.say(f"edgefmnist: warning: cannot accept connections{why}; new ones wait until some close")


class GracefulServer(uvicorn.Server):
    """uvicorn's server whose SIGTERM/SIGINT start the graceful stop and are not re-raised after it.

    The handlers are installed by :func:`stop_signals` before the address is announced, so a
    signal that arrives while uvicorn starts up still stops it gracefully.
    """

    loop: asyncio.AbstractEventLoop | None = None  # set by :func:`serve_on`

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self.force_exit and self.loop is not None:  # a second Ctrl-C
            self.loop.call_soon_threadsafe(self.stop_at_once)

    def stop_at_once(self) -> None:
        """Cancel every request in progress (each is answered 503, with ``Connection: close``) and
        drop (abort) every connection waiting on its client. uvicorn's force exit closes none, and its
        last step, ``asyncio.Server.wait_closed``, waits for every connection since Python 3.12.1
        (uvicorn PR #2145 fixed only the graceful path): an idle connection, or an upload in
        progress, would hold the process until its deadline. The listening socket closes first,
        not at uvicorn's next tick, so that no connection is accepted meanwhile."""
        for listener in getattr(self, "servers", ()):  # uvicorn sets them once it has started
            listener.close()
        for task in list(self.server_state.tasks):
            task.cancel()
        for connection in list(self.server_state.connections):
            if isinstance(connection, RequestHeadDeadline) and connection.waiting_for_client():
                connection.transport.abort()


@contextlib.contextmanager
def stop_signals(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """``handler`` for SIGTERM and SIGINT inside the block; the previous handlers after it."""
    original = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, previous in original.items():
            signal.signal(sig, previous)


async def serve_on(server: GracefulServer, sock: socket.socket, handler: AcceptFailureWarning) -> None:
    """Run ``server`` on the bound ``sock`` in the running loop, whose exception handler is ``handler``."""
    server.loop = asyncio.get_running_loop()
    server.loop.set_exception_handler(handler)
    await server.serve(sockets=[sock])


def reached_as(host: str, port: int) -> str:
    """For a wildcard ``host`` (``0.0.0.0``, ``::``), which a phone cannot open:
    ``"; on the network: http://192.168.1.20:8000"``, with the address this machine's default route
    leaves from (a UDP socket's connect sends nothing), IPv4 first, or a hint when there is none;
    else ``""``."""
    if not ipaddress.ip_address(host).is_unspecified:
        return ""
    probes = [(socket.AF_INET, "192.0.2.1")]  # RFC 5737; "::" takes IPv4 too, and phones mostly use it
    if ":" in host:
        probes.append((socket.AF_INET6, "2001:db8::1"))  # RFC 3849
    for family, probe in probes:
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as udp:
                udp.connect((probe, 9))
                return f"; on the network: http://{host_port(udp.getsockname()[0], port)}"
        except OSError:  # no route off this machine for this family
            continue
    return f"; on the network: http://THIS-MACHINE'S-ADDRESS:{port}"


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

    Raises :class:`EdgeFmnistError` if the socket cannot be bound or a setting is out of range,
    and ``KeyboardInterrupt`` after a second SIGINT stopped it at once.
    """
    app, metrics = create_app(predictor, settings)
    raise_open_file_limit()
    sock = bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    for warning in warnings:
        say(warning)
    if not is_loopback(bound_host) and not settings.token:  # the address bound: 127.1 is loopback too
        say(f"edgefmnist: warning: listening on {host} without --token: anyone on the network can use the service")

    def stopping() -> bool:  # the graceful stop has begun
        return server.should_exit

    config = uvicorn.Config(
        CloseWhileStopping(app, stopping),
        log_config=LOG_CONFIG,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=graceful_stop_seconds(settings.upload_seconds),
        server_header=False,
        http=head_deadline_of(settings.upload_seconds, stopping),
        ws="none",  # no WebSocket endpoint: an Upgrade request gets the JSON answer of its path
    )
    server = GracefulServer(config)
    try:
        with stop_signals(server.handle_exit):
            say(
                f"edgefmnist: serving {printable(predictor.path.name)} on http://{host_port(bound_host, bound_port)} "
                f"({counted(settings.threads, 'worker')}, queue {settings.queue}){reached_as(bound_host, bound_port)}"
            )
            asyncio.run(serve_on(server, sock, AcceptFailureWarning(say)))
    finally:
        sock.close()
    if server.force_exit:  # a second Ctrl-C: what was still in progress got a 503
        say(f"edgefmnist: stopped at once after answering {counted(metrics.answered, 'request')}")
        raise KeyboardInterrupt
    say(f"edgefmnist: stopped after answering {counted(metrics.answered, 'request')}")
    return metrics.answered
