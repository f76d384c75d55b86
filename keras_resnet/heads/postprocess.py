"""From RetinaNet's raw outputs to detections, in ``keras.ops`` with fixed shapes, so the
same graph runs in Keras, a SavedModel, TFLite, ONNX and OpenVINO (torchvision's
``RetinaNet.postprocess_detections``).

Per level: sigmoid scores of every (anchor, class), those above ``score_threshold``, the best
``topk_candidates`` of them, their boxes decoded and clipped to the image. Then over all
levels, class-aware non-maximum suppression (greedy: the best remaining detection is kept
and every other of its class overlapping it by more than ``nms_threshold`` IoU is dropped;
torchvision's ``batched_nms``), at most ``max_detections`` kept, best first.

Outputs are padded to ``max_detections``: ``boxes`` ``(batch, D, 4)`` in input pixels,
``scores`` ``(batch, D)``, ``classes`` ``(batch, D)`` int32 and ``num_detections``
``(batch,)``; padding rows have boxes and scores 0 and class -1.

Example:
    >>> kept = nms(np.array([[[0., 0, 10, 10], [1., 0, 11, 10]]]), np.array([[0.9, 0.8]]),
    ...            np.array([[0, 0]]), 0.5, 2)
    >>> ops.convert_to_numpy(kept[1]).astype(float).round(2).tolist()  # the second box: dropped
    [[0.9, 0.0]]
"""

import keras
from keras import ops

from keras_resnet import boxes
from keras_resnet.errors import InvalidArgument, check_fraction, check_positive_int

# torchvision's RetinaNet defaults.
SCORE_THRESHOLD = 0.05
TOPK_CANDIDATES = 1000
NMS_THRESHOLD = 0.5
MAX_DETECTIONS = 300
OUTPUTS = ("boxes", "scores", "classes", "num_detections")
_NONE = -1.0  # the score of a candidate that is not one (scores are in [0, 1])


def level_candidates(logits, deltas, anchors, score_threshold, topk):
    """The best ``topk`` (anchor, class) pairs of one level, in no particular order:
    ``(boxes, scores, classes, pairs)`` of shapes ``(batch, topk, 4)``, ``(batch, topk)``,
    ``(batch, topk)``, ``(batch, topk)``; ``pairs`` are their indices among the level's
    (anchor, class) pairs, the order of ties; pairs at or below ``score_threshold``, and the
    padding of a level with fewer pairs, score -1.

    Unsorted: OpenVINO's CPU sorts a top-k by value about 500 times slower than it selects
    one (1,000 of 93,160: 384 ms against 0.8 ms), and nothing after needs the order.

    Example:
        >>> b, s, c, pairs = level_candidates(np.zeros((1, 2, 3)), np.zeros((1, 2, 4)),
        ...                                   np.ones((1, 2, 4)), 0.05, 4)
        >>> ops.convert_to_numpy(s).round(2).tolist()
        [[0.5, 0.5, 0.5, 0.5]]
    """
    batch, classes = ops.shape(logits)[0], ops.shape(logits)[2]
    scores = ops.reshape(ops.sigmoid(ops.cast(logits, "float32")), (batch, -1))
    scores = ops.where(scores > score_threshold, scores, _NONE)
    # A level with fewer than topk pairs: pad, so that top_k's k is fixed.
    scores = ops.concatenate([scores, ops.full((batch, topk), _NONE)], axis=1)
    top_scores, pairs = ops.top_k(scores, topk, sorted=False)
    count = ops.shape(logits)[1] * classes
    index = ops.minimum(pairs, count - 1)
    anchor_index = index // classes
    picked_deltas = ops.take_along_axis(ops.cast(deltas, "float32"), anchor_index[..., None], axis=1)
    picked_anchors = ops.take_along_axis(ops.cast(anchors, "float32"), anchor_index[..., None], axis=1)
    return (boxes.decode(picked_deltas, picked_anchors), top_scores,
            ops.cast(index % classes, "int32"), ops.cast(pairs, "int32"))


