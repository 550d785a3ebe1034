"""The autoencoder vector: architectures, deterministic and resumable training, the collection
stage (never mixing two models' vectors), queries on it, the reconstruction sheet."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from conftest import RecordingProgress, ingest_args, product_image
from PIL import Image
from typer.testing import CliRunner

from embedder.autoencoder import (
    ARCHS,
    CHECKPOINT_FILE,
    RECORD_KEY,
    AutoencoderEmbedder,
    autoencoder_dir,
    build,
    encoder_parts,
    read_record,
    train,
)
from qdrant.edge import EdgeStore
from searchctl.cli import app

runner = CliRunner()
SMALL = ARCHS["default"].__class__(
    "small", 80, 60, "letterbox", (8, 8, 4), batch_norm=True, loss="mse", batch_size=16
)


def _images(n: int = 48) -> np.ndarray:
    return np.stack([np.asarray(product_image(i).resize((60, 80))) for i in range(1, n + 1)])


@pytest.mark.parametrize("arch", ["paper", "default"])
def test_architectures_have_the_stated_shapes(arch):
    config = ARCHS[arch]
    autoencoder = build(config)
    assert autoencoder.output_shape[1:] == (config.input_height, config.input_width, 3)
    parts = encoder_parts(autoencoder, config)
    assert sum(int(out.shape[1]) for out in parts.outputs) == config.dim
    if arch == "paper":  # the paper: 60x60x3 in, 8x8x8 = 512 floats
        assert (config.input_height, config.input_width, config.dim) == (60, 60, 512)


def test_training_is_deterministic_and_saved_with_its_record(tmp_path):
    images = _images()
    runs = []
    for name in ("a", "b"):
        record = train(images, SMALL, tmp_path / name, trained_on={"n": 48}, epochs=3, seed=5)
        runs.append(record)
        assert (tmp_path / name / record.model_file).is_file()
        assert not (tmp_path / name / CHECKPOINT_FILE).exists()  # cleaned up when done
        assert read_record(tmp_path / name).model_id == record.model_id
    assert [h["val_loss"] for h in runs[0].history] == [h["val_loss"] for h in runs[1].history]
    a, b = (AutoencoderEmbedder(tmp_path / n).embed(images[:4]) for n in ("a", "b"))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (4, SMALL.dim)
    recon = AutoencoderEmbedder(tmp_path / "a").reconstruct(images[:2])
    assert recon.shape == (2, 80, 60, 3) and recon.dtype == np.uint8


def test_multiscale_embedding_is_the_first_stage_and_the_code_centred(tmp_path):
    images = _images()
    config = replace(SMALL, embedding="multiscale")
    record = train(images, config, tmp_path, trained_on={"n": 48}, epochs=1, seed=2)
    model = AutoencoderEmbedder(tmp_path)
    stage0 = np.asarray(
        __import__("keras").Model(
            model.autoencoder.input, model.autoencoder.get_layer("enc_pool0").output
        )(images)
    )  # 40 x 30 x 8 maps; the code grid is 10 x 8: 4 x 4 blocks, the outer columns 3 wide
    first, code = (np.asarray(p) for p in model.encoder(images))
    assert first.shape[1] + code.shape[1] == config.dim == 10 * 8 * (8 + 4)
    pooled = first.reshape(-1, 10, 8, 8)
    blocks = stage0[:, :, 3:27].reshape(-1, 10, 4, 6, 4, 8).mean(axis=(2, 4))
    np.testing.assert_allclose(pooled[:, :, 1:7], blocks, atol=1e-5)
    edge = stage0[:, :, :3].reshape(-1, 10, 4, 3, 8).mean(axis=(2, 3))
    np.testing.assert_allclose(pooled[:, :, 0], edge, atol=1e-5)

    np.testing.assert_allclose(record.centre[0], first.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(record.centre[1], code.mean(axis=0), atol=1e-5)
    vectors = model.embed(images)
    centred = first - first.mean(axis=0)
    expected = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors[:, : first.shape[1]], expected, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(vectors[:, first.shape[1] :], axis=1), 1, atol=1e-5)


def test_killed_training_resumes_and_keeps_the_old_model(tmp_path):
    images = _images()
    first = train(images, SMALL, tmp_path, trained_on={"n": 48}, epochs=2, seed=1)

    class Killed(Exception):
        pass

    def kill_after_two(note: str):
        if note.startswith("autoencoder epoch 2:"):
            raise Killed

    with pytest.raises(Killed):  # a retrain dies after its second epoch
        train(
            images,
            SMALL,
            tmp_path,
            trained_on={"n": 48, "v": 2},
            epochs=4,
            seed=1,
            progress=RecordingProgress(on_note=kill_after_two),
        )
    # The finished model is untouched and still in use; the checkpoint waits.
    assert read_record(tmp_path).model_id == first.model_id
    assert (tmp_path / first.model_file).is_file() and (tmp_path / CHECKPOINT_FILE).is_file()
    AutoencoderEmbedder(tmp_path).embed(images[:1])

    heard = RecordingProgress()
    resumed = train(
        images,
        SMALL,
        tmp_path,
        trained_on={"n": 48, "v": 2},
        epochs=4,
        seed=1,
        progress=heard,
    )
    # picked up after the two finished epochs
    assert heard.notes and heard.notes[0].startswith("autoencoder epoch 3:")
    assert [h["epoch"] for h in resumed.history][:2] == [1, 2]
    assert resumed.model_id != first.model_id
    assert not (tmp_path / first.model_file).exists()


# -- the collection stage and the commands --------------------------------------------------------
def _ingest(catalog, weights, *extra):
    args = ingest_args(catalog, weights, "--no-classifier", "--json", *extra)
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _state(data_dir) -> tuple[dict, dict[int, dict]]:
    store = EdgeStore(data_dir)
    (name,) = store.list_collections()
    meta = store.get_metadata(name)[RECORD_KEY]
    points = {p.id: p for p in store.retrieve(name, sorted(store.ids(name)), with_vectors=True)}
    store.close()
    return meta, points


def test_ingest_trains_embeds_and_queries_the_autoencoder(
    tiny_catalog, tiny_weights, data_dir, tmp_path
):
    report = _ingest(tiny_catalog, tiny_weights, "--autoencoder-arch", "paper")
    ae = report["autoencoder"]
    assert ae["action"] == "trained" and ae["arch"] == "paper" and ae["embedded"] == 24
    meta, points = _state(data_dir)
    assert meta["complete"] and meta["dim"] == 512
    assert all(p.vectors["autoencoder"].shape == (512,) for p in points.values())
    assert len({p.payload["ae_model"] for p in points.values()}) == 1

    again = _ingest(tiny_catalog, tiny_weights)
    assert again["autoencoder"]["action"] == "up_to_date"

    photo = tiny_catalog / "images" / "7.jpg"
    bigger = tmp_path / "big.png"
    Image.open(photo).resize((180, 240)).save(bigger)
    for query in (photo, bigger):
        result = runner.invoke(app, ["query", str(query), "--vector", "autoencoder", "--json"])
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert data["vector"] == "autoencoder" and data["hits"][0]["id"] == 7

    external = runner.invoke(app, ["eval", "--queries", str(tiny_catalog), "--json"])
    assert external.exit_code == 0, external.output
    results = json.loads(external.stdout)["results"]
    assert results["autoencoder"]["same_product_recall"] == 1.0
    assert results["mobilenet_v2"]["same_product_recall"] == 1.0

    sheet = tmp_path / "recon.png"
    shown = runner.invoke(app, ["train", "autoencoder", "--arch", "paper", "--show", str(sheet)])
    assert shown.exit_code == 0, shown.output
    assert "Every product has its autoencoder vector" in shown.stdout
    assert Image.open(sheet).size[1] > 2 * 160  # two rows of tiles: originals, reconstructions


def test_retrain_re_embeds_and_mixed_vectors_are_refused(tiny_catalog, tiny_weights, data_dir):
    _ingest(tiny_catalog, tiny_weights, "--autoencoder-arch", "paper")
    before, _ = _state(data_dir)
    refused = runner.invoke(app, ["train", "autoencoder"])  # default arch, existing is paper
    assert refused.exit_code == 2 and "--retrain" in refused.stderr

    retrained = runner.invoke(app, ["train", "autoencoder", "--retrain", "--epochs", "2", "--json"])
    assert retrained.exit_code == 0, retrained.output
    summary = json.loads(retrained.stdout)
    assert summary["action"] == "trained" and summary["embedded"] == 24
    after, points = _state(data_dir)
    assert after["model_id"] != before["model_id"] and after["complete"]
    assert after["dim"] == ARCHS["default"].dim
    assert {p.payload["ae_model"] for p in points.values()} == {after["model_id"][7:23]}
    assert all(p.vectors["autoencoder"].shape == (after["dim"],) for p in points.values())

    # An interrupted re-embed leaves the collection marked incomplete: searches are refused.
    store = EdgeStore(data_dir)
    meta = store.get_metadata("catalog0")
    meta[RECORD_KEY]["complete"] = False
    store.set_metadata("catalog0", meta)
    store.close()
    photo = str(tiny_catalog / "images" / "3.jpg")
    result = runner.invoke(app, ["query", photo, "--vector", "autoencoder"])
    assert result.exit_code == 2 and "not all from the current model" in result.stderr
    assert runner.invoke(app, ["train", "autoencoder"]).exit_code == 0  # finishes the job
    assert runner.invoke(app, ["query", photo, "--vector", "autoencoder"]).exit_code == 0
    assert autoencoder_dir(data_dir, "catalog0").is_dir()


def test_a_lost_image_blocks_searches_only_when_an_old_vector_remains(
    tmp_path, tiny_weights, data_dir
):
    from conftest import make_catalog

    catalog = make_catalog(tmp_path / "shop", n=24)
    _ingest(catalog, tiny_weights, "--no-autoencoder")
    (catalog / "images" / "5.jpg").unlink()  # lost before it ever had an autoencoder vector
    first = runner.invoke(app, ["train", "autoencoder", "--arch", "paper", "--json"])
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert [b["id"] for b in summary["bad_images"]] == [5] and summary["embedded"] == 23
    photo = str(catalog / "images" / "9.jpg")
    assert runner.invoke(app, ["query", photo, "--vector", "autoencoder"]).exit_code == 0

    (catalog / "images" / "7.jpg").unlink()  # lost while holding the old model's vector
    args = ["train", "autoencoder", "--arch", "paper", "--retrain", "--epochs", "1"]
    assert runner.invoke(app, args).exit_code == 0
    refused = runner.invoke(app, ["query", photo, "--vector", "autoencoder"])
    assert refused.exit_code == 2 and "not all from the current model" in refused.stderr
