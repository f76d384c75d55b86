"""RetinaNet's training loss (Lin et al. 2017; torchvision's ``RetinaNet.compute_loss``), a
Keras loss over a detector's packed raw outputs and padded ground truth.

Per image: anchors are matched to the ground-truth boxes (:func:`keras_resnet.boxes.match_anchors`:
IoU >= 0.5 foreground, < 0.4 background, between ignored, plus each box's best anchors); the
classification loss is the sigmoid focal loss (alpha 0.25, gamma 2) summed over every class of
every anchor that is not ignored, the box loss L1 on the encoded deltas (version 1) or
``1 - GIoU`` of the decoded boxes (version 2) summed over the foreground anchors, each divided
by the number of foreground anchors (at least 1). The loss of a batch is the mean over its
images of their two losses' sum. An image without boxes has only background anchors: its
classification loss pushes every score down, its box loss is 0.

Inputs:
    y_true: ``(batch, M, 5)``: ``x1, y1, x2, y2, class`` of up to M boxes per image in input
        pixels; rows whose class is negative are padding (:func:`pack_targets`).
    y_pred: ``(batch, N, K + 8)``: class logits, box deltas and anchors of every anchor
        (a detector's ``training_model``).

Example:
    >>> loss = RetinaNetLoss(classes=2)
    >>> y_true = pack_targets(np.array([[[0., 0, 8, 8]]]), np.array([[1]]))
    >>> anchors = np.array([[[0., 0, 8, 8], [20, 20, 28, 28]]], "float32")
    >>> y_pred = np.concatenate([np.zeros((1, 2, 2)), np.zeros((1, 2, 4)), anchors], -1)
    >>> round(float(loss(y_true, y_pred)), 4)
    0.4332
"""

import keras
from keras import ops

from keras_resnet import boxes
from keras_resnet.errors import InvalidArgument, check_choice, check_positive_int

BOX_LOSSES = ("l1", "giou")
FOCAL_ALPHA, FOCAL_GAMMA = 0.25, 2.0  # §3.2 / §5.1: the values RetinaNet trains with
FOREGROUND_IOU, BACKGROUND_IOU = 0.5, 0.4  # §4, "Anchors"


def pack_targets(target_boxes, target_classes):
    """``(batch, M, 5)`` float32 ground truth from boxes ``(batch, M, 4)`` and classes
    ``(batch, M)`` (negative: padding): what :class:`RetinaNetLoss` takes as ``y_true``.

    Example:
        >>> tuple(pack_targets(np.zeros((1, 2, 4)), np.array([[3, -1]])).shape)
        (1, 2, 5)
    """
    classes = ops.cast(target_classes, "float32")[..., None]
    return ops.concatenate([ops.cast(target_boxes, "float32"), classes], axis=-1)


def unpack_outputs(y_pred, classes):
    """``(class_logits, box_deltas, anchors)`` from a packed ``(batch, N, K + 8)``."""
    anchors = ops.stop_gradient(y_pred[..., classes + 4:])  # data, not a prediction
    return y_pred[..., :classes], y_pred[..., classes:classes + 4], anchors


@keras.saving.register_keras_serializable(package="keras_resnet")
class RetinaNetLoss(keras.losses.Loss):
    """RetinaNet's focal + box loss (module docstring).

    Args:
        classes: ``K``, the detector's classes.
        box_loss: "l1" (torchvision's ``retinanet_resnet50_fpn``) or "giou" (``_v2``).
        alpha, gamma: the focal loss's (0.25, 2).
        part: "total", or "classification" / "box" alone (to watch them as metrics).

    Example:
        >>> RetinaNetLoss(80, box_loss="giou").box_loss
        'giou'
    """

    def __init__(self, classes, box_loss="l1", alpha=FOCAL_ALPHA, gamma=FOCAL_GAMMA,
                 part="total", name="retinanet_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        check_positive_int("classes", classes)
        check_choice("box_loss", box_loss, BOX_LOSSES)
        check_choice("part", part, ("total", "classification", "box"))
        if not 0 <= alpha <= 1 or gamma < 0:
            raise InvalidArgument(f"`alpha` must be in [0, 1] and `gamma` >= 0; got "
                                  f"alpha={alpha!r}, gamma={gamma!r}.")
        self.classes, self.box_loss, self.part = int(classes), box_loss, part
        self.alpha, self.gamma = float(alpha), float(gamma)

    def call(self, y_true, y_pred):
        logits, deltas, anchors = unpack_outputs(ops.cast(y_pred, "float32"), self.classes)
        y_true = ops.cast(y_true, "float32")
        target_boxes, target_classes = y_true[..., :4], ops.cast(y_true[..., 4], "int32")
        valid = target_classes >= 0
        matches = boxes.match_anchors(boxes.box_iou(target_boxes, anchors), valid,
                                      FOREGROUND_IOU, BACKGROUND_IOU)
        foreground = matches >= 0
        count = ops.maximum(ops.sum(ops.cast(foreground, "float32"), axis=1), 1.0)
        index = ops.maximum(matches, 0)
        matched_boxes = ops.take_along_axis(target_boxes, index[..., None], axis=1)
        matched_classes = ops.take_along_axis(target_classes, index, axis=1)
        one_hot = ops.one_hot(matched_classes, self.classes) * ops.cast(
            foreground, "float32")[..., None]
        focal = boxes.sigmoid_focal_loss(logits, one_hot, self.alpha, self.gamma)
        kept = ops.cast(matches != boxes.IGNORED, "float32")[..., None]
        classification = ops.sum(focal * kept, axis=(1, 2)) / count
        if self.part == "classification":
            return classification
        box = ops.sum(self._box_terms(deltas, anchors, matched_boxes)
                      * ops.cast(foreground, "float32"), axis=1) / count
        return box if self.part == "box" else classification + box

    def _box_terms(self, deltas, anchors, matched_boxes):
        if self.box_loss == "l1":
            # Padding and background rows are masked out by the caller; their anchors and
            # (zero-size) boxes may give infinite targets, so replace them first.
            targets = boxes.encode(matched_boxes, anchors)
            difference = ops.abs(deltas - ops.where(ops.isfinite(targets), targets, 0.0))
            return ops.sum(difference, axis=-1)
        return boxes.generalized_iou_loss(boxes.decode(deltas, anchors), matched_boxes)

    def get_config(self):
        return {**super().get_config(), "classes": self.classes, "box_loss": self.box_loss,
                "alpha": self.alpha, "gamma": self.gamma, "part": self.part}
