"""The tagging networks (TensorFlow). Two kinds, both with one softmax head per scheme:

- `vectors` (default, the fast path): a small MLP on the stored backbone vectors; about a
  minute for 44k products, no images read.
- `finetune` (the accurate path): the whole backbone, from its pretrained weights, trained
  on the catalog photos at their own small size (decoded to 80x60, resized to 128x96 inside
  the network), with flips, shifts, zooms, tilts and colour casts (a shopper's photo is
  tilted and tinted; its tuned vector should still find the product); about 1 h 25 min
  (12 epochs) for 44k products on a 2-core CPU, and 1-3 points more accurate than `vectors` on
  every scheme here, more with tags voted by neighbours (docs/classifier.md).
"""

from __future__ import annotations

import os

import numpy as np

from classifier.schemes import SchemeClasses
from embedder.spec import EmbedderSpec

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HIDDEN = 512
DROPOUT = 0.3
# finetune: photos are decoded to PHOTO_SIZE (the shared catalog's own 80x60) and resized to
# NETWORK_SIZE inside the network: 128x96 trained as fast as 96x72 here (73 images/s) and
# 1.65 times as fast as 160x120, which was no more accurate (4 epochs from the ImageNet
# weights, and 2 more epochs from the 12-epoch model's; docs/classifier.md).
PHOTO_SIZE = (80, 60)
NETWORK_SIZE = (128, 96)
AUGMENT_SHIFT = 0.06
AUGMENT_ZOOM = 0.1
AUGMENT_TILT = 15 / 360  # of a full turn: +-15 degrees
AUGMENT_CAST = 0.15  # each channel scaled by 0.85-1.15, the cast white balance leaves
FINETUNE_DROPOUT = 0.2


def _normalise_layer():
    import keras

    from embedder.model import normalise

    @keras.saving.register_keras_serializable(package="searchctl")
    class Normalise(keras.layers.Layer):
        """uint8-range RGB -> the backbone's expected input (embedder.model.normalise)."""

        def __init__(self, preprocessing: str, **kwargs):
            super().__init__(**kwargs)
            self.preprocessing = preprocessing

        def call(self, x):
            return normalise(x, self.preprocessing)

        def get_config(self):
            return {**super().get_config(), "preprocessing": self.preprocessing}

    return Normalise


def _colour_cast_layer():
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="searchctl")
    class ColourCast(keras.layers.Layer):
        """Training only: each photo's channels scaled by their own factor in
        [1 - strength, 1 + strength], a camera's colour cast. Near-white pixels stay white:
        a query photo's background is whitened after its cast (embedder.images.to_studio)."""

        def __init__(self, strength: float, seed: int | None = None, **kwargs):
            super().__init__(**kwargs)
            self.strength, self.seed = strength, seed
            self.seed_generator = keras.random.SeedGenerator(seed)

        def call(self, x, training=None):
            if not training:
                return x
            shape = (ops.shape(x)[0], 1, 1, 3)
            gain = keras.random.uniform(
                shape, 1 - self.strength, 1 + self.strength, seed=self.seed_generator
            )
            white = ops.all(x >= 245.0, axis=-1, keepdims=True)
            return ops.where(white, x, ops.clip(x * gain, 0.0, 255.0))

        def get_config(self):
            return {**super().get_config(), "strength": self.strength, "seed": self.seed}

    return ColourCast


def build_finetune(spec: EmbedderSpec, scheme_classes: list[SchemeClasses], seed: int = 0):
    """uint8 photos at PHOTO_SIZE -> {scheme: probabilities}, the whole backbone trainable."""
    import dataclasses

    import keras

    from embedder.model import load_backbone

    keras.utils.set_random_seed(seed)
    backbone = load_backbone(dataclasses.replace(spec, input_height=NETWORK_SIZE[0],
                                                 input_width=NETWORK_SIZE[1]))  # fmt: skip
    white = 255.0  # the studio background, shown where a shift or zoom uncovers the frame
    inp = keras.Input((*PHOTO_SIZE, 3), dtype="uint8", name="photos")
    x = keras.layers.Rescaling(1.0, name="to_float")(inp)
    x = _colour_cast_layer()(AUGMENT_CAST, seed=seed, name="cast")(x)
    x = keras.layers.RandomFlip("horizontal", seed=seed, name="flip")(x)
    x = keras.layers.RandomTranslation(
        AUGMENT_SHIFT, AUGMENT_SHIFT, fill_mode="constant", fill_value=white, seed=seed,
        name="shift",
    )(x)  # fmt: skip
    x = keras.layers.RandomZoom(
        (-AUGMENT_ZOOM, AUGMENT_ZOOM), fill_mode="constant", fill_value=white, seed=seed,
        name="zoom",
    )(x)  # fmt: skip
    x = keras.layers.RandomRotation(
        AUGMENT_TILT, fill_mode="constant", fill_value=white, seed=seed, name="tilt"
    )(x)
    x = keras.layers.Resizing(*NETWORK_SIZE, name="resize")(x)
    x = _normalise_layer()(spec.preprocessing, name="normalise")(x)
    x = backbone(x)
    x = keras.layers.Dropout(FINETUNE_DROPOUT, name="dropout")(x)
    outputs = {
        sc.scheme: keras.layers.Dense(len(sc.classes), activation="softmax", name=sc.scheme)(x)
        for sc in scheme_classes
    }
    return keras.Model(inp, outputs, name="tagger_finetune")


def load_tagger_model(path):
    import keras

    _normalise_layer()  # registered before loading
    _colour_cast_layer()
    return keras.saving.load_model(path, compile=False)


def build_head(scheme_classes: list[SchemeClasses], input_shape: tuple, seed: int = 0):
    """The `vectors` network: stored vector -> {scheme: probabilities}."""
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input(input_shape, name="features")
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
    return keras.Model(inp, outputs, name="tagger_vectors")
