"""Running what was exported: one runner per runtime (``runner(images) -> outputs``,
``runner.preprocessing`` and ``runner.outputs``: "probabilities", or "embeddings" for a file
exported from ``keras_resnet.embedding_model``), :func:`open_runner` picking one for a path,
and top-k predictions or embeddings for image files. A detector's runners return its
detections, ``{"boxes", "scores", "classes", "num_detections"}`` (numpy, batch first).

Example:
    >>> predict_files("exports/resnet20/1", ["digit.png"])[0]["top_k"][0]["label"]  # doctest: +SKIP
"""

import os

import numpy as np
import tensorflow as tf

from keras_resnet import data, logs
from keras_resnet.errors import InvalidArgument
from keras_resnet.export.bfloat16 import choose_precision, run_in
from keras_resnet.export.detection import DETECTIONS
from keras_resnet.export.formats import OUTPUT_NAME
from keras_resnet.export.resolve import resolve_model, task_for
from keras_resnet.export.saved_model import read_export_preprocessing, read_export_task
from keras_resnet.export.writers import read_sidecar
from keras_resnet.extras import require
from keras_resnet.features import embedding_model


def _file_preprocessing(path):
    """The preprocessing in ``path + ".json"``; ValueError naming the file when missing."""
    sidecar = read_sidecar(path)
    if sidecar is None:
        raise InvalidArgument(f"{path!r} has no preprocessing file {path + '.json'!r} beside it.")
    return sidecar["preprocessing"]


def _file_task(path):
    """The Task in ``path + ".json"`` (``keras_resnet.tasks``), or None."""
    return (read_sidecar(path) or {}).get("task")


def _is_detector(task):
    return task is not None and task.detection


def _file_outputs(path):
    """What a file's output holds, per its sidecar ("probabilities" before embeddings existed)."""
    sidecar = read_sidecar(path)
    return (sidecar or {}).get("outputs", OUTPUT_NAME)


def _load_error(kind, path, error):
    message = str(error).strip().splitlines()
    return InvalidArgument(
        f"{kind} {path!r} cannot be loaded ({type(error).__name__}: "
        f"{message[0] if message else ''}); export it again."
    )


class TFLiteModel:
    """A ``.tflite`` file run by the LiteRT interpreter, float in, float probabilities out.

    Example:
        >>> probabilities = TFLiteModel("m_int8.tflite")(images)  # doctest: +SKIP
    """

    def __init__(self, path, num_threads=None, precision="auto"):
        Interpreter = require("ai_edge_litert.interpreter", "Running a .tflite file").Interpreter

        self.path = path
        self.precision = choose_precision(path, "tflite", precision)
        try:
            with logs.loading():
                self.interpreter = Interpreter(model_path=path, num_threads=num_threads)
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:  # truncated, empty or not a flatbuffer
            raise _load_error("TFLite file", path, error) from None
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        sidecar = read_sidecar(path)
        self.preprocessing = sidecar and sidecar["preprocessing"]
        self.task = sidecar and sidecar["task"]
        self.outputs = _file_outputs(path)
        if _is_detector(self.task):
            self.signature = self.interpreter.get_signature_runner()

    def _run_one(self, image):
        scale, zero_point = self.input["quantization"]
        if self.input["dtype"] != np.float32:
            image = np.clip(np.round(image / scale + zero_point), -128, 127)
        self.interpreter.set_tensor(self.input["index"], image[None].astype(self.input["dtype"]))
        self.interpreter.invoke()
        output = self.interpreter.get_tensor(self.output["index"])[0]
        scale, zero_point = self.output["quantization"]
        if self.output["dtype"] != np.float32:
            output = (output.astype(np.float32) - zero_point) * scale
        return output

    def __call__(self, images):
        """Probabilities ``(n, classes)`` for preprocessed float images ``(n, h, w, c)`` (a
        detector's detections)."""
        images = np.asarray(images, np.float32)
        if _is_detector(self.task):
            found = [self.signature(images=image[None]) for image in images]
            return {key: np.concatenate([one[key] for one in found]) for key in found[0]}
        return np.stack([self._run_one(image) for image in images])


