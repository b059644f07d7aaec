"""The websocket policy server: openpi-client's protocol on ``websockets``' asyncio server.

One event loop answers every connection (metadata, decoding, checks, errors, replies); the model runs in
one inference thread, so model calls are serialized and no state is shared between them, while the loop
keeps answering the other connections. A bad request gets a one-line text frame and the connection
keeps serving; a message over ``max_message_bytes`` is refused by ``websockets`` before it is buffered
(the connection closes with code 1009, the reason naming the limit); every such event is one log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any

try:
    from websockets.asyncio.server import Server, ServerConnection, serve
    from websockets.exceptions import ConnectionClosed
    from websockets.frames import CloseCode
    from websockets.http11 import Request as HTTPRequest
    from websockets.http11 import Response as HTTPResponse
except ImportError as error:  # the optional extra; the rest of f1 works without it
    raise ImportError("f1.serve needs msgpack and websockets: pip install 'f1[serve]'") from error

from f1.errors import ConfigError, InputError, UnknownEmbodimentError
from f1.model import F1Policy
from f1.serve.codec import packb, unpackb
from f1.serve.protocol import server_metadata
from f1.serve.requests import Request, parse_request
from f1.serve.session import Session

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "PolicyServer"]

logger = logging.getLogger("f1.serve")

DEFAULT_MAX_MESSAGE_BYTES = 8 * 2**20
"""8 MiB: three 224 px uint8 cameras and a 4-frame history take about 1 MiB."""

HEALTH_PATH = "/healthz"


def _one_line(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return " ".join(text.split())


def _peer(connection: ServerConnection) -> str:
    address = connection.remote_address
    return f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)


class PolicyServer:
    """Serve an :class:`~f1.model.F1Policy` to openpi-client websocket clients.

    Args:
        policy: the policy whose model is served (put in eval mode here); each connection gets its own
            :class:`F1Policy` around the same model (see :class:`~f1.serve.session.Session`).
        host: the interface to listen on (``127.0.0.1``: this machine only; ``0.0.0.0``: every interface).
        port: the TCP port; 0 picks a free one (read :attr:`port` once started).
        max_message_bytes: the largest request accepted, in bytes (``websockets``' ``max_size``).

    Use it as a context manager (a background thread, e.g. in tests) or block with
    :meth:`serve_forever` (the command line)::

        with PolicyServer(policy, port=0) as server:
            client = WebsocketClientPolicy("127.0.0.1", server.port)
    """

    def __init__(
        self,
        policy: F1Policy,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        if not isinstance(policy, F1Policy):
            raise ConfigError(f"policy: expected an F1Policy, received {type(policy).__name__}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"port: expected an int in [0, 65535], received {port!r}")
        if isinstance(max_message_bytes, bool) or not isinstance(max_message_bytes, int):
            raise ConfigError(f"max_message_bytes: expected a positive int, received {max_message_bytes!r}")
        if max_message_bytes < 1:
            raise ConfigError(f"max_message_bytes: expected a positive int, received {max_message_bytes}")
        self.model = policy.eval().model
        self.host = host
        self.max_message_bytes = max_message_bytes
        self._requested_port = port
        self._port: int | None = None
        self._metadata = packb(server_metadata(self.model.config, max_message_bytes=max_message_bytes))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._executor: ThreadPoolExecutor | None = None

    # --- where it listens ------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The port it listens on (the one picked when constructed with ``port=0``)."""
        if self._port is None:
            raise RuntimeError("PolicyServer.port: the server is not listening; call start() first")
        return self._port

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    # --- running -------------------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> PolicyServer:
        """Listen from a background thread; returns once listening (re-raises a failure to bind)."""
        if self._thread is not None:
            raise RuntimeError("PolicyServer.start: the server is already running")
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(self._serve(ready.set, handle_signals=False))
            except BaseException as error:  # handed to start(), which raises it
                failure.append(error)
                ready.set()

        self._thread = threading.Thread(target=run, name="f1-serve", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError(f"PolicyServer.start: not listening after {timeout} s")
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Close every connection, finish the running inference, stop listening; returns when done."""
        loop, stopping, thread = self._loop, self._stopping, self._thread
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(stopping.set)
        if thread is not None:
            thread.join(timeout)
            self._thread = None

    def serve_forever(self, ready: Callable[[PolicyServer], None] | None = None) -> None:
        """Serve in this thread until SIGINT/SIGTERM (main thread) or :meth:`stop` from another thread.

        ``ready(server)`` is called once listening (e.g. to print :attr:`url`).
        """
        on_ready = (lambda: ready(self)) if ready is not None else (lambda: None)
        main_thread = threading.current_thread() is threading.main_thread()
        asyncio.run(self._serve(on_ready, handle_signals=main_thread))

    def __enter__(self) -> PolicyServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    async def _serve(self, ready: Callable[[], None], *, handle_signals: bool) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="f1-serve-inference")
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._loop.add_signal_handler(sig, self._stopping.set)
        try:
            server: Server = await serve(
                self._handle,
                self.host,
                self._requested_port,
                max_size=self.max_message_bytes,
                compression=None,
                process_request=_health_check,
            )
            self._port = int(server.sockets[0].getsockname()[1])
            ready()
            config = self.model.config
            logger.info("serving %s (mode %s) on %s", config.name, config.mode, self.url)
            await self._stopping.wait()
            server.close()
            await server.wait_closed()
        finally:
            self._executor.shutdown(wait=True)
            self._port = None
            if handle_signals:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    self._loop.remove_signal_handler(sig)

    # --- one connection ------------------------------------------------------------------------------
    async def _handle(self, connection: ServerConnection) -> None:
        peer = _peer(connection)
        session = Session(self.model)
        previous_total_ms: float | None = None
        in_flight = False
        try:
            await connection.send(self._metadata)
            while True:
                message = await connection.recv()
                start = time.perf_counter()
                in_flight = True
                reply = await self._answer(peer, session, message)
                if isinstance(reply, dict):
                    if previous_total_ms is not None:
                        reply["server_timing"]["prev_total_ms"] = previous_total_ms
                    await connection.send(packb(reply))
                    previous_total_ms = (time.perf_counter() - start) * 1e3
                else:
                    await connection.send(reply)
                in_flight = False
        except ConnectionClosed as closed:
            sent = closed.sent
            if sent is not None and sent.code == CloseCode.MESSAGE_TOO_BIG:
                logger.warning(
                    "%s: refused a message over max_message_bytes=%d (%s); connection closed with 1009",
                    peer,
                    self.max_message_bytes,
                    sent.reason,
                )
            elif _server_shutdown(closed):
                pass  # stop() closes every connection, with or without a request in flight
            elif in_flight:
                logger.warning("%s: disconnected before its reply (%s)", peer, _one_line(closed))
            elif closed.rcvd is None or closed.rcvd.code not in (
                CloseCode.NORMAL_CLOSURE,
                CloseCode.GOING_AWAY,
            ):
                logger.info("%s: connection lost (%s)", peer, _one_line(closed))

    async def _answer(self, peer: str, session: Session, message: str | bytes) -> dict[str, Any] | str:
        """The reply to one message: a map (with ``server_timing``) or a one-line error."""
        start = time.perf_counter()
        try:
            if isinstance(message, str):
                raise InputError(
                    "frame: expected a binary msgpack-numpy frame, received a text frame "
                    f"of {len(message)} characters"
                )
            request = parse_request(unpackb(message), self.model.config)
            decoded = time.perf_counter()
            assert self._loop is not None
            assert self._executor is not None
            reply, started, finished = await self._loop.run_in_executor(
                self._executor, _timed_answer, session, request
            )
            resumed = time.perf_counter()
        except (InputError, UnknownEmbodimentError) as error:
            line = _one_line(error)
            logger.warning("%s: bad request: %s", peer, line)
            return line
        except Exception as error:  # a bug, not the client's fault: the server keeps serving
            line = f"internal error: {type(error).__name__}: {_one_line(error)}"
            logger.error("%s: %s", peer, line, exc_info=logger.isEnabledFor(logging.DEBUG))
            return line
        reply["server_timing"] = {
            "decode_ms": (decoded - start) * 1e3,
            "queue_ms": (started - decoded) * 1e3,
            "infer_ms": (finished - started) * 1e3,
            "handoff_ms": (resumed - finished) * 1e3,
        }
        return reply


def _server_shutdown(closed: ConnectionClosed) -> bool:
    """The server sent "going away" first: its own shutdown, not the client's doing."""
    sent = closed.sent
    return sent is not None and sent.code == CloseCode.GOING_AWAY and not closed.rcvd_then_sent


def _timed_answer(session: Session, request: Request) -> tuple[dict[str, Any], float, float]:
    """Run in the inference thread: the reply, and ``time.perf_counter()`` (one clock for every thread)
    when the model call started and when it finished."""
    start = time.perf_counter()
    reply = session.answer(request)
    return reply, start, time.perf_counter()


def _health_check(connection: ServerConnection, request: HTTPRequest) -> HTTPResponse | None:
    """``GET /healthz`` answers 200 without opening a websocket (as openpi's server does)."""
    if request.path == HEALTH_PATH:
        return connection.respond(http.HTTPStatus.OK, "OK\n")
    return None
