"""Keras backbones as embedders. Imports TensorFlow: only load this where vectors are made."""

from __future__ import annotations

import os
import warnings

import numpy as np

from embedder.spec import IMAGENET, EmbedderSpec, WeightsUnavailable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def normalise(images, preprocessing: str):
    """uint8 RGB batch -> float32 model input, as TensorFlow ops (fused into the model graph)."""
    import tensorflow as tf

    x = tf.cast(images, tf.float32)
    if preprocessing == "torch":
        return (x / 255.0 - _TORCH_MEAN) / _TORCH_STD
    if preprocessing == "tf":
        return x / 127.5 - 1.0
    if preprocessing == "caffe":
        return x[..., ::-1] - _CAFFE_MEAN_BGR
    raise ValueError(f"unknown preprocessing {preprocessing!r}")


def _constructor(backbone: str):
    import keras

    return {
        "resnet50": keras.applications.ResNet50,
        "mobilenet_v2": keras.applications.MobileNetV2,
    }[backbone]


def load_backbone(spec: EmbedderSpec):
    """The spec's Keras backbone (no top, average pooling) with its weights loaded.

    Raises WeightsUnavailable when the weights cannot be had or do not fit.
    """
    shape = (spec.input_height, spec.input_width, 3)
    build = _constructor(spec.backbone)
    if spec.weights == IMAGENET:
        try:
            return build(include_top=False, weights=IMAGENET, pooling="avg", input_shape=shape)
        except Exception as exc:  # keras raises bare Exception on a failed download
            raise WeightsUnavailable(
                f"could not get the ImageNet weights of {spec.backbone} from Keras ({exc}).\n"
                "Are you offline? Download them once where there is internet (they are cached "
                "in ~/.keras/models), or pass --weights PATH with a Keras weights file "
                "(e.g. --backbone mobilenet_v2 --weights "
                "../shared/models/mobilenet_v2_imagenet_notop.weights.h5)."
            ) from exc
    model = build(include_top=False, weights=None, pooling="avg", input_shape=shape)
    # Keras only warns when parts of a file do not match, leaving those layers random:
    # any warning while loading is treated as a file that does not fit.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(spec.weights)
            problem = next(
                (str(w.message) for w in caught if issubclass(w.category, UserWarning)), None
            )
        except Exception as exc:
            problem = str(exc)
    if problem:
        raise WeightsUnavailable(
            f"the weights file {spec.weights} does not fit backbone {spec.backbone}: "
            f"{problem[:500]}"
        )
    return model


class Embedder:
    """A backbone with global average pooling; turns uint8 RGB batches into float32 vectors.

    Runs under ONNX Runtime on a CPU (Embedder's `runtime`), else wherever TensorFlow places
    it: a GPU when one is visible, otherwise all CPU cores.
    """

    def __init__(
        self,
        spec: EmbedderSpec,
        mixed_precision: bool = False,
        compiled: bool = True,
        runtime: str = "auto",
    ):
        """`compiled=False` skips tracing a graph: faster for a one-off embedding, slower after.
        `runtime`: "onnx" runs the traced graph under ONNX Runtime (embedder.onnx_backbone),
        "tensorflow" under TensorFlow, "auto" ONNX Runtime where it is installed, the graph is
        traced, float32 and no GPU is visible (a GPU stays with standard TensorFlow)."""
        import keras
        import tensorflow as tf

        self.spec = spec
        if mixed_precision:
            keras.mixed_precision.set_global_policy("mixed_float16")
        shape = (spec.input_height, spec.input_width, 3)
        model = load_backbone(spec)
        self.model = model
        prep = spec.preprocessing
        signature = [tf.TensorSpec([None, *shape], tf.uint8)]

        def forward(x):
            return tf.cast(model(normalise(x, prep), training=False), tf.float32)

        self._forward = tf.function(forward, input_signature=signature) if compiled else forward
        self._onnx = None
        if _wants_onnx(runtime, compiled, mixed_precision):
            from embedder.onnx_backbone import OnnxForward

            try:
                self._onnx = OnnxForward(self._forward, spec)
            except Exception as exc:  # noqa: BLE001 - "auto" goes on with TensorFlow
                if runtime == "onnx":
                    raise
                warnings.warn(
                    f"the backbone runs under TensorFlow, 3-4x slower on a CPU: it could not "
                    f"be converted for ONNX Runtime ({type(exc).__name__}: {exc})",
                    RuntimeWarning,
                    stacklevel=2,
                )
        self.runtime = "onnx" if self._onnx is not None else "tensorflow"

    def embed(self, images: np.ndarray, threads: int | None = None) -> np.ndarray:
        """uint8 N x H x W x 3 RGB at the spec's input size -> float32 N x dim (not normalised).
        `threads=1`: one CPU thread, for calls made side by side (ONNX Runtime only)."""
        if self._onnx is not None:
            return self._onnx(images, threads)
        return self._forward(np.asarray(images, dtype=np.uint8)).numpy()


RUNTIMES = ("auto", "onnx", "tensorflow")


def _wants_onnx(runtime: str, compiled: bool, mixed_precision: bool) -> bool:
    import tensorflow as tf

    from embedder.onnx_backbone import onnx_available

    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of: {', '.join(RUNTIMES)}")
    if runtime == "tensorflow":
        return False
    if runtime == "onnx":
        if not onnx_available():
            raise RuntimeError("runtime='onnx' needs onnxruntime and tf2onnx installed")
        if mixed_precision or not compiled:
            raise ValueError("runtime='onnx' runs the traced float32 graph only")
        return True
    return (
        compiled
        and not mixed_precision
        and onnx_available()
        and not tf.config.list_physical_devices("GPU")
    )
