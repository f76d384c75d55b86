"""COCO box mean average precision: pycocotools' ``COCOeval`` (iouType "bbox") in numpy.

The twelve figures ``COCOeval.summarize()`` prints, under torchmetrics' names, and the average
precision of each class. The rules are COCOeval's (pycocotools' ``cocoeval.py``): IoU thresholds
.50:.05:.95, 101 recall points, at most 1, 10 and 100 detections per image, the area ranges
all / small / medium / large, crowd regions that a detection may match without being counted
and that are never missed, greedy matching in score order. Numpy only: it runs beside any
Keras backend, and on a machine without pycocotools.

Example:
    >>> truth = [{"boxes": [[10, 10, 50, 50]], "classes": [0]}]
    >>> found = [{"boxes": [[10, 10, 50, 50]], "scores": [0.9], "classes": [0]}]
    >>> round(coco_map(found, truth)["map"], 6)
    1.0
"""

import numpy as np

from keras_resnet.errors import InvalidArgument, InvalidType, check_positive_int

# COCOeval's Params.setDetParams: linspace, as there, so that .50 and .75 are the same floats.
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
MAX_DETECTIONS = (1, 10, 100)
# Areas in square pixels; both bounds belong to the range (an area of 32**2 is small and medium).
AREA_RANGES = ((0.0, 1e5**2), (0.0, 32.0**2), (32.0**2, 96.0**2), (96.0**2, 1e5**2))
AREA_NAMES = ("all", "small", "medium", "large")
STAT_NAMES = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large",
              "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large")
_GROUND_TRUTH_KEYS = ("boxes", "classes", "iscrowd", "area")
_DETECTION_KEYS = ("boxes", "scores", "classes")


def box_iou(boxes_a, boxes_b, crowd=None):
    """Intersection over union of every box of ``boxes_a`` with every box of ``boxes_b``.

    Computed as pycocotools' ``maskUtils.iou`` does for boxes (from corner, width and height,
    in float64), so a pair exactly at a threshold falls on the same side as there.

    Args:
        boxes_a: (n, 4) boxes ``x1, y1, x2, y2`` (detections).
        boxes_b: (m, 4) boxes ``x1, y1, x2, y2`` (ground truth).
        crowd: optional (m,) flags; where set, the overlap is the intersection over the area
            of the box of ``boxes_a`` (COCO's rule for crowd regions).

    Returns:
        (n, m) float64 overlaps in [0, 1].

    Example:
        >>> box_iou(np.array([[0, 0, 2, 2]]), np.array([[1, 0, 3, 2]])).round(4).tolist()
        [[0.3333]]
    """
    a = np.asarray(boxes_a, np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, np.float64).reshape(-1, 4)
    a_size, b_size = a[:, 2:] - a[:, :2], b[:, 2:] - b[:, :2]
    a_end, b_end = a[:, :2] + a_size, b[:, :2] + b_size
    sides = (np.minimum(a_end[:, None], b_end[None]) - np.maximum(a[:, None, :2], b[None, :, :2]))
    overlapping = np.all(sides > 0, axis=-1)
    intersection = np.where(overlapping, sides[..., 0] * sides[..., 1], 0.0)
    a_area = (a_size[:, 0] * a_size[:, 1])[:, None]
    union = a_area + (b_size[:, 0] * b_size[:, 1])[None] - intersection
    if crowd is not None:
        union = np.where(np.asarray(crowd, bool)[None], a_area, union)
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=overlapping)


