"""What an encoded image or a pixel input costs, checked from its header before it is decoded.

Encoded images (string inputs whose name ends in ``bytes``, like ``image_bytes``) must be JPEG,
PNG, GIF or BMP; their size in bytes, pixels and (for a GIF) frames are read without decoding,
every frame of a GIF counting, since TensorFlow's GIF decoder decodes them all. BMPs are
decoded with PIL and passed on as 24-bit RGB (``tf.io.decode_bmp`` reads 8-bit palette BMPs as
grey levels and refuses 1-, 4- and 16-bit ones). uint8 pixel inputs of rank 4 must have 1, 3 or
4 channels.

Example:
    >>> arrays = check_images({"image_bytes": encoded}, Limits())  # doctest: +SKIP
"""

import io
import struct

import numpy as np

from keras_resnet.serving.limits import ServingError

# What both PIL (header check) and tf.io.decode_image (the serving_bytes graph) read.
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "BMP")


def _gif_cost(data, limits):
    """(frames, pixels) that TensorFlow's GIF decoder spends on a GIF, from its block structure.

    giflib's DGifSlurp decodes every frame, even for ``decode_image(expand_animations=False)``,
    and TensorFlow then allocates a canvas as wide and tall as the largest frame. The blocks are
    walked without decompressing anything, stopping past ``limits.max_image_frames``.
    """
    if len(data) < 13:
        return 0, 0
    flags = data[10]
    position = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # global colour table
    frames = frame_pixels = width = height = 0
    while position < len(data):
        kind = data[position]
        if kind == 0x2C:  # image descriptor: left, top, width, height, flags
            if position + 10 > len(data):
                break
            w, h = struct.unpack_from("<HH", data, position + 5)
            flags = data[position + 9]
            position += 11 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # + LZW code size
            frames += 1
            frame_pixels += w * h
            width, height = max(width, w), max(height, h)
            if frames > limits.max_image_frames:
                break
        elif kind == 0x21:  # extension: introducer, label, then data sub-blocks
            position += 2
        else:  # the trailer, or a byte where giflib stops reading
            break
        while position < len(data) and data[position]:  # sub-blocks: size byte, then data
            position += data[position] + 1
        position += 1
    return frames, max(frame_pixels, width * height)


def _image_cost(encoded, where, limits):
    """(format, pixels) of one encoded image, read from its header; 4xx beyond ``limits``."""
    from PIL import Image

    if len(encoded) > limits.max_image_bytes:
        raise ServingError(
            413,
            f"{where} has {len(encoded)} bytes; the server's limit is "
            f"max_image_bytes={limits.max_image_bytes}.",
        )
    try:
        with Image.open(io.BytesIO(encoded), formats=IMAGE_FORMATS) as image:
            (width, height), image_format = image.size, image.format
    except Image.DecompressionBombError:
        raise ServingError(
            413, f"{where} has too many pixels; the server's limit is "
            f"max_image_pixels={limits.max_image_pixels}."
        ) from None
    except Exception:  # PIL raises many types for unreadable headers
        raise ServingError(
            400,
            f"{where} ({len(encoded)} bytes) is not a {', '.join(IMAGE_FORMATS[:-1])} or "
            f"{IMAGE_FORMATS[-1]} image.",
        ) from None
    pixels, size = width * height, f"{width}x{height} = {width * height} pixels"
    if image_format == "GIF":
        frames, pixels = _gif_cost(encoded, limits)
        if frames > limits.max_image_frames:
            raise ServingError(
                413, f"{where} is a GIF of more than {limits.max_image_frames} frames; the "
                f"server's limit is max_image_frames={limits.max_image_frames}."
            )
        size = f"a GIF of {frames} frame(s), {pixels} pixels to decode (every frame counts)"
    if pixels > limits.max_image_pixels:
        raise ServingError(
            413, f"{where} is {size}; the server's limit is "
            f"max_image_pixels={limits.max_image_pixels}."
        )
    return image_format, pixels


def _bmp_as_rgb(encoded, where):
    """A BMP decoded by PIL (palettes; 1-, 4-, 8-, 16-bit; RLE), re-encoded as 24-bit RGB.

    ``tf.io.decode_bmp`` reads the bytes of 8-bit palette BMPs as grey levels and refuses other
    depths; a 24-bit BMP it decodes exactly as PIL does.
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(encoded), formats=("BMP",)) as image:
            rgb = image.convert("RGB")
    except Exception:  # truncated pixel data, bad RLE, ...
        raise ServingError(400, f"{where} is a BMP whose pixels cannot be decoded.") from None
    buffer = io.BytesIO()
    rgb.save(buffer, format="BMP")
    return buffer.getvalue()


def _check_image_array(name, array, limits):
    """uint8 (batch, h, w, c) pixels: 1, 3 or 4 channels and at most max_image_pixels each."""
    _, height, width, channels = array.shape
    if channels not in (1, 3, 4):
        raise ServingError(
            400, f"Input {name!r} must have 1, 3 or 4 channels (last axis); got {channels}."
        )
    if height * width > limits.max_image_pixels:
        raise ServingError(
            413,
            f"Input {name!r} holds {height}x{width} = {height * width} pixel images; the server's "
            f"limit is max_image_pixels={limits.max_image_pixels}.",
        )


def check_images(arrays, limits):
    """Check every image input against ``limits``, then pass BMPs on as 24-bit RGB.

    Args:
        arrays: ``{input name: numpy array}``; object arrays of inputs whose name ends in
            ``bytes`` hold encoded images, uint8 arrays of rank 4 hold pixels.
        limits: the :class:`~keras_resnet.serving.limits.Limits` to enforce.

    Returns:
        ``arrays``, with BMP images re-encoded (see :func:`_bmp_as_rgb`).

    Raises:
        ServingError: 400 for an image that is none of :data:`IMAGE_FORMATS`, 413 over a limit.

    Example:
        >>> arrays = check_images({"image_bytes": encoded}, Limits())  # doctest: +SKIP
    """
    total, bmps = 0, []
    for name, array in arrays.items():
        if array.dtype == object and name.endswith("bytes"):
            for index, encoded in enumerate(array.reshape(-1)):
                where = f"Image {index} of input {name!r}"
                image_format, pixels = _image_cost(encoded, where, limits)
                total += pixels
                if image_format == "BMP":
                    bmps.append((name, index, where))
        elif array.dtype == np.uint8 and array.ndim == 4:
            _check_image_array(name, array, limits)
            total += array.shape[0] * array.shape[1] * array.shape[2]
    if total > limits.max_request_pixels:
        raise ServingError(
            413,
            f"The request's images hold {total} pixels in all; the server's limit is "
            f"max_request_pixels={limits.max_request_pixels}.",
        )
    for name, index, where in bmps:  # only now, once the whole request is within the limits
        flat = arrays[name].reshape(-1).copy()
        flat[index] = _bmp_as_rgb(flat[index], where)
        arrays[name] = flat.reshape(arrays[name].shape)
    return arrays
