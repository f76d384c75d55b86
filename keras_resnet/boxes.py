"""Boxes for detection, in ``keras.ops`` (every backend, inside a model or a loss): anchors,
the box coder, IoU and GIoU, the anchor matcher and the sigmoid focal loss, as torchvision's
RetinaNet has them (Lin et al. 2017, "Focal Loss for Dense Object Detection").

Boxes are ``(x1, y1, x2, y2)`` in pixels of the model's input, torchvision's format.

- Anchors (§4, "Anchors"): at each level, three sizes ``2^0, 2^(1/3), 2^(2/3)`` times a base
  of 4 times the level's reduction (32 at P3's 8, ... 512 at P7's 128: torchvision's
  ``_default_anchorgen``) and three aspect ratios (height/width 0.5, 1, 2), centred on the
  top-left corner of each cell, the cells ``image size // grid size`` apart
  (torchvision's ``AnchorGenerator``).
- The coder (torchvision's ``BoxCoder`` with weights 1): ``dx = (cx - cx_a) / w_a``,
  ``dw = log(w / w_a)``; decoding clips ``dw, dh`` at ``log(1000 / 16)``.
- The matcher: an anchor takes the ground-truth box it overlaps most when the IoU is at least
  0.5, is background below 0.4 and ignored between; each box also takes the anchors that
  overlap it most (low-quality matches).

Example:
    >>> cell_anchors((32,), (1.0,)).tolist()
    [[-16.0, -16.0, 16.0, 16.0]]
"""

import math

import numpy as np
from keras import ops

from keras_resnet.errors import InvalidArgument

ASPECT_RATIOS = (0.5, 1.0, 2.0)  # height / width
OCTAVE_SCALES = (0.0, 1.0 / 3.0, 2.0 / 3.0)  # sizes 2^s times the base (§4: three scales)
BASE_PER_REDUCTION = 4  # an anchor's base size is 4x its level's reduction: 32 at stride 8
DECODE_CLIP = math.log(1000.0 / 16)  # torchvision's bbox_xform_clip
BACKGROUND, IGNORED = -1, -2  # matcher outputs below the thresholds, and between them


def anchor_sizes(reductions):
    """Anchor sizes per level: ``int(base * 2^s)`` for the three octave scales, base
    4 x reduction (torchvision's sizes for reductions 8 .. 128).

    Example:
        >>> anchor_sizes((8, 16))
        ((32, 40, 50), (64, 80, 101))
    """
    return tuple(tuple(int(BASE_PER_REDUCTION * r * 2 ** s) for s in OCTAVE_SCALES)
                 for r in reductions)


def cell_anchors(sizes, ratios=ASPECT_RATIOS):
    """The anchors of one cell, centred on 0: ``(len(ratios) * len(sizes), 4)``, ratios
    outer, sizes inner, rounded half to even (torchvision's ``generate_anchors``).

    Example:
        >>> cell_anchors((32,), (0.5, 2.0))[:, 2].tolist()
        [23.0, 11.0]
    """
    scales = np.asarray(sizes, dtype=np.float32)
    h_ratios = np.sqrt(np.asarray(ratios, dtype=np.float32))
    widths = ((1 / h_ratios)[:, None] * scales[None, :]).reshape(-1)
    heights = (h_ratios[:, None] * scales[None, :]).reshape(-1)
    return np.round(np.stack([-widths, -heights, widths, heights], axis=1) / 2).astype(np.float32)


def grid_anchors(cell, grid_height, grid_width, stride_y, stride_x):
    """The anchors of a ``grid_height x grid_width`` level: ``(h * w * A, 4)`` in row-major
    cell order, the ``A`` anchors of ``cell`` at each (the order of the head's outputs).

    Example:
        >>> ops.convert_to_numpy(grid_anchors(np.zeros((1, 4)), 1, 2, 8, 8)).tolist()
        [[0.0, 0.0, 0.0, 0.0], [8.0, 0.0, 8.0, 0.0]]
    """
    shifts_x = ops.cast(ops.arange(grid_width) * stride_x, "float32")
    shifts_y = ops.cast(ops.arange(grid_height) * stride_y, "float32")
    y, x = ops.meshgrid(shifts_y, shifts_x, indexing="ij")
    x, y = ops.reshape(x, (-1,)), ops.reshape(y, (-1,))
    shifts = ops.stack([x, y, x, y], axis=1)
    cell = ops.convert_to_tensor(cell, "float32")
    return ops.reshape(shifts[:, None, :] + cell[None], (-1, 4))