def _array(value, argument, dtype, columns=None):
    """``value`` as a numpy array of ``dtype``: (n,) or, with ``columns``, (n, columns)."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidArgument(f"`{argument}` must be numbers; got {value!r}.") from None
    if array.size == 0:
        return np.zeros((0,) if columns is None else (0, columns), dtype)
    shape = "(n,)" if columns is None else f"(n, {columns})"
    if array.ndim != (1 if columns is None else 2) or (columns and array.shape[1] != columns):
        raise InvalidArgument(f"`{argument}` must have shape {shape}; got {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise InvalidArgument(f"`{argument}` must be finite; got {value!r}.")
    if dtype is not np.float64 and np.any(array != np.round(array)):
        raise InvalidArgument(f"`{argument}` must be integers; got {value!r}.")
    return array.astype(dtype)


def _checked_boxes(value, argument):
    """(n, 4) float64 boxes ``x1, y1, x2, y2`` with ``x2 >= x1`` and ``y2 >= y1``."""
    boxes = _array(value, argument, np.float64, columns=4)
    wrong = np.flatnonzero(np.any(boxes[:, 2:] < boxes[:, :2], axis=1))
    if wrong.size:
        raise InvalidArgument(f"`{argument}` must be x1, y1, x2, y2 with x2 >= x1 and y2 >= y1; "
                              f"box {wrong[0]} is {boxes[wrong[0]].tolist()}.")
    return boxes


def _checked_entry(entry, argument, keys, class_count):
    """One image's dict of arrays, each checked (shape, values, lengths)."""
    if not isinstance(entry, dict):
        raise InvalidType(f"`{argument}` must be a dict with keys {', '.join(keys)}; "
                          f"got {type(entry).__name__}.")
    unknown = sorted(set(entry) - set(keys))
    required = [key for key in keys if key not in ("iscrowd", "area")]
    missing = [key for key in required if key not in entry]
    if unknown or missing:
        raise InvalidArgument(f"`{argument}` must have the keys {', '.join(required)} (ground "
                              f"truth may add iscrowd, area); got {sorted(entry)}.")
    boxes = _checked_boxes(entry["boxes"], f"{argument}['boxes']")
    classes = _array(entry["classes"], f"{argument}['classes']", np.int64)
    if np.any(classes < 0) or (class_count is not None and np.any(classes >= class_count)):
        raise InvalidArgument(f"`{argument}['classes']` must be in [0, {class_count or 'inf'}); "
                              f"got {classes.tolist()}.")
    checked = {"boxes": boxes, "classes": classes}
    for key in set(entry) - {"boxes", "classes"}:
        checked[key] = _array(entry[key], f"{argument}[{key!r}]", np.float64)
    for key, array in checked.items():
        if len(array) != len(boxes):
            raise InvalidArgument(f"`{argument}[{key!r}]` must have one entry per box "
                                  f"({len(boxes)}); got {len(array)}.")
    if "area" in checked and np.any(checked["area"] < 0):
        raise InvalidArgument(f"`{argument}['area']` must be >= 0; got {checked['area'].tolist()}.")
    return checked


def _checked_inputs(detections, ground_truths, class_count):
    """Both lists checked: the same length, one dict of arrays per image."""
    if class_count is not None:
        check_positive_int("class_count", class_count)
    for argument, value in (("detections", detections), ("ground_truths", ground_truths)):
        if not isinstance(value, (list, tuple)):
            raise InvalidType(f"`{argument}` must be a list of dicts, one per image; "
                              f"got {type(value).__name__}.")
    if len(detections) != len(ground_truths):
        raise InvalidArgument(f"`detections` and `ground_truths` must have one entry per image "
                              f"each; got {len(detections)} and {len(ground_truths)}.")
    found = [_checked_entry(entry, f"detections[{index}]", _DETECTION_KEYS, class_count)
             for index, entry in enumerate(detections)]
    truth = [_checked_entry(entry, f"ground_truths[{index}]", _GROUND_TRUTH_KEYS, class_count)
             for index, entry in enumerate(ground_truths)]
    return found, truth


