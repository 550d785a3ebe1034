"""The tagging networks (TensorFlow). Two kinds, both with one softmax head per scheme:

- `vectors` (default, the fast path): a small MLP on the stored backbone vectors; about a
  minute for 44k products, no images read.
- `finetune`: the backbone is cut after its stride-16 stage; the frozen part (the trunk) turns
  each image into a feature map once, and the top blocks are trained on those maps together
  with the heads: about 30 minutes on a 2-core CPU instead of many hours for the whole network.
  On the shared catalog it matched the fast path within a point (README), so it is not the
  default.
"""

from __future__ import annotations

import os

import numpy as np

from classifier.schemes import SchemeClasses, check_kind
from embedder.spec import EmbedderSpec

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Where the trainable top starts: the last stride-16 block output of each backbone.
CUT_LAYERS = {"mobilenet_v2": "block_12_add", "resnet50": "conv4_block6_out"}
HIDDEN = 512
DROPOUT = 0.3


class TrunkEmbedder:
    """Images -> (backbone vector, trunk feature map) in one forward pass."""

    def __init__(self, spec: EmbedderSpec, compiled: bool = True):
        import keras
        import tensorflow as tf

        from embedder.model import load_backbone, normalise

        self.spec = spec
        self.backbone = load_backbone(spec)
        cut = self.backbone.get_layer(CUT_LAYERS[spec.backbone]).output
        both = keras.Model(self.backbone.input, [self.backbone.output, cut])
        self.trunk_shape = tuple(int(d) for d in cut.shape[1:])
        shape = (spec.input_height, spec.input_width, 3)

        def forward(x):
            vec, fmap = both(normalise(x, spec.preprocessing), training=False)
            return tf.cast(vec, tf.float32), tf.cast(fmap, tf.float16)

        sig = [tf.TensorSpec([None, *shape], tf.uint8)]
        self._forward = tf.function(forward, input_signature=sig) if compiled else forward

    def embed(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        vec, fmap = self._forward(np.asarray(images, dtype=np.uint8))
        return vec.numpy(), fmap.numpy()


def build_head(
    kind: str,
    scheme_classes: list[SchemeClasses],
    input_shape: tuple,
    backbone=None,
    cut_layer: str | None = None,
    seed: int = 0,
):
    """The trainable network: input (trunk feature map or vector) -> {scheme: probabilities}.

    For `finetune`, `backbone` gives the top blocks (after `cut_layer`) their starting weights.
    """
    import keras

    check_kind(kind)
    keras.utils.set_random_seed(seed)
    inp = keras.Input(input_shape, name="features")
    if kind == "finetune":
        top = keras.Model(backbone.get_layer(cut_layer).output, backbone.output, name="tuned_top")
        x = top(inp)
    else:
        # Stored vectors are unit length: scaled by sqrt(dim), their entries are of order 1,
        # the scale the Dense initialisation expects (per-dimension standardisation would
        # blow up near-constant dimensions and overfit them).
        x = keras.layers.Rescaling(float(np.sqrt(input_shape[-1])), name="scale")(inp)
        x = keras.layers.Dense(HIDDEN, activation="relu", name="hidden")(x)
    x = keras.layers.Dropout(DROPOUT, name="dropout")(x)
    outputs = {
        sc.scheme: keras.layers.Dense(len(sc.classes), activation="softmax", name=sc.scheme)(x)
        for sc in scheme_classes
    }
    return keras.Model(inp, outputs, name=f"tagger_{kind}")
