"""What a request may cost the server, and the error a request that cannot be served gets.

What TensorFlow Serving leaves to the deployment is bounded here before it is spent (see
:class:`Limits`): request body size and the time to send it, batch size, encoded image size,
pixels per image and per request (read from image headers without decoding; every frame of a
GIF counts, since TensorFlow's GIF decoder decodes them all), request bodies held at once,
predictions run at once, open connections and idle or slow connections. A request over a limit
gets a 4xx status (503 when the server is busy) with ``{"error": "..."}``: a :class:`ServingError`.

Example:
    >>> Limits(max_batch=16).max_batch
    16
"""

import dataclasses
import math

from keras_resnet.errors import InvalidArgument

DEFAULT_MAX_IMAGE_BYTES = 8 * 2**20
DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096
DEFAULT_MAX_BATCH = 64
DEFAULT_MAX_REQUEST_BYTES = 64 * 2**20
DEFAULT_MAX_IMAGE_FRAMES = 1000
DEFAULT_MAX_REQUEST_PIXELS = 4 * DEFAULT_MAX_IMAGE_PIXELS


class ServingError(Exception):
    """A request that cannot be served: an HTTP status and a message for ``{"error": ...}``."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclasses.dataclass
class Limits:
    """What requests and connections may cost the server, checked before it is spent.

    One request: ``max_request_bytes`` (body; 413), ``max_batch`` (examples; 413),
    ``max_image_bytes`` (one encoded image; 413), ``max_image_pixels`` (one image, width x
    height, summed over the frames of a GIF; 413), ``max_image_frames`` (frames of one GIF;
    413), ``max_request_pixels`` (all images of one request together; 413), ``body_timeout``
    (seconds to send the body; 408).

    All requests together: ``max_pending_bytes`` (request bodies held in memory at once; 503
    above it; ``None``: 4 x ``max_request_bytes``), ``max_concurrent_predictions`` (requests
    decoded and run at once; the others wait their turn).

    Connections (uvicorn's settings): ``max_connections`` (open connections, uvicorn's
    ``limit_concurrency``; requests beyond it get 503), ``backlog`` (connections waiting to be
    accepted), ``keep_alive_timeout`` (seconds an idle keep-alive connection stays open,
    uvicorn's ``timeout_keep_alive``), ``header_timeout`` (seconds a connection has to send a
    complete request line and headers before it is closed).

    Example:
        >>> Limits(max_request_bytes=2**20).max_pending_bytes
        4194304
    """

    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    max_batch: int = DEFAULT_MAX_BATCH
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_image_frames: int = DEFAULT_MAX_IMAGE_FRAMES
    max_request_pixels: int = DEFAULT_MAX_REQUEST_PIXELS
    max_pending_bytes: int = None
    max_concurrent_predictions: int = 4
    max_connections: int = 2048
    backlog: int = 2048
    keep_alive_timeout: float = 5.0
    header_timeout: float = 10.0
    body_timeout: float = 60.0

    _TIMEOUTS = ("keep_alive_timeout", "header_timeout", "body_timeout")

    def __post_init__(self):
        if self.max_pending_bytes is None and _is_count(self.max_request_bytes):
            self.max_pending_bytes = 4 * self.max_request_bytes
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name in self._TIMEOUTS:
                if not _is_seconds(value):
                    raise InvalidArgument(
                        f"`{field.name}` must be a positive number of seconds; got {value!r}."
                    )
            elif not _is_count(value):
                raise InvalidArgument(f"`{field.name}` must be a positive integer; got {value!r}.")
        if self.max_pending_bytes < self.max_request_bytes:
            raise InvalidArgument(
                f"`max_pending_bytes` must be at least max_request_bytes={self.max_request_bytes} "
                f"(or None); got {self.max_pending_bytes}."
            )


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_seconds(value):
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0)


def clip(text, limit=60):
    """``repr`` of a string from a client, cut to about ``limit`` characters.

    Example:
        >>> clip("resnet20"), clip("x" * 100, limit=8)
        ("'resnet20'", "'xxxxxxx... (100 characters)")
    """
    shown = repr(text)
    return shown if len(shown) <= limit else f"{shown[:limit]}... ({len(text)} characters)"
