"""The server process: uvicorn with the app's connection limits, in the foreground or on a thread.

:func:`serve` binds its port before any model loads and runs until Ctrl-C or SIGTERM;
:class:`BackgroundServer` runs the same server on a thread of this process (tests, notebooks,
benchmarks). Both close connections that send no complete request head within
``header_timeout``, raise the open-file limit to fit ``max_connections``, and hold at most
:func:`connection_cap` connections: what the open files they got allow. A connection over the
cap closes the longest-idle one (no request head pending); with none idle, its request gets a
503 at once.

Example:
    >>> with BackgroundServer("exports", max_batch=16) as server:  # doctest: +SKIP
    ...     print(server.url)
"""

import errno
import json
import os
import socket
import threading
import time

from keras_resnet.errors import InvalidArgument
from keras_resnet.extras import require
from keras_resnet.serving.app import create_app

_SPARE_FILES = 256  # open files asked for beyond max_connections (model files, pipes, TF's own)
# Open files kept free beyond those held when serving starts (see _accept_burst).
_MIN_MARGIN_FILES = 64
# Event-loop turns from asyncio accepting a connection to the descriptor of the idle connection
# it displaces being closed: the accepting task runs, then connection_made closes the idle one,
# then connection_lost closes its socket.
_ACCEPT_TURNS = 3
_SHUTDOWN_TIMEOUT = 10  # seconds requests in flight get to finish once the server is stopped


def _url(host, port):
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _http_protocol(header_timeout, cap):
    """uvicorn's h11 protocol, also closing connections that send no request head in time and,
    over ``cap`` connections, the one idle the longest.

    uvicorn's own keep-alive timer starts only after a response, and any byte stops it: a
    client that connects and sends nothing, or sends its headers a byte at a time, would hold
    its connection (and a place under ``max_connections``) for ever. And uvicorn counts idle
    connections against its cap like busy ones: a flood of idle ones would turn every good
    request away until their timeouts.
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Protocol(H11Protocol):
        _header_timer = None
        _idle_since = 0.0

        def connection_made(self, transport):
            super().connection_made(transport)
            self._arm_header_timer()
            if len(self.connections) > cap:
                self._close_longest_idle()

        def on_response_complete(self):
            super().on_response_complete()
            self._arm_header_timer()

        def connection_lost(self, exc):
            if self._header_timer is not None:
                self._header_timer.cancel()
            super().connection_lost(exc)

        def _arm_header_timer(self):
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._idle_since = time.monotonic()
            self._header_timer = self.loop.call_later(header_timeout, self._header_timed_out)

        def _is_idle(self):
            return self.conn.their_state is h11.IDLE and not self.transport.is_closing()

        def _header_timed_out(self):
            # IDLE: no complete request head since the connection opened or the last response.
            if self._is_idle():
                self.transport.close()

        def send_400_response(self, msg):
            # uvicorn's answer to malformed HTTP (a garbage request line, a bad chunk size, a
            # Content-Length that is negative or given twice differently, no Host), as the
            # JSON error every other answer of the server is.
            body = json.dumps({"error": f"{msg} (malformed HTTP: request line, headers or "
                                        "chunked body)"}).encode()
            headers = [(b"content-type", b"application/json"),
                       (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
            for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                          h11.Data(data=body), h11.EndOfMessage()):
                self.transport.write(self.conn.send(event))
            self.transport.close()

        def _close_longest_idle(self):
            idle = [c for c in self.connections
                    if c is not self and isinstance(c, Protocol) and c._is_idle()]
            if idle:
                min(idle, key=lambda c: c._idle_since).transport.close()

    return Protocol


def _open_files_now():
    """(the soft limit on open files or None if unlimited, the files open now)."""
    try:
        import resource
    except ImportError:  # Windows: no such limit
        return None, 0
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    try:
        open_now = len(os.listdir("/proc/self/fd"))
    except OSError:  # no /proc: assume TensorFlow's usual share
        open_now = 64
    return (None if limit == resource.RLIM_INFINITY else limit), open_now


def _margin(open_files):
    return max(_MIN_MARGIN_FILES, open_files // 8)


def _accept_burst(open_files):
    """How many connections asyncio may accept in one turn of the loop (its ``backlog``) when
    the open files cap the connections.

    A flood past the cap keeps ``_ACCEPT_TURNS`` bursts of new sockets open before the idle
    connections they displace give their descriptors back: three quarters of the margin, so
    the last quarter is left for what serving opens itself and ``accept()`` never fails.

    Example:
        >>> _accept_burst(256), _accept_burst(1024)
        (16, 32)
    """
    return max(1, _margin(open_files) // (_ACCEPT_TURNS + 1))


def connection_cap(max_connections, open_files=None, open_now=None):
    """How many connections the server holds at most: ``max_connections``, within the open-file
    limit it has (``open_files``, default: the soft limit now) less the files it holds
    (``open_now``, default: counted) and a margin for what serving opens (an eighth of the
    limit, at least 64), so accepting a connection never runs out of descriptors.

    Example:
        >>> connection_cap(2048, open_files=1024, open_now=100)
        796
    """
    if open_files is None or open_now is None:
        limit, counted = _open_files_now()
        open_files = limit if open_files is None else open_files
        open_now = counted if open_now is None else open_now
    if open_files is None:  # no limit
        return max_connections
    return max(1, min(max_connections, open_files - open_now - _margin(open_files)))


def _uvicorn_config(app, **settings):
    """uvicorn's Config for an app of :func:`create_app`, with its connection limits."""
    import uvicorn

    limits = app.state.limits
    open_files, open_now = _open_files_now()
    cap = connection_cap(limits.max_connections, open_files, open_now)
    backlog = limits.backlog
    if cap < limits.max_connections:
        backlog = min(backlog, _accept_burst(open_files))
    app.state.connection_cap = cap
    return uvicorn.Config(
        app,
        http=_http_protocol(limits.header_timeout, cap),
        # uvicorn answers 503 from this many connections on: one more than the cap, so a
        # connection that closed an idle one to come in is served.
        limit_concurrency=cap + 1,
        backlog=backlog,
        timeout_keep_alive=limits.keep_alive_timeout,
        timeout_graceful_shutdown=_SHUTDOWN_TIMEOUT,
        # asyncio's own loop, even where uvloop is installed: the accept bursts above are its.
        loop="asyncio",
        **settings,
    )