def _box_area(boxes):
    """Width times height, as pycocotools' loadRes computes a detection's area."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _outside(area, ranges):
    """(A, n): whether each area lies outside each area range (bounds included in the range)."""
    return (area[None] < ranges[:, :1]) | (area[None] > ranges[:, 1:])


def _match(overlaps, gt_ignore, crowd):
    """COCOeval's greedy matching, every area range and IoU threshold at once (one lane each).

    Detections (rows of ``overlaps``, highest score first) take, in turn, the free ground truth
    of highest overlap at or above the lane's threshold, the last one on ties, preferring one
    that is not ignored; a crowd region stays free for the detections after it.

    Returns:
        (lanes, D) index of the matched ground truth, -1 where none.
    """
    # pycocotools' COCOeval.evaluateImg: a detection keeps the ground truth of overlap >= the
    # best so far (so the last of equal ones), stops at the ignored ones once it holds a regular
    # one, and never takes a matched box that is not a crowd.
    lanes_ignore = np.repeat(gt_ignore, len(IOU_THRESHOLDS), axis=0)  # (A * T, G)
    thresholds = np.tile(IOU_THRESHOLDS, len(gt_ignore))[:, None]
    taken = np.zeros(lanes_ignore.shape, bool)
    matched = np.full((len(lanes_ignore), len(overlaps)), -1)
    last_column = overlaps.shape[1] - 1
    for index, row in enumerate(overlaps):
        allowed = (row >= thresholds) & (~taken | crowd)
        regular = allowed & ~lanes_ignore
        allowed = np.where(regular.any(axis=1, keepdims=True), regular, allowed)
        # the last ground truth of highest overlap among the allowed ones
        best = last_column - np.argmax(np.where(allowed, row, -1.0)[:, ::-1], axis=1)
        lanes = np.flatnonzero(allowed.any(axis=1))
        matched[lanes, index] = best[lanes]
        taken[lanes, best[lanes]] = True
    return matched


def _evaluate_image_class(found, truth, ranges):
    """One image and class: scores, (A, T, D) true-positive and ignore flags, (A, G) ignores.

    Args:
        found: dict ``boxes, scores`` of the class's detections in the image.
        truth: dict ``boxes, iscrowd, area`` of the class's ground truth in the image.
        ranges: (A, 2) area ranges.
    """
    order = np.argsort(-found["scores"], kind="stable")[: MAX_DETECTIONS[-1]]
    boxes, scores = found["boxes"][order], found["scores"][order]
    crowd = truth["iscrowd"] != 0
    gt_ignore = crowd[None] | _outside(truth["area"], ranges)
    matched = np.full((len(ranges) * len(IOU_THRESHOLDS), len(boxes)), -1)
    if len(boxes) and len(truth["boxes"]):
        matched = _match(box_iou(boxes, truth["boxes"], crowd), gt_ignore, crowd)
    matched = matched.reshape(len(ranges), len(IOU_THRESHOLDS), len(boxes))
    hit = matched >= 0
    matched_ignore = np.zeros_like(hit)
    if gt_ignore.shape[1]:
        matched_ignore = np.take_along_axis(gt_ignore[:, None], np.maximum(matched, 0), axis=2)
    # COCOeval.evaluateImg: a detection matched to an ignored box, or unmatched and outside the
    # area range, is counted neither as a hit nor as a false positive
    ignore = np.where(hit, matched_ignore, _outside(_box_area(boxes), ranges)[:, None])
    return scores, hit, ignore, gt_ignore


def _per_class_records(found, truth, ranges):
    """{class: [one record of :func:`_evaluate_image_class` per image that has the class]},
    images in order (the order COCOeval concatenates them in, which decides ties of score)."""
    records = {}
    for image_found, image_truth in zip(found, truth):
        area = image_truth.get("area", _box_area(image_truth["boxes"]))
        crowd = image_truth.get("iscrowd", np.zeros(len(area)))
        for label in np.union1d(image_found["classes"], image_truth["classes"]).tolist():
            mine, theirs = image_found["classes"] == label, image_truth["classes"] == label
            record = _evaluate_image_class(
                {"boxes": image_found["boxes"][mine], "scores": image_found["scores"][mine]},
                {"boxes": image_truth["boxes"][theirs], "iscrowd": crowd[theirs],
                 "area": area[theirs]}, ranges)
            records.setdefault(label, []).append(record)
    return records


def _sampled_precision(true_positives, false_positives, counted):
    """COCOeval's accumulate for one area range and detection limit: (T, R) precision made
    monotone then read at each recall threshold (0 past the last recall), and (T,) recall."""
    # pycocotools' COCOeval.accumulate: precision made non-increasing from the right, then read
    # at the first detection whose recall reaches each threshold
    recall = true_positives / counted
    precision = true_positives / (false_positives + true_positives + np.spacing(1))
    precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    sampled = np.zeros((len(recall), len(RECALL_THRESHOLDS)))
    if not recall.shape[1]:
        return sampled, np.zeros(len(recall))
    for row, (row_recall, row_precision) in enumerate(zip(recall, precision)):
        where = np.searchsorted(row_recall, RECALL_THRESHOLDS, side="left")
        reached = where < len(row_recall)
        sampled[row, reached] = row_precision[where[reached]]
    return sampled, recall[:, -1]


def _class_precision_recall(records):
    """One class's (T, R, A, M) precision and (T, A, M) recall; -1 where it has no ground truth
    that counts in an area range."""
    shape = (len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), len(AREA_RANGES), len(MAX_DETECTIONS))
    precision, recall = -np.ones(shape), -np.ones((shape[0],) + shape[2:])
    counted = sum(np.count_nonzero(~record[3], axis=1) for record in records)  # (A,)
    # COCOeval.accumulate: each image's first `limit` detections, then one stable sort by score
    for column, limit in enumerate(MAX_DETECTIONS):
        scores = np.concatenate([record[0][:limit] for record in records])
        order = np.argsort(-scores, kind="stable")
        hit = np.concatenate([record[1][..., :limit] for record in records], axis=2)[..., order]
        ignore = np.concatenate([record[2][..., :limit] for record in records], axis=2)[..., order]
        true_positives = np.cumsum(hit & ~ignore, axis=2, dtype=np.float64)
        false_positives = np.cumsum(~hit & ~ignore, axis=2, dtype=np.float64)
        for area in np.flatnonzero(counted):
            precision[:, :, area, column], recall[:, area, column] = _sampled_precision(
                true_positives[area], false_positives[area], counted[area])
    return precision, recall


def _mean_of_valid(values):
    """The mean of the entries that are not -1, or -1 where there are none (COCOeval's)."""
    valid = values[values > -1]
    return float(np.mean(valid)) if valid.size else -1.0


def _summary(precision, recall):
    """COCOeval.summarize's twelve figures from (T, R, K, A, M) precision, (T, K, A, M) recall."""
    # pycocotools' COCOeval.summarize (_summarizeDets), in its order
    last = len(MAX_DETECTIONS) - 1
    stats = [_mean_of_valid(precision[..., 0, last]),
             _mean_of_valid(precision[0, ..., 0, last]),  # IoU .50
             _mean_of_valid(precision[5, ..., 0, last])]  # IoU .75
    stats += [_mean_of_valid(precision[..., area, last]) for area in (1, 2, 3)]
    stats += [_mean_of_valid(recall[..., 0, column]) for column in range(len(MAX_DETECTIONS))]
    stats += [_mean_of_valid(recall[..., area, last]) for area in (1, 2, 3)]
    return dict(zip(STAT_NAMES, stats))


def coco_map(detections, ground_truths, class_count=None):
    """COCO box mean average precision and recall, equal to pycocotools' ``COCOeval`` (bbox).

    A ground-truth box's area, which decides its area range, is its ``"area"`` where given
    (COCO's annotation area: the segmentation's in COCO itself), else its width times height;
    a detection's area is always its width times height (as pycocotools' ``loadRes``). Crowd
    boxes (``"iscrowd"``) are matched with intersection over the detection's area and count
    neither as a hit nor as a miss.

    Args:
        detections: one dict per image: ``"boxes"`` (k, 4) ``x1, y1, x2, y2`` in pixels,
            ``"scores"`` (k,), ``"classes"`` (k,) integers.
        ground_truths: one dict per image, in the same order: ``"boxes"`` (n, 4), ``"classes"``
            (n,), optional ``"iscrowd"`` (n,) flags and ``"area"`` (n,).
        class_count: optional number of classes; classes must then be below it.

    Returns:
        dict of floats: ``map, map_50, map_75, map_small, map_medium, map_large, mar_1,
        mar_10, mar_100, mar_small, mar_medium, mar_large`` (COCOeval's stats in order; -1
        where no ground truth counts, as there), and ``"per_class"``: {class: AP@[.5:.95]} for
        each class that has ground truth (-1 for one with only crowd boxes).

    Example:
        >>> coco_map([{"boxes": [], "scores": [], "classes": []}],
        ...          [{"boxes": [[0, 0, 8, 8]], "classes": [2]}])["per_class"]
        {2: 0.0}
    """
    found, truth = _checked_inputs(detections, ground_truths, class_count)
    ranges = np.asarray(AREA_RANGES)
    records = _per_class_records(found, truth, ranges)
    labels = sorted(records)
    per_class = [_class_precision_recall(records[label]) for label in labels]
    shape = (len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), 0, len(AREA_RANGES), len(MAX_DETECTIONS))
    precision, recall = -np.ones(shape), -np.ones(shape[:1] + shape[2:])
    if labels:
        precision = np.stack([pair[0] for pair in per_class], axis=2)
        recall = np.stack([pair[1] for pair in per_class], axis=1)
    result = _summary(precision, recall)
    with_truth = {label for image in truth for label in image["classes"].tolist()}
    result["per_class"] = {label: _mean_of_valid(precision[:, :, index, 0, -1])
                           for index, label in enumerate(labels) if label in with_truth}
    return result