def _centres(boxes):
    widths = boxes[..., 2] - boxes[..., 0]
    heights = boxes[..., 3] - boxes[..., 1]
    return boxes[..., 0] + 0.5 * widths, boxes[..., 1] + 0.5 * heights, widths, heights


def encode(boxes, anchors):
    """Regression targets ``(dx, dy, dw, dh)`` of ``boxes`` against ``anchors`` (same shape).

    Example:
        >>> ops.convert_to_numpy(encode(np.array([[0., 0, 4, 4]]), np.array([[0., 0, 2, 2]])))
        array([[0.5      , 0.5      , 0.6931472, 0.6931472]], dtype=float32)
    """
    boxes, anchors = ops.cast(boxes, "float32"), ops.cast(anchors, "float32")
    cx, cy, w, h = _centres(boxes)
    cx_a, cy_a, w_a, h_a = _centres(anchors)
    return ops.stack([(cx - cx_a) / w_a, (cy - cy_a) / h_a, ops.log(w / w_a), ops.log(h / h_a)],
                     axis=-1)


def decode(deltas, anchors):
    """Boxes from regression ``deltas`` against ``anchors``: :func:`encode`'s inverse, with
    ``dw, dh`` clipped at ``log(1000 / 16)``.

    Example:
        >>> ops.convert_to_numpy(decode(np.zeros((1, 4)), np.array([[0., 0, 2, 2]]))).tolist()
        [[0.0, 0.0, 2.0, 2.0]]
    """
    deltas, anchors = ops.cast(deltas, "float32"), ops.cast(anchors, "float32")
    cx_a, cy_a, w_a, h_a = _centres(anchors)
    cx = deltas[..., 0] * w_a + cx_a
    cy = deltas[..., 1] * h_a + cy_a
    half_w = 0.5 * ops.exp(ops.minimum(deltas[..., 2], DECODE_CLIP)) * w_a
    half_h = 0.5 * ops.exp(ops.minimum(deltas[..., 3], DECODE_CLIP)) * h_a
    return ops.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=-1)