def _check_port(port):
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidArgument(f"`port` must be an integer in 1..65535; got {port!r}.")


def _bind(host, port):
    """A TCP socket bound to ``(host, port)`` (uvicorn listens on it); ValueError if taken."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )[0]
    except (socket.gaierror, UnicodeError) as error:
        raise InvalidArgument(f"`host` {host!r} is not an address to listen on: {error}.") from None
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only for sockets
    # that say they are TCP; without it keep-alive requests wait on delayed ACKs.
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise InvalidArgument(
                f"`port` {port} on {host} is in use by another program; stop it or pick another "
                f"port (1..65535)."
            ) from None
        raise InvalidArgument(f"Cannot listen on `host` {host!r} `port` {port}: {error.strerror}.") from None
    return sock


def _raise_open_files_limit(wanted):
    """Raise the soft limit on open files to ``wanted`` (at most the hard limit), if lower."""
    try:
        import resource
    except ImportError:  # Windows: no such limit
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


def serve(export_dir, host="127.0.0.1", port=8501, **limits):
    """Serve ``export_dir`` with uvicorn until interrupted (loopback only by default).

    The port is checked and bound before any model loads; Ctrl-C (SIGINT) or SIGTERM stop the
    server gracefully (requests in flight get a few seconds) and ``serve`` returns.

    Args:
        export_dir: directory of ``<name>/<version>/`` SavedModels.
        host: interface to listen on; "0.0.0.0" exposes the server to the network.
        port: TCP port in 1..65535 (TensorFlow Serving's REST port is 8501).
        **limits: keyword arguments of :func:`create_app`: ``version_policy``, ``precision``
            and the fields of :class:`Limits` (request, image, concurrency and connection
            limits).

    Returns:
        None, once the server stops.

    Raises:
        ValueError: a port outside 1..65535 or in use, or a model that does not load.

    Example:
        >>> serve("exports", port=8501)  # doctest: +SKIP
    """
    uvicorn = require("uvicorn", "keras-resnet serve")

    _check_port(port)
    sock = _bind(host, port)
    try:
        app = create_app(export_dir, **limits)
        _raise_open_files_limit(app.state.limits.max_connections + _SPARE_FILES)
        config = _uvicorn_config(app, log_level="info")
        if app.state.connection_cap < app.state.limits.max_connections:
            print(f"Open files are limited to {_open_files_now()[0]}: holding at most "
                  f"{app.state.connection_cap} connections (max_connections "
                  f"{app.state.limits.max_connections}); over that, the longest-idle one is "
                  "closed.", flush=True)
        url = _url(host, port)
        for name, versions in sorted(app.state.models.items()):
            served = ", ".join(f"{v} in {versions[v].precision}" for v in sorted(versions))
            print(f"Serving {name} (version {served}) at {url}/v1/models/{name}", flush=True)
        print(f"Predict: POST {url}/v1/models/<name>:predict  (Ctrl-C stops)", flush=True)
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        # uvicorn stops gracefully on SIGINT, then raises it again once its handler is gone.
        pass
    finally:
        sock.close()
    print("Server stopped.", flush=True)


class BackgroundServer:
    """A uvicorn server on a thread of this process, for tests, notebooks and benchmarks.

    Args:
        app_or_export_dir: a FastAPI app from :func:`create_app`, or an export directory.
        host: interface (loopback by default).
        port: TCP port; 0 picks a free one (see ``url``).
        **limits: :func:`create_app` keyword arguments when an export directory is given.

    Example:
        >>> with BackgroundServer("exports") as server:  # doctest: +SKIP
        ...     httpx.get(server.url + "/v1/models/resnet20")
    """

    def __init__(self, app_or_export_dir, host="127.0.0.1", port=0, start_timeout=60, **limits):
        import uvicorn

        app = app_or_export_dir
        if isinstance(app, (str, os.PathLike)):
            app = create_app(app, **limits)
        elif limits:
            raise InvalidArgument(f"Limits {sorted(limits)} apply to an export directory, not to an app.")
        self._socket = _bind(host, port)
        self.port = self._socket.getsockname()[1]
        self.url = _url(host, self.port)
        self.app = app
        config = _uvicorn_config(app, log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + start_timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"The server at {self.url} did not start within {start_timeout} s.")
            time.sleep(0.01)

    def stop(self, timeout=10):
        """Ask the server to exit and wait (at most ``timeout`` seconds) for its thread."""
        self._server.should_exit = True
        self._thread.join(timeout)
        self._socket.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