def nms(candidate_boxes, scores, classes, iou_threshold, max_detections, order=None):
    """Class-aware greedy non-maximum suppression with fixed shapes: ``(boxes, scores,
    classes, num_detections)`` of at most ``max_detections`` per image, best first, padded
    (boxes and scores 0, class -1). A candidate with a negative score is none.

    Args:
        candidate_boxes: ``(batch, C, 4)``; scores: ``(batch, C)``; classes: ``(batch, C)``.
        iou_threshold: a candidate overlapping a kept one of its class by more than this
            is dropped.
        max_detections: ``D``, the most kept per image.
        order: ``(batch, C)`` distinct int32 keys: of tied scores the lowest key is kept
            first; default: the candidates' positions.

    Example:
        >>> kept = nms(np.array([[[0., 0, 1, 1]]]), np.array([[0.5]]), np.array([[2]]), 0.5, 3)
        >>> ops.convert_to_numpy(kept[2]).tolist()
        [[2, -1, -1]]
    """
    candidate_boxes = ops.cast(candidate_boxes, "float32")
    scores, classes = ops.cast(scores, "float32"), ops.cast(classes, "int32")
    batch = ops.shape(scores)[0]
    positions = ops.arange(ops.shape(scores)[1], dtype="int32")[None, :]
    order = positions if order is None else ops.cast(order, "int32")
    last = ops.max(order) + 1

    def more(index, remaining, *kept):  # stop early once no image has a candidate left
        return (index < max_detections) & ops.any(remaining >= 0)

    def keep_best(index, remaining, kept_boxes, kept_scores, kept_classes):
        # The best remaining candidate, of ties the first in `order`. Not ops.argmax of the
        # scores: on TensorFlow it checks float signs with bit operations that TFLite, ONNX and
        # OpenVINO do not convert (its int32 form has none).
        score = ops.max(remaining, axis=1)
        first = ops.min(ops.where(remaining == score[:, None], order, last), axis=1)
        best = ops.cast(ops.argmax(ops.cast(order == first[:, None], "int32"), axis=1), "int32")
        box = ops.take_along_axis(candidate_boxes, best[:, None, None], axis=1)  # (batch, 1, 4)
        label = ops.take_along_axis(classes, best[:, None], axis=1)[:, 0]
        found = score >= 0
        overlap = boxes.box_iou(box, candidate_boxes)[:, 0]  # (batch, C)
        dropped = ((overlap > iou_threshold) & (classes == label[:, None])) | (
            positions == best[:, None])
        remaining = ops.where(dropped & found[:, None], _NONE, remaining)
        row = ops.one_hot(index, max_detections)[None, :] * ops.cast(found, "float32")[:, None]
        kept_boxes = kept_boxes + row[..., None] * box
        kept_scores = kept_scores + row * score[:, None]
        kept_classes = kept_classes + ops.cast(row, "int32") * (label[:, None] + 1)
        return index + 1, remaining, kept_boxes, kept_scores, kept_classes

    initial = (ops.convert_to_tensor(0, "int32"), scores,
               ops.zeros((batch, max_detections, 4)), ops.zeros((batch, max_detections)),
               ops.zeros((batch, max_detections), "int32"))
    _, _, kept_boxes, kept_scores, kept_classes = ops.while_loop(more, keep_best, initial)
    count = ops.sum(ops.cast(kept_classes > 0, "int32"), axis=1)
    return kept_boxes, kept_scores, kept_classes - 1, count


@keras.saving.register_keras_serializable(package="keras_resnet")
class DetectionPostprocess(keras.layers.Layer):
    """RetinaNet's detections from its raw outputs per level (module docstring).

    Called on ``[images, class_logits, box_deltas, anchors]``, the last three lists with one
    tensor per level; returns ``{"boxes", "scores", "classes", "num_detections"}``.

    Args:
        score_threshold: per-level score threshold (0.05).
        topk_candidates: best pairs kept per level before NMS (1000).
        nms_threshold: IoU above which NMS drops a detection of the same class (0.5).
        max_detections: detections per image (300).

    Example:
        >>> DetectionPostprocess(max_detections=10).max_detections
        10
    """

    def __init__(self, score_threshold=SCORE_THRESHOLD, topk_candidates=TOPK_CANDIDATES,
                 nms_threshold=NMS_THRESHOLD, max_detections=MAX_DETECTIONS, **kwargs):
        super().__init__(**kwargs)
        check_fraction("score_threshold", score_threshold)
        check_fraction("nms_threshold", nms_threshold)
        check_positive_int("topk_candidates", topk_candidates)
        check_positive_int("max_detections", max_detections)
        self.score_threshold = float(score_threshold)
        self.topk_candidates = int(topk_candidates)
        self.nms_threshold = float(nms_threshold)
        self.max_detections = int(max_detections)

    def call(self, inputs):
        images, class_logits, box_deltas, anchors = inputs
        if not len(class_logits) == len(box_deltas) == len(anchors):
            raise InvalidArgument("DetectionPostprocess needs one class, box and anchor tensor "
                                  f"per level; got {len(class_logits)}, {len(box_deltas)} and "
                                  f"{len(anchors)}.")
        height, width = ops.shape(images)[1], ops.shape(images)[2]
        parts = [level_candidates(*level, self.score_threshold, self.topk_candidates)
                 for level in zip(class_logits, box_deltas, anchors)]
        # Ties go to the lower level, then the lower (anchor, class) pair: torchvision's order.
        offsets, order = 0, []
        for logits, part in zip(class_logits, parts):
            order.append(part[3] + offsets)
            offsets = offsets + ops.shape(logits)[1] * ops.shape(logits)[2] + self.topk_candidates
        candidate_boxes = boxes.clip_to_image(ops.concatenate([p[0] for p in parts], axis=1),
                                              height, width)
        scores = ops.concatenate([p[1] for p in parts], axis=1)
        classes = ops.concatenate([p[2] for p in parts], axis=1)
        result = nms(candidate_boxes, scores, classes, self.nms_threshold, self.max_detections,
                     ops.concatenate(order, axis=1))
        return dict(zip(OUTPUTS, result))

    def compute_output_spec(self, inputs):
        batch = inputs[0].shape[0]
        detections = self.max_detections
        return {"boxes": keras.KerasTensor((batch, detections, 4), "float32"),
                "scores": keras.KerasTensor((batch, detections), "float32"),
                "classes": keras.KerasTensor((batch, detections), "int32"),
                "num_detections": keras.KerasTensor((batch,), "int32")}

    def get_config(self):
        return {**super().get_config(), "score_threshold": self.score_threshold,
                "topk_candidates": self.topk_candidates, "nms_threshold": self.nms_threshold,
                "max_detections": self.max_detections}


__all__ = ["DetectionPostprocess", "level_candidates", "nms"]
