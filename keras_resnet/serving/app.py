"""The FastAPI app: TensorFlow Serving's REST URLs over the models of an export directory.

- ``GET  /v1/models/NAME[/versions/N]``: model status (``model_version_status``).
- ``GET  /v1/models/NAME[/versions/N]/metadata``: the signature definitions.
- ``POST /v1/models/NAME[/versions/N]:predict``: see :mod:`keras_resnet.serving.codec`.
- ``GET  /``: a web page that sends an image to a classifier's ``:predict`` and shows its
  answer and Grad-CAM overlay (:mod:`keras_resnet.serving.page`).

Request bodies are read within the byte, time and memory limits of
:class:`~keras_resnet.serving.limits.Limits`; every error is ``{"error": "..."}`` with a 4xx
status (503 when the server is busy or out of memory). Model calls run in a thread pool, a few
at a time, so concurrent clients are served in parallel.

Example:
    >>> app = create_app("exports", max_batch=16)  # doctest: +SKIP
"""

import asyncio
import dataclasses
import json
import re

from keras_resnet.errors import InvalidArgument, InvalidType
from keras_resnet.extras import require
from keras_resnet.serving.card import model_card
from keras_resnet.serving.codec import predict
from keras_resnet.serving.limits import Limits, ServingError, clip
from keras_resnet.serving.page import render_page
from keras_resnet.serving.registry import VERSION_POLICIES, Registry

_DRAIN_FACTOR = 4  # an oversized body is read (and dropped) up to this many times the limit
_URL = re.compile(
    r"^(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<verb>/metadata|:predict|:classify|:regress)?$"
)


def _json_response(content, status=200):
    from starlette.responses import Response

    # Strict JSON (RFC 8259): codec.format_response turns a NaN/Infinity output into a 500
    # first, so allow_nan=False only stops a non-finite float that got past it.
    body = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return Response(body.encode("utf-8"), status_code=status, media_type="application/json")


def _status(servables):
    return {
        "model_version_status": [
            {"version": str(s.version), "state": "AVAILABLE",
             "status": {"error_code": "OK", "error_message": ""}}
            for s in sorted(servables, key=lambda s: -s.version)
        ]
    }


def _metadata(servable):
    return {
        "model_spec": {"name": servable.name, "signature_name": "", "version": str(servable.version)},
        "metadata": {"signature_def": {"signature_def": servable.signature_defs}},
    }


class _ByteBudget:
    """Bytes of request bodies held at once, all requests together (used on the event loop only)."""

    def __init__(self, limit):
        self.limit, self.used = limit, 0

    def take(self, size):
        if self.used + size > self.limit:
            raise ServingError(
                503, f"The server is busy: request bodies in memory would exceed "
                f"max_pending_bytes={self.limit}; retry later."
            )
        self.used += size

    def give(self, size):
        self.used -= size


async def _read_body(request, limits, budget):
    """The body: at most max_request_bytes (413), sent within body_timeout (408), and held
    within ``budget`` (503); nothing over the limits is kept."""
    chunks, size = [], 0

    async def read():
        nonlocal size
        stream = request.stream()
        async for chunk in stream:
            if size + len(chunk) > limits.max_request_bytes:
                # Read on (discarding, up to a bound) so that the client gets the 413 rather
                # than a connection reset while it is still sending; the same stream, as a
                # new one would refuse a body already read to its end.
                dropped = size + len(chunk)
                async for chunk in stream:
                    dropped += len(chunk)
                    if dropped > _DRAIN_FACTOR * limits.max_request_bytes:
                        break
                raise ServingError(
                    413, f"The request body exceeds the server's limit of "
                    f"max_request_bytes={limits.max_request_bytes}."
                )
            budget.take(len(chunk))
            size += len(chunk)
            chunks.append(chunk)

    try:
        await asyncio.wait_for(read(), limits.body_timeout)
    except asyncio.TimeoutError:
        budget.give(size)
        raise ServingError(
            408, f"The request body did not arrive within body_timeout={limits.body_timeout} s "
            f"({size} bytes came)."
        ) from None
    except BaseException:
        budget.give(size)
        raise
    return b"".join(chunks)


