"""Embedder spec (no TensorFlow) and the Keras backbones with weight files made here."""

from __future__ import annotations

import numpy as np
import pytest

from embedder.spec import (
    KNOWN_WEIGHT_FILES,
    WeightsUnavailable,
    make_spec,
    parse_input_size,
)


def test_parse_input_size():
    assert parse_input_size("160x120") == (160, 120)
    assert parse_input_size("96") == (96, 96)
    for bad in ("abc", "16x16", "1x2x3"):
        with pytest.raises(ValueError):
            parse_input_size(bad)


def test_preprocessings_match_their_definitions():
    from embedder.model import normalise

    def preprocess(x, kind):
        return normalise(x, kind).numpy()

    px = np.array([[[[255, 0, 128]]]], np.uint8)
    assert np.allclose(preprocess(px, "tf"), [[[[1.0, -1.0, 128 / 127.5 - 1]]]], atol=1e-5)
    torch = (np.array([1.0, 0.0, 128 / 255]) - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    assert np.allclose(preprocess(px, "torch"), torch, atol=1e-5)
    assert np.allclose(
        preprocess(px, "caffe"), [[[[128 - 103.939, -116.779, 255 - 123.68]]]], atol=1e-4
    )


def test_spec_records_the_weights_identity(tiny_weights):
    spec = make_spec("mobilenet_v2", tiny_weights, (32, 32))
    assert spec.weights_id.startswith("sha256:") and spec.preprocessing == "tf"
    assert spec.dim == 1280 and spec.vector_name == "mobilenet_v2"
    assert make_spec("resnet50").weights_id == "keras:imagenet"
    assert make_spec("resnet50").preprocessing == "caffe"
    assert "weights" not in spec.identity()


def test_known_shared_weights_get_torch_preprocessing():
    assert "torch" in KNOWN_WEIGHT_FILES.values()


def test_missing_weights_file_and_unknown_backbone(tmp_path):
    with pytest.raises(WeightsUnavailable, match="weights file not found"):
        make_spec("mobilenet_v2", tmp_path / "nope.h5")
    with pytest.raises(ValueError, match="unknown backbone"):
        make_spec("vgg19")


def test_embedder_runs_and_is_deterministic(tiny_weights):
    from embedder.model import Embedder

    spec = make_spec("mobilenet_v2", tiny_weights, (32, 32))
    emb = Embedder(spec)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)
    a = emb.embed(images)
    assert a.shape == (5, 1280) and a.dtype == np.float32
    assert np.allclose(a, emb.embed(images))
    # Batch composition must not change a vector (no batch statistics at inference).
    assert np.allclose(a[2], emb.embed(images[2:3])[0], atol=1e-5)


def test_weights_file_of_another_backbone_is_refused(tiny_weights):
    from embedder.model import Embedder

    spec = make_spec("resnet50", tiny_weights, (32, 32))
    with pytest.raises(WeightsUnavailable, match="does not fit backbone resnet50"):
        Embedder(spec)


def test_resnet50_loads_a_weights_file(tmp_path):
    import keras

    from embedder.model import Embedder

    keras.utils.set_random_seed(3)
    model = keras.applications.ResNet50(
        include_top=False, weights=None, pooling="avg", input_shape=(32, 32, 3)
    )
    path = tmp_path / "resnet50.weights.h5"
    model.save_weights(path)
    emb = Embedder(make_spec("resnet50", path, (32, 32)))
    x = np.full((1, 32, 32, 3), 200, np.uint8)
    expected = model(x[..., ::-1] - np.array([103.939, 116.779, 123.68]), training=False)
    assert emb.embed(x).shape == (1, 2048)
    assert np.allclose(emb.embed(x), np.asarray(expected), atol=1e-4)


def test_imagenet_weights_offline_stop_with_a_fix(tmp_path, monkeypatch):
    """No cached weights and no network: a message that says what to do, never random weights."""
    from embedder.model import Embedder

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    # Nothing listens on port 9 of loopback: the download fails at once, online or not.
    for var in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(WeightsUnavailable, match="--weights PATH"):
        Embedder(make_spec("mobilenet_v2", None, (96, 96)))
