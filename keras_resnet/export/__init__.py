"""Export trained models: SavedModel (TensorFlow Serving layout), TFLite, ONNX and OpenVINO IR,
with runners for each and parity reports.

Every export carries the model's own ``ImagePreprocessing`` (``keras_resnet.preprocessing.of``)
and class names, so a server or client needs nothing else: a SavedModel in
``assets.extra/keras_resnet.json``, a single file in ``FILE.json`` beside it. Every export is
written under a temporary name and renamed into place: a kill, or an exporter that fails,
leaves either no export or a whole one.

- :mod:`~keras_resnet.export.formats`: the formats, their quantizations and packages, and the
  argument checks every writer runs.
- :mod:`~keras_resnet.export.resolve`: a float32 model and its preprocessing from a model, a
  ``.keras`` file or a run directory.
- :mod:`~keras_resnet.export.saved_model`: the SavedModel writer (its signatures) and readers.
- :mod:`~keras_resnet.export.writers`: ``.tflite``, ``.onnx`` and OpenVINO ``.xml`` writers
  through Keras' exporters, and their sidecars.
- :mod:`~keras_resnet.export.runtimes`: runners for each format, :func:`open_runner`,
  :func:`predict_files`.
- :mod:`~keras_resnet.export.parity`: an export against its Keras model.
- :mod:`~keras_resnet.export.bfloat16`: SavedModels in bfloat16 (TensorFlow's oneDNN
  rewrite) and the bfloat16 figures recorded with an export.
- :mod:`~keras_resnet.export.run`: :func:`export_run`, what ``keras-resnet export`` does.

Example:
    >>> path = export_saved_model("runs/resnet20-digits/model.keras", "exports")  # doctest: +SKIP
    >>> tflite(path, "exports/resnet20.tflite", quantization="int8", representative_data=images)  # doctest: +SKIP
    >>> export_onnx("runs/resnet20-digits", "exports/resnet20.onnx")  # doctest: +SKIP
"""

from keras_resnet.extras import require

tf = require("tensorflow", "keras_resnet.export (SavedModel, TFLite, ONNX, OpenVINO)")

from keras_resnet.export.formats import (  # noqa: E402
    BFLOAT16_FORMATS,
    BFLOAT16_MIN_AGREEMENT,
    BFLOAT16_MIN_SPEEDUP,
    DEFAULT_FORMATS,
    DETECTOR_QUANTIZATIONS,
    FORMAT_NAMES,
    FORMAT_PACKAGES,
    FORMAT_QUANTIZATIONS,
    FORMATS,
    INFERENCE_PRECISIONS,
    INPUT_NAME,
    OUTPUT_NAME,
    OUTPUTS,
    QUANTIZATIONS,
    RUNTIMES,
    SUFFIXES,
    require_format,
)
from keras_resnet.export.parity import format_parity, parity_report, size_bytes  # noqa: E402
from keras_resnet.export.resolve import float32_model, resolve_model  # noqa: E402
from keras_resnet.export.run import FILE_EXPORTERS, export_run  # noqa: E402
from keras_resnet.export.runtimes import (  # noqa: E402
    FILE_RUNNERS,
    KerasRunner,
    ONNXRunner,
    OpenVINORunner,
    SavedModelRunner,
    TFLiteModel,
    choose_precision,
    open_runner,
    predict_files,
    read_image,
)
from keras_resnet.export.saved_model import (  # noqa: E402
    METADATA_FILE,
    export_saved_model,
    read_export_metadata,
    read_export_preprocessing,
)
from keras_resnet.export.writers import (  # noqa: E402
    ACTIVATION_TYPES,
    export_onnx,
    export_openvino,
    read_sidecar,
    tflite,
)
from keras_resnet.export.bfloat16 import (  # noqa: E402
    onednn_bfloat16,
    read_bfloat16_parity,
    record_bfloat16_parity,
)

__all__ = [
    "ACTIVATION_TYPES", "BFLOAT16_FORMATS", "BFLOAT16_MIN_AGREEMENT", "BFLOAT16_MIN_SPEEDUP",
    "DEFAULT_FORMATS",
    "DETECTOR_QUANTIZATIONS",
    "FILE_EXPORTERS", "FILE_RUNNERS", "FORMATS",
    "FORMAT_NAMES", "FORMAT_PACKAGES", "FORMAT_QUANTIZATIONS", "INFERENCE_PRECISIONS", "INPUT_NAME", "METADATA_FILE",
    "OUTPUT_NAME", "OUTPUTS", "QUANTIZATIONS", "RUNTIMES", "SUFFIXES",
    "KerasRunner", "ONNXRunner", "OpenVINORunner", "SavedModelRunner", "TFLiteModel",
    "choose_precision", "export_onnx", "export_openvino", "export_run", "export_saved_model", "float32_model",
    "format_parity", "onednn_bfloat16", "open_runner", "parity_report", "predict_files", "read_export_metadata",
    "read_bfloat16_parity", "read_export_preprocessing", "read_image", "read_sidecar",
    "record_bfloat16_parity",
    "require_format",
    "resolve_model", "size_bytes", "tflite",
]
