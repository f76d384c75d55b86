"""The server process: uvicorn with the app's connection limits, in the foreground or on a thread.

:func:`serve` binds its port before any model loads and runs until Ctrl-C or SIGTERM;
:class:`BackgroundServer` runs the same server on a thread of this process (tests, notebooks,
benchmarks). Both close connections that send no complete request head within
``header_timeout`` and raise the open-file limit to fit ``max_connections``.

Example:
    >>> with BackgroundServer("exports", max_batch=16) as server:  # doctest: +SKIP
    ...     print(server.url)
"""

import errno
import os
import socket
import threading
import time

from keras_resnet.errors import InvalidArgument
from keras_resnet.extras import require
from keras_resnet.serving.app import create_app

_SPARE_FILES = 256  # open files kept beyond max_connections (model files, pipes, TF's own)
_SHUTDOWN_TIMEOUT = 10  # seconds requests in flight get to finish once the server is stopped


def _url(host, port):
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _http_protocol(header_timeout):
    """uvicorn's h11 protocol, also closing connections that send no request head in time.

    uvicorn's own keep-alive timer starts only after a response, and any byte stops it: a
    client that connects and sends nothing, or sends its headers a byte at a time, would hold
    its connection (and a place under ``max_connections``) for ever.
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Protocol(H11Protocol):
        _header_timer = None

        def connection_made(self, transport):
            super().connection_made(transport)
            self._arm_header_timer()

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
            self._header_timer = self.loop.call_later(header_timeout, self._header_timed_out)

        def _header_timed_out(self):
            # IDLE: no complete request head since the connection opened or the last response.
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

    return Protocol


def _uvicorn_config(app, **settings):
    """uvicorn's Config for an app of :func:`create_app`, with its connection limits."""
    import uvicorn

    limits = app.state.limits
    return uvicorn.Config(
        app,
        http=_http_protocol(limits.header_timeout),
        limit_concurrency=limits.max_connections,
        backlog=limits.backlog,
        timeout_keep_alive=limits.keep_alive_timeout,
        timeout_graceful_shutdown=_SHUTDOWN_TIMEOUT,
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
    if new < wanted:
        print(f"Warning: open files are limited to {new} (hard limit); connections beyond about "
              f"{new - _SPARE_FILES} wait to be accepted.", flush=True)


def serve(export_dir, host="127.0.0.1", port=8501, **limits):
    """Serve ``export_dir`` with uvicorn until interrupted (loopback only by default).

    The port is checked and bound before any model loads; Ctrl-C (SIGINT) or SIGTERM stop the
    server gracefully (requests in flight get a few seconds) and ``serve`` returns.

    Args:
        export_dir: directory of ``<name>/<version>/`` SavedModels.
        host: interface to listen on; "0.0.0.0" exposes the server to the network.
        port: TCP port in 1..65535 (TensorFlow Serving's REST port is 8501).
        **limits: keyword arguments of :func:`create_app`: ``version_policy`` and the fields
            of :class:`Limits` (request, image, concurrency and connection limits).

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
        url = _url(host, port)
        for name, versions in sorted(app.state.models.items()):
            print(f"Serving {name} (version {', '.join(map(str, sorted(versions)))}) at "
                  f"{url}/v1/models/{name}", flush=True)
        print(f"Predict: POST {url}/v1/models/<name>:predict  (Ctrl-C stops)", flush=True)
        uvicorn.Server(_uvicorn_config(app, log_level="info")).run(sockets=[sock])
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
