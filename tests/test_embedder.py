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


def test_onnx_runtime_gives_tensorflows_vectors_and_converts_once(tiny_weights, tmp_path,
                                                                  monkeypatch):  # fmt: skip
    from embedder.model import Embedder

    monkeypatch.setenv("SEARCHCTL_CACHE_DIR", str(tmp_path))
    spec = make_spec("mobilenet_v2", tiny_weights, (32, 32))
    images = np.random.default_rng(3).integers(0, 255, (6, 32, 32, 3), dtype=np.uint8)
    reference = Embedder(spec, runtime="tensorflow")
    onnx = Embedder(spec, runtime="onnx")
    assert (reference.runtime, onnx.runtime) == ("tensorflow", "onnx") and onnx._onnx.converted
    a, b = reference.embed(images), onnx.embed(images)
    assert b.shape == a.shape and b.dtype == np.float32
    cosine = np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cosine.min() > 0.99999
    many = np.concatenate([images] * 30)  # 180 photos: in runs of 64, in order
    assert np.allclose(onnx.embed(many), np.concatenate([b] * 30), atol=1e-5)
    assert onnx.embed(images[:0]).shape == (0, b.shape[1])
    assert np.allclose(onnx.embed(images, threads=1), b, atol=1e-5)  # a one-thread session
    assert onnx._onnx._narrow.get_session_options().intra_op_num_threads == 1
    again = Embedder(spec)  # auto: ONNX Runtime here (no GPU), from the cached file
    assert again.runtime == "onnx" and not again._onnx.converted
    assert np.allclose(again.embed(images), b)
    again._onnx.path.write_bytes(b"not a model")  # a damaged cache file is made again
    mended = Embedder(spec, runtime="onnx")
    assert mended._onnx.converted and np.allclose(mended.embed(images), b)
    with pytest.raises(ValueError, match="traced float32"):
        Embedder(spec, runtime="onnx", compiled=False)
    blocked = tmp_path / "file"  # a cache that cannot be a folder: a conversion of its own
    blocked.write_text("")
    monkeypatch.setenv("SEARCHCTL_CACHE_DIR", str(blocked))
    own = Embedder(spec)
    assert own.runtime == "onnx" and own._onnx.converted and np.allclose(own.embed(images), b)


def test_a_backbone_onnx_cannot_take_runs_under_tensorflow_with_a_warning(tiny_weights,
                                                                          monkeypatch):  # fmt: skip
    from embedder.model import Embedder
    from embedder.onnx_backbone import OnnxForward

    def unconvertible(self, forward, spec, path):
        raise ValueError("an op ONNX lacks")

    monkeypatch.setattr(OnnxForward, "_convert", unconvertible)
    monkeypatch.setenv("SEARCHCTL_CACHE_DIR", str(tiny_weights.parent / "empty-cache"))
    spec = make_spec("mobilenet_v2", tiny_weights, (32, 32))
    with pytest.warns(RuntimeWarning, match="an op ONNX lacks"):
        fallback = Embedder(spec)
    assert fallback.runtime == "tensorflow" and fallback.embed(np.zeros((1, 32, 32, 3))).shape
    with pytest.raises(ValueError, match="an op ONNX lacks"):
        Embedder(spec, runtime="onnx")
    assert Embedder(spec, compiled=False).runtime == "tensorflow"  # a one-off query's eager path
