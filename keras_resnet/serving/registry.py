"""The models of an export directory: finding, loading and picking SavedModel versions.

An export directory holds ``<name>/<version>/saved_model.pb`` (numeric versions), the layout
:func:`keras_resnet.export.export_saved_model` writes and TensorFlow Serving reads. Like
TensorFlow Serving's default version policy, only the highest version of each model is served
unless ``version_policy="all"``.

Example:
    >>> registry = Registry("exports", "latest")  # doctest: +SKIP
    >>> registry.get("resnet20").signature_defs["serving_default"]  # doctest: +SKIP
"""

import dataclasses
import os
import re

from keras_resnet.errors import InvalidArgument
from keras_resnet.export.bfloat16 import choose_precision
from keras_resnet.extras import require
from keras_resnet.serving.limits import ServingError, clip

tf = require("tensorflow", "keras_resnet.serving (the REST server)")

VERSION_POLICIES = ("latest", "all")
_VERSION = re.compile(r"[0-9]{1,18}")  # TensorFlow Serving's versions are int64


@dataclasses.dataclass
class Servable:
    """One loaded model version: its callable signatures and their definitions."""

    name: str
    version: int
    path: str
    signatures: dict  # name -> ConcreteFunction (callable signatures only)
    signature_defs: dict  # name -> SignatureDef as TensorFlow Serving prints it (JSON dict)
    loaded: object = None  # the loaded SavedModel, kept alive for its variables and tables
    precision: str = "float32"  # or "bfloat16": TensorFlow's oneDNN rewrite (export.bfloat16)

    def inputs(self, signature_name):
        """A signature's inputs: ``{input name: tf.TensorSpec}``."""
        return self.signatures[signature_name].structured_input_signature[1]


def find_models(export_dir):
    """The models under an export directory: ``{name: {version: path}}``.

    Args:
        export_dir: a directory holding ``<name>/<version>/saved_model.pb`` (numeric versions).

    Returns:
        dict from model name to a dict from int version to the version directory.

    Example:
        >>> find_models("exports")  # doctest: +SKIP
        {'resnet20': {1: 'exports/resnet20/1'}}
    """
    if not os.path.isdir(export_dir):
        raise InvalidArgument(f"`export_dir` must be a directory; got {str(export_dir)!r}.")
    models = {}
    for name in sorted(os.listdir(export_dir)):
        base = os.path.join(export_dir, name)
        if not os.path.isdir(base):
            continue
        versions = {
            int(v): os.path.join(base, v)
            for v in os.listdir(base)
            if _VERSION.fullmatch(v) and os.path.isfile(os.path.join(base, v, "saved_model.pb"))
        }
        if versions:
            models[name] = versions
    if not models:
        raise InvalidArgument(
            f"`export_dir` {str(export_dir)!r} holds no models; expected "
            f"<export_dir>/<name>/<version>/saved_model.pb with a version of 1 to 18 digits."
        )
    return models


def _signature_defs(path):
    """SignatureDefs of a SavedModel as JSON dicts, field names as TensorFlow Serving prints them."""
    from google.protobuf import json_format
    from tensorflow.core.protobuf import saved_model_pb2

    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        saved_model = saved_model_pb2.SavedModel.FromString(f.read())
    meta_graph = saved_model.meta_graphs[0]
    return {
        key: json_format.MessageToDict(
            meta_graph.signature_def[key],
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        )
        for key in sorted(meta_graph.signature_def)
    }


def load_servable(name, version, path, precision="float32"):
    """Load one SavedModel version (``tf.saved_model.load``) for serving.

    Args:
        name: the model name clients use (``/v1/models/<name>``).
        version: the integer version.
        path: the version directory holding ``saved_model.pb``.
        precision: "float32", "bfloat16" or "auto"
            (``keras_resnet.export.choose_precision``: bfloat16 where the CPU has it and the
            export records its agreement and speed-up); the servable's ``precision``.

    Returns:
        a :class:`Servable`.

    Raises:
        ValueError: naming ``path`` and what is wrong (``saved_model.pb`` that is no
            SavedModel, ``variables/`` missing, any other loading error), without TensorFlow's
            traceback.

    Example:
        >>> servable = load_servable("resnet20", 1, "exports/resnet20/1")  # doctest: +SKIP
    """
    where = f"Model {name!r} version {version} at {str(path)!r}"
    precision = choose_precision(path, "saved_model", precision)
    try:
        signature_defs = _signature_defs(path)
    except Exception as error:  # protobuf's DecodeError, OSError, no meta graph
        raise InvalidArgument(
            f"{where}: saved_model.pb is not a SavedModel ({type(error).__name__}: {error})."
        ) from None
    try:
        loaded = tf.saved_model.load(path)
    except Exception as error:  # TensorFlow raises OSError, ValueError, OpError, ...
        index = os.path.join(path, "variables", "variables.index")
        reason = ("variables/variables.index is missing: copy the whole SavedModel directory"
                  if not os.path.isfile(index) else tf_error_message(error).splitlines()[0])
        raise InvalidArgument(f"{where} cannot be loaded: {reason}.") from None
    return Servable(name, version, path, dict(loaded.signatures), signature_defs, loaded,
                    precision)


def tf_error_message(error):
    """The useful line of a TensorFlow op error (without node names and stack placeholders).

    Example:
        >>> tf_error_message(ValueError("Invalid JPEG data [[{{node DecodeJpeg}}]]"))
        'Invalid JPEG data'
    """
    lines = []
    for line in str(getattr(error, "message", error)).splitlines():
        line = re.sub(r"\{\{function_node [^}]*\}\}", "", line).strip()
        if not line or line.startswith(("Graph execution error", "Detected at node", "<stack", "[[")):
            continue
        lines.append(re.sub(r"\s*\[\[\{\{node.*$|\s*\[Op:.*$", "", line))
    return " ".join(lines) or type(error).__name__


class Registry:
    """The servables of an export directory (``models``: ``{name: {version: Servable}}``).

    Args:
        export_dir: directory of ``<name>/<version>/`` SavedModels; all are loaded now.
        version_policy: one of :data:`VERSION_POLICIES`: "latest" (the highest version of each
            model) or "all".

    Example:
        >>> Registry("exports", "latest").get("resnet20", version="1")  # doctest: +SKIP
    """

    def __init__(self, export_dir, version_policy, precision="float32"):
        self.models = {}
        for name, versions in find_models(export_dir).items():
            chosen = versions if version_policy == "all" else {max(versions): versions[max(versions)]}
            self.models[name] = {v: load_servable(name, v, p, precision)
                                 for v, p in sorted(chosen.items())}

    def get(self, name, version=None, label=None):
        """The servable a URL names (the highest version if none); 404 or 400 as TF Serving."""
        if name not in self.models:
            raise ServingError(
                404,
                f"Servable not found for request: model {clip(name)}; served models: "
                f"{', '.join(sorted(self.models))}.",
            )
        versions = self.models[name]
        if label is not None:
            raise ServingError(
                404, f"Version label {clip(label)} of model {name!r} is unknown; use /versions/N."
            )
        if version is None:
            return versions[max(versions)]
        if not _VERSION.fullmatch(version):  # not str.isdigit: it takes "¹" and "٣" too
            raise ServingError(
                400, f"Model version must be a whole number of 1 to 18 ASCII digits; got "
                f"{clip(version)}."
            )
        if int(version) not in versions:
            raise ServingError(
                404,
                f"Servable not found for request: version {version} of model {name!r}; served "
                f"versions: {', '.join(map(str, sorted(versions)))}.",
            )
        return versions[int(version)]