class ONNXRunner:
    """An ``.onnx`` file written by :func:`export_onnx`, run by ONNX Runtime on the CPU:
    preprocessed float images in, probabilities out.

    Example:
        >>> probabilities = ONNXRunner("exports/resnet20/onnx/model_int8.onnx")(images)  # doctest: +SKIP
    """

    def __init__(self, path, num_threads=None, precision="auto"):
        ort = require("onnxruntime", "Running an .onnx file")
        self.path = path
        self.precision = choose_precision(path, "onnx", precision)
        self.preprocessing = _file_preprocessing(path)
        self.task = _file_task(path)
        self.outputs = _file_outputs(path)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        if num_threads:
            options.intra_op_num_threads = num_threads
        try:
            self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001  (onnxruntime's own exception types)
            raise _load_error("ONNX file", path, error) from None
        self.input = self.session.get_inputs()[0].name

    def __call__(self, images):
        """Probabilities ``(n, classes)`` for preprocessed float images ``(n, h, w, c)`` (a
        detector's detections)."""
        outputs = self.session.run(None, {self.input: np.asarray(images, np.float32)})
        if _is_detector(self.task):
            return dict(zip((o.name for o in self.session.get_outputs()), outputs))
        return outputs[0]


class OpenVINORunner:
    """OpenVINO IR (``.xml`` + ``.bin``) written by :func:`export_openvino`, compiled for the
    CPU once per input shape (static shapes run faster than the export's dynamic batch), with
    the inference precision :func:`choose_precision` picks (OpenVINO's own default would be
    bfloat16 on any CPU that has it, unchecked) and the latency hint: preprocessed float
    images in, probabilities out.

    Example:
        >>> probabilities = OpenVINORunner("exports/resnet20/openvino/model_float32.xml")(images)  # doctest: +SKIP
    """

    def __init__(self, path, num_threads=None, precision="auto"):
        ov = require("openvino", "Running an OpenVINO .xml model")
        self.path = path
        self.preprocessing = _file_preprocessing(path)
        self.task = _file_task(path)
        self.outputs = _file_outputs(path)
        self.precision = choose_precision(path, "openvino", precision)
        hint = {"float32": "f32", "bfloat16": "bf16"}[self.precision]
        self.config = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
        if num_threads:
            self.config["INFERENCE_NUM_THREADS"] = num_threads
        self.core, self.requests = ov.Core(), {}
        try:
            self.model = self.core.read_model(path)
            self._request((1, *self.model.input(0).get_partial_shape()[1:].to_shape()))
        except Exception as error:  # noqa: BLE001  (OpenVINO raises RuntimeError for most)
            raise _load_error("OpenVINO model", path, error) from None

    def _request(self, shape):
        if shape not in self.requests:
            model = self.model.clone()
            model.reshape({0: list(shape)})
            compiled = self.core.compile_model(model, "CPU", self.config)
            self.requests[shape] = compiled.create_infer_request()
        return self.requests[shape]

    def __call__(self, images):
        """Probabilities ``(n, classes)`` for preprocessed float images ``(n, h, w, c)`` (a
        detector's detections)."""
        images = np.ascontiguousarray(images, np.float32)
        outputs = self._request(tuple(images.shape)).infer([images])
        if _is_detector(self.task):
            return {port.get_any_name(): value.copy() for port, value in outputs.items()}
        return next(iter(outputs.values())).copy()


class SavedModelRunner:
    """A SavedModel written by :func:`export_saved_model`: preprocessed float images in,
    probabilities out, through its ``serving_default`` signature; in bfloat16 where
    :func:`choose_precision` says so (TensorFlow's oneDNN rewrite, ``export.bfloat16``).

    Example:
        >>> probabilities = SavedModelRunner("exports/resnet20/1")(images)  # doctest: +SKIP
    """

    def __init__(self, path, precision="auto"):
        self.path = path
        self.precision = choose_precision(path, "saved_model", precision)
        try:
            self.loaded = tf.saved_model.load(path)
            self.preprocessing = read_export_preprocessing(path)
            self.task = read_export_task(path)
            # A detector's float32 signature is "detections" (its serving ones take uint8).
            self.signature = self.loaded.signatures[
                DETECTIONS if _is_detector(self.task) else "serving_default"]
        except (OSError, ValueError, KeyError, tf.errors.OpError) as error:
            raise _load_error("SavedModel", path, error) from None

    outputs = OUTPUT_NAME

    def __call__(self, images):
        images = tf.constant(np.asarray(images, np.float32))
        outputs = run_in(self.precision, self.signature, images=images)
        if _is_detector(self.task):
            return {key: value.numpy() for key, value in outputs.items()}
        return outputs["probabilities"].numpy()

    def embeddings(self, images):
        """The export's ``embeddings`` signature: pooled features ``(n, channels)``."""
        if "embeddings" not in self.loaded.signatures:
            raise InvalidArgument(
                f"SavedModel {self.path!r} has no 'embeddings' signature (exported before "
                "keras_resnet had them); export it again."
            )
        images = tf.constant(np.asarray(images, np.float32))
        return run_in(self.precision, self.loaded.signatures["embeddings"],
                      images=images)["embeddings"].numpy()


class KerasRunner:
    """A ``.keras`` model (or run directory) with its preprocessing, float32 compute.

    Example:
        >>> probabilities = KerasRunner("runs/resnet20-digits")(images)  # doctest: +SKIP
    """

    def __init__(self, path, precision="auto"):
        self.path = path
        self.precision = choose_precision(path, "keras", precision)
        self.model, self.preprocessing = resolve_model(path)
        self.task = task_for(self.model)

    outputs = OUTPUT_NAME

    def __call__(self, images):
        return self.model.predict(np.asarray(images, np.float32), verbose=0)

    def embeddings(self, images):
        """The model's pooled features ``(n, channels)`` (``keras_resnet.embedding_model``)."""
        return embedding_model(self.model).predict(np.asarray(images, np.float32), verbose=0)


FILE_RUNNERS = {".tflite": TFLiteModel, ".onnx": ONNXRunner, ".xml": OpenVINORunner}


def open_runner(path, num_threads=None, precision="auto"):
    """A runner for an exported or saved model: ``runner(images) -> probabilities`` and
    ``runner.preprocessing``.

    Args:
        path: a SavedModel directory, a ``.tflite``, ``.onnx`` or OpenVINO ``.xml`` file
            (each with its ``FILE.json``), a ``.keras`` file or a run directory.
        num_threads: CPU threads of the LiteRT, ONNX Runtime and OpenVINO runners; default:
            the runtime's own choice.
        precision: "auto", "float32" or "bfloat16" (:func:`choose_precision`); the runner's
            ``precision`` says what it uses.

    Example:
        >>> open_runner("exports/resnet20/1").preprocessing.class_names[:2]  # doctest: +SKIP
        ['0', '1']
    """
    path = os.fspath(path)
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "saved_model.pb")):
        return SavedModelRunner(path, precision)
    suffix = os.path.splitext(path)[1].lower()
    if suffix in FILE_RUNNERS:
        if not os.path.isfile(path):
            raise InvalidArgument(f"`model` file {path!r} does not exist.")
        runner = FILE_RUNNERS[suffix](path, num_threads=num_threads, precision=precision)
        if runner.preprocessing is None:
            raise InvalidArgument(f"{path!r} has no preprocessing file {path + '.json'!r} beside it.")
        return runner
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, "model.keras")):
        raise InvalidArgument(
            f"`model`: directory {path!r} is neither a SavedModel (no saved_model.pb) nor a run "
            "directory (no model.keras)."
        )
    if suffix == ".bin":
        raise InvalidArgument(f"`model` {path!r}: pass the OpenVINO .xml file, not its weights.")
    return KerasRunner(path, precision)