def create_app(export_dir, *, version_policy="latest", precision="auto", **limits):
    """A FastAPI app serving every model under ``export_dir`` with TensorFlow Serving's REST API.

    Args:
        export_dir: directory of ``<name>/<version>/`` SavedModels (what ``export_saved_model``
            writes and ``tensorflow/serving`` reads); all are loaded now, and one that does not
            load stops the start with a ``ValueError`` naming it and what is wrong.
        version_policy: "latest" (TensorFlow Serving's default: the highest version only) or
            "all" (every version, as ``model_version_policy { all {} }``).
        precision: "auto" (each export in bfloat16 where the CPU multiplies it natively and
            the export records a bfloat16 agreement of at least 99.5% and a speed-up over
            float32; ``keras_resnet.export.choose_precision``), "float32" or "bfloat16" (an
            error on a CPU without it). bfloat16 runs the SavedModel through TensorFlow's oneDNN
            rewrite (``keras_resnet.export.bfloat16``); the file does not change.
        **limits: fields of :class:`Limits` (``max_image_bytes``, ``max_image_pixels``,
            ``max_batch``, ``max_request_bytes``, ``max_request_pixels``, ...); the connection
            limits among them apply when :func:`serve` or :class:`BackgroundServer` runs it.

    Returns:
        a ``fastapi.FastAPI`` app (``app.state.models``: ``{name: {version: Servable}}``,
        ``app.state.limits``: the :class:`Limits`).

    Example:
        >>> uvicorn.run(create_app("exports", max_batch=16), port=8501)  # doctest: +SKIP
    """
    require("fastapi", "The REST server (keras_resnet.serving)")
    from fastapi import FastAPI

    limits = _checked_limits(version_policy, limits)
    registry = Registry(str(export_dir), version_policy, precision)
    app = FastAPI(title="keras_resnet serving", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.models = registry.models
    app.state.limits = limits
    _add_error_handlers(app)
    servables = [servable for _, versions in sorted(registry.models.items())
                 for _, servable in sorted(versions.items(), reverse=True)]
    _add_page(app, [model_card(servable, export_dir) for servable in servables])
    _add_routes(app, registry, limits)
    return app


def _add_page(app, cards):
    """``GET /``: the web page (:mod:`keras_resnet.serving.page`), made once."""
    from starlette.responses import Response

    document, policy = render_page(cards)
    body = document.encode("utf-8")

    @app.get("/")
    async def _page():
        return Response(body, media_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": policy, "Cache-Control": "no-store"})


def _checked_limits(version_policy, limits):
    """The :class:`Limits` of ``limits`` (keyword fields), after checking ``version_policy``."""
    if version_policy not in VERSION_POLICIES:
        raise InvalidArgument(
            f"`version_policy` must be one of {', '.join(map(repr, VERSION_POLICIES))}; "
            f"got {version_policy!r}."
        )
    unknown = sorted(set(limits) - {field.name for field in dataclasses.fields(Limits)})
    if unknown:
        raise InvalidType(
            f"Unknown limits {unknown}; allowed: "
            f"{', '.join(field.name for field in dataclasses.fields(Limits))}."
        )
    return Limits(**limits)


def _add_error_handlers(app):
    """Every error answers JSON: ours with its status, HTTP's with the path, others as 500."""
    from starlette.exceptions import HTTPException

    @app.exception_handler(ServingError)
    async def _serving_error(request, error):
        return _json_response({"error": error.message}, error.status)

    @app.exception_handler(HTTPException)
    async def _http_error(request, error):
        return _json_response({"error": f"{error.detail}: {request.method} {request.url.path}"},
                              error.status_code)

    @app.exception_handler(Exception)
    async def _internal_error(request, error):
        return _json_response({"error": f"Internal error: {type(error).__name__}: {error}"}, 500)


def _route(path):
    match = _URL.match(path)
    if match is None:
        raise ServingError(404, f"Malformed request: {clip('/v1/models/' + path)}.")
    return match.group("name", "version", "label", "verb")


def _add_routes(app, registry, limits):
    """TensorFlow Serving's GET (status, metadata) and POST (:predict) routes."""
    from fastapi import Request
    from starlette.concurrency import run_in_threadpool

    budget = _ByteBudget(limits.max_pending_bytes)
    predictions = asyncio.Semaphore(limits.max_concurrent_predictions)

    @app.get("/v1/models/{path:path}")
    async def _get(path: str):
        name, version, label, verb = _route(path)
        if verb not in (None, "/metadata"):
            raise ServingError(405, f"{verb[1:]} needs POST; got GET.")
        servable = registry.get(name, version, label)
        if verb == "/metadata":
            return _json_response(_metadata(servable))
        if version is None:
            return _json_response(_status(registry.models[name].values()))
        return _json_response(_status([servable]))

    @app.post("/v1/models/{path:path}")
    async def _post(path: str, request: Request):
        name, version, label, verb = _route(path)
        if verb in (":classify", ":regress"):
            raise ServingError(
                400, f"{verb[1:]} needs a tensorflow/serving/{verb[1:]} signature; these exports "
                f"have predict signatures only: use :predict."
            )
        if verb != ":predict":
            raise ServingError(405, f"POST {clip('/v1/models/' + path)} is not an API; use :predict.")
        servable = registry.get(name, version, label)
        body = await _read_body(request, limits, budget)
        try:
            async with predictions:  # decoding and running take the memory: a few at a time
                response = await run_in_threadpool(predict, servable, body, limits)
        finally:
            budget.give(len(body))
        return _json_response(response)