def area(boxes):
    """``(x2 - x1) * (y2 - y1)`` of each box."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_iou(boxes1, boxes2):
    """IoU of every pair: ``(..., M, 4)`` and ``(..., N, 4)`` give ``(..., M, N)``
    (torchvision's ``box_iou``; a pair of empty boxes gives NaN there and 0 here).

    Example:
        >>> float(box_iou(np.array([[0., 0, 2, 2]]), np.array([[1., 0, 3, 2]]))[0, 0])
        0.3333333432674408
    """
    boxes1, boxes2 = ops.cast(boxes1, "float32"), ops.cast(boxes2, "float32")
    a, b = boxes1[..., :, None, :], boxes2[..., None, :, :]
    width = ops.maximum(ops.minimum(a[..., 2], b[..., 2]) - ops.maximum(a[..., 0], b[..., 0]), 0.0)
    height = ops.maximum(ops.minimum(a[..., 3], b[..., 3]) - ops.maximum(a[..., 1], b[..., 1]), 0.0)
    intersection = width * height
    union = area(boxes1)[..., :, None] + area(boxes2)[..., None, :] - intersection
    return ops.divide_no_nan(intersection, union)


def generalized_iou_loss(boxes1, boxes2, eps=1e-7):
    """``1 - GIoU`` of each pair of boxes (same shapes; Rezatofighi et al. 2019), as
    torchvision's ``generalized_box_iou_loss``.

    Example:
        >>> float(generalized_iou_loss(np.array([0., 0, 1, 1]), np.array([2., 0, 3, 1])))
        1.3333333730697632
    """
    boxes1, boxes2 = ops.cast(boxes1, "float32"), ops.cast(boxes2, "float32")
    width = ops.maximum(ops.minimum(boxes1[..., 2], boxes2[..., 2])
                        - ops.maximum(boxes1[..., 0], boxes2[..., 0]), 0.0)
    height = ops.maximum(ops.minimum(boxes1[..., 3], boxes2[..., 3])
                         - ops.maximum(boxes1[..., 1], boxes2[..., 1]), 0.0)
    intersection = width * height
    union = area(boxes1) + area(boxes2) - intersection
    iou = intersection / (union + eps)
    hull = ((ops.maximum(boxes1[..., 2], boxes2[..., 2]) - ops.minimum(boxes1[..., 0], boxes2[..., 0]))
            * (ops.maximum(boxes1[..., 3], boxes2[..., 3]) - ops.minimum(boxes1[..., 1], boxes2[..., 1])))
    return 1 - (iou - (hull - union) / (hull + eps))


def match_anchors(iou, valid, high=0.5, low=0.4, low_quality=True):
    """Each anchor's ground-truth index, :data:`BACKGROUND` (-1) or :data:`IGNORED` (-2),
    from ``iou`` ``(batch, M boxes, N anchors)``; ``valid`` ``(batch, M)`` marks real boxes
    (the rest is padding). torchvision's ``Matcher(0.5, 0.4, allow_low_quality_matches=True)``.

    Example:
        >>> iou = np.array([[[0.1, 0.45, 0.3]]], "float32")
        >>> ops.convert_to_numpy(match_anchors(iou, np.array([[True]]))).tolist()
        [[-1, 0, -1]]
    """
    if not 0 <= low <= high <= 1:
        raise InvalidArgument(f"Matcher thresholds must satisfy 0 <= low <= high <= 1; got "
                              f"low={low!r}, high={high!r}.")
    valid = ops.cast(valid, "bool")
    iou = ops.where(valid[..., None], iou, -1.0)
    best = ops.max(iou, axis=1)  # (batch, N)
    matches = ops.cast(ops.argmax(iou, axis=1), "int32")
    result = ops.where(best < low, BACKGROUND, ops.where(best < high, IGNORED, matches))
    if low_quality:
        # For each box, the anchors with its highest IoU (ties included) keep their best box.
        highest = ops.max(iou, axis=2, keepdims=True)  # (batch, M, 1)
        is_highest = ops.any((iou == highest) & valid[..., None], axis=1)
        result = ops.where(is_highest, matches, result)
    return result


def sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2.0):
    """The focal loss of each logit (§3.2, with the alpha weighting of §3.2's last form),
    as torchvision's ``sigmoid_focal_loss(..., reduction="none")``.

    Example:
        >>> round(float(sigmoid_focal_loss(np.array([0.0]), np.array([1.0]))[0]), 6)
        0.043322
    """
    logits, targets = ops.cast(logits, "float32"), ops.cast(targets, "float32")
    probabilities = ops.sigmoid(logits)
    # binary cross-entropy on logits, in its stable form
    cross_entropy = (ops.maximum(logits, 0.0) - logits * targets
                     + ops.log1p(ops.exp(-ops.abs(logits))))
    p_t = probabilities * targets + (1 - probabilities) * (1 - targets)
    loss = cross_entropy * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss


def clip_to_image(boxes, height, width):
    """``boxes`` with x clipped to ``[0, width]`` and y to ``[0, height]``."""
    x = ops.clip(boxes[..., 0::2], 0.0, ops.cast(width, "float32"))
    y = ops.clip(boxes[..., 1::2], 0.0, ops.cast(height, "float32"))
    return ops.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], axis=-1)


__all__ = ["anchor_sizes", "area", "box_iou", "cell_anchors", "clip_to_image", "decode",
           "encode", "generalized_iou_loss", "grid_anchors", "match_anchors",
           "sigmoid_focal_loss"]