def read_image(path, channels=3):
    """An image file as uint8 RGB ``(h, w, 3)`` (``channels=4``: RGBA, opaque where the file
    has no alpha): palettes, grayscale, alpha, CMYK and 16-bit images are converted as PIL
    reads them (the first frame of an animation).

    Example:
        >>> read_image("digit.png").dtype  # doctest: +SKIP
        dtype('uint8')
    """
    from PIL import Image, UnidentifiedImageError

    if os.path.isdir(path):
        raise InvalidArgument(f"Image {path!r} is a directory, not an image file.")
    if not os.path.isfile(path):
        raise InvalidArgument(f"Image file {path!r} does not exist.")
    try:
        with Image.open(path) as image:
            if image.format not in ("JPEG", "PNG", "GIF", "BMP"):
                raise InvalidArgument(f"{path!r} is a {image.format} image, not JPEG, PNG, GIF or BMP.")
            if image.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit grey: keep the top byte
                image = Image.fromarray(
                    np.round(np.asarray(image, np.float64) / 257.0).clip(0, 255).astype(np.uint8)
                )
            return np.asarray(image.convert("RGBA" if channels == 4 else "RGB"), np.uint8)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise InvalidArgument(
            f"{path!r} is not a readable JPEG, PNG, GIF or BMP image ({error})."
        ) from None


def _top_k(probabilities, class_names, k):
    order = np.argsort(-probabilities)[:k]
    return [{"index": int(i), "label": class_names[i], "score": float(probabilities[i])} for i in order]


def over_thresholds(scores, class_names, thresholds):
    """A multi-label model's answer for one image: every class whose score is at least its
    threshold, highest score first, as ``[{"index", "label", "score"}]``.

    Example:
        >>> over_thresholds(np.array([0.9, 0.2, 0.6]), ["a", "b", "c"], [0.5, 0.5, 0.7])
        [{'index': 0, 'label': 'a', 'score': 0.9}]
    """
    order = np.argsort(-scores, kind="stable")
    return [{"index": int(i), "label": class_names[i], "score": float(scores[i])}
            for i in order if scores[i] >= thresholds[i]]


def _embeddings(runner, images):
    if hasattr(runner, "embeddings"):
        return runner.embeddings(images)
    if runner.outputs != "embeddings":
        raise InvalidArgument(
            f"`model` {runner.path!r} outputs {runner.outputs}; embeddings come from a .keras "
            "file, a run directory, a SavedModel, or a file exported with "
            "`keras-resnet export --embeddings`."
        )
    return runner(images)


def predict_files(model_path, image_paths, top_k=5, embeddings=False, precision="auto"):
    """Top-k predictions (or embeddings) for image files from any model :func:`open_runner`
    opens.

    Args:
        model_path: anything :func:`open_runner` opens: a ``.keras`` file (or run
            directory), a SavedModel directory written by :func:`export_saved_model`, a
            ``.tflite``, ``.onnx`` or OpenVINO ``.xml`` file written by :func:`tflite`,
            :func:`export_onnx` or :func:`export_openvino`.
        image_paths: JPEG/PNG/GIF/BMP files.
        top_k: how many classes to return per image (at least 1; at most the class count).
        embeddings: return the pooled features instead: a float32 ``(n, channels)`` array
            (from a file, one exported with ``output="embeddings"``).
        precision: "auto", "float32" or "bfloat16" (:func:`choose_precision`).

    Returns:
        list of ``{"image": path, "top_k": [{"index", "label", "score"}, ...]}`` (for a
        multi-label model also ``"labels"``: every class over its threshold,
        :func:`over_thresholds`), or the embeddings array.

    Example:
        >>> predict_files("exports/resnet20/1", ["digit.png"])[0]["top_k"][0]["label"]  # doctest: +SKIP
    """
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise InvalidArgument(f"`top_k` must be a positive integer; got {top_k!r}.")
    for path in image_paths:  # before the model loads: a missing image fails fast
        if not os.path.isfile(path):
            read_image(path)
    runner = open_runner(model_path, precision=precision)
    if _is_detector(runner.task):
        raise InvalidArgument(f"`model` {runner.path!r} is a detector: its boxes come from "
                              "keras_resnet.export.detections.detect_files (`keras-resnet "
                              "predict` picks it).")
    preprocessing = runner.preprocessing
    channels = 4 if preprocessing.channels == 4 else 3
    images = [read_image(path, channels) for path in image_paths]
    batch = np.concatenate([data.preprocess(image[None], preprocessing) for image in images])
    if embeddings:
        return np.asarray(_embeddings(runner, batch), np.float32)
    if runner.outputs != OUTPUT_NAME:
        raise InvalidArgument(
            f"`model` {runner.path!r} outputs {runner.outputs}, not probabilities: ask for "
            "embeddings (`keras-resnet predict --embeddings OUT.npy`)."
        )
    probabilities = runner(batch)
    class_names = preprocessing.class_names
    if class_names is None:
        class_names = [str(i) for i in range(probabilities.shape[-1])]
    results = []
    for image_path, p in zip(image_paths, probabilities):
        result = {"image": image_path}
        if runner.task is not None and runner.task.multilabel:
            result["labels"] = over_thresholds(p, class_names, runner.task.thresholds)
        results.append({**result, "top_k": _top_k(p, class_names, top_k)})
    return results
