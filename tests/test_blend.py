"""The colour vector and the blended default search: the descriptor on hand-made photos, the
re-rank against a numpy twin on both stores, eval and query agreeing, the ingest stage."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from conftest import ingest_args
from PIL import Image
from qdrant_client import QdrantClient
from typer.testing import CliRunner

from classifier.schemes import FINE_TYPE_TAG, TUNED_VECTOR, conf_field, pred_field
from embedder.colour import (
    COLOUR_DIM,
    COLOUR_VECTOR,
    INPUT_SIZE,
    WHITE_BALANCE_GAINS,
    cast_tolerant_descriptors,
    colour_descriptors,
    white_balance_variants,
)
from embedder.images import load_image, prepare_photo, query_views, was_cut_out
from ingest.catalog import read_catalog
from qdrant import PointData
from qdrant.base import Hit, unit_rows
from qdrant.edge import EdgeStore
from qdrant.server import ServerStore
from searchctl.cli import app
from searchctl.evaluate import (
    QuerySet,
    SearchMode,
    blend_ids,
    evaluate,
    photo_queries,
    stored_queries,
)
from searchctl.query import (
    DEFAULT_BLEND,
    NEAR_EXACT,
    NEAREST_SHAPE,
    TAG_WEIGHTS,
    Blend,
    CutoutWeights,
    Searcher,
    best_cosines,
    default_blend,
    rerank,
    search_by_id,
    search_candidates,
    tag_agreement,
    voted_type,
)

runner = CliRunner()


def _photo(colour, top=20, left=15, height=40, width=30) -> np.ndarray:
    img = np.full((80, 60, 3), 255, np.uint8)
    img[top : top + height, left : left + width] = colour
    return img


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_colour_descriptor_sees_the_product_not_the_background():
    red, red_moved, navy, black = colour_descriptors(
        np.stack(
            [
                _photo((200, 20, 30)),
                _photo((200, 20, 30), top=30, left=20, height=30, width=25),
                _photo((20, 30, 110)),
                _photo((10, 10, 10)),
            ]
        )
    )
    assert red.shape == (COLOUR_DIM,)
    assert _cos(red, red_moved) == pytest.approx(1.0)  # where and how big do not matter
    assert _cos(red, navy) == pytest.approx(0.0)
    assert _cos(navy, black) == pytest.approx(0.0)
    assert np.sum(red**2) == pytest.approx(1.0)  # square roots of fractions: unit length
    blank = colour_descriptors(np.full((1, 80, 60, 3), 255, np.uint8))[0]
    assert not blank.any()  # all background: no colour to match on


def test_colour_descriptor_bins_by_hand():
    # PIL's HSV: red hue 0, green 85, blue 170 of 256; all fully saturated and bright. Bin =
    # (hue bin of 12 x 3 saturation + saturation bin) x 3 values + value bin; greys after 108.
    pure = np.stack([_photo(c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255), (128, 128, 128)]])
    descriptors = colour_descriptors(pure)
    assert [np.flatnonzero(d).tolist() for d in descriptors] == [[8], [35], [71], [110]]
    assert descriptors.max(axis=1) == pytest.approx(1.0)


def test_one_of_the_white_balance_rows_undoes_a_cameras_cast():
    photo = _photo((150, 90, 120))
    variants = white_balance_variants(photo)
    assert variants.shape == (len(WHITE_BALANCE_GAINS), 80, 60, 3) == (7, 80, 60, 3)
    assert any(np.array_equal(v, photo) for v in variants)  # no cast is one of them
    assert (variants[:, 0, 0] == 255).all()  # the white background stays white
    assert len({tuple(v[40, 30]) for v in variants}) == 7  # the product is tinted 7 ways
    catalog = colour_descriptors(photo[None])[0]
    tinted = np.clip(photo * np.array([1.12, 0.95, 0.93]), 0, 255).astype(np.uint8)
    tinted[(photo == 255).all(axis=-1)] = 255  # the cut-out's background is whitened after
    assert colour_descriptors(tinted[None])[0] @ catalog == pytest.approx(0.0)  # hue bin moved
    assert (cast_tolerant_descriptors(tinted) @ catalog).max() == pytest.approx(1.0)


def test_a_cut_out_photo_gets_its_own_weights_unless_weights_are_asked_for():
    blend = Blend(0.3, 0.1, 50, cut_out=CutoutWeights(0.7, 0.02, 0.0))
    assert blend.for_photo(False) == blend
    cut = blend.for_photo(True)
    assert (cut.colour_weight, cut.tag_weight, cut.candidates, cut.cut_out) == (0.7, 0.02, 50, None)
    asked = blend.with_weights(colour_weight=0.5)
    assert asked.for_photo(True).colour_weight == asked.for_photo(False).colour_weight == 0.5
    assert asked.for_photo(True).tag_weight == 0.02 and asked.for_photo(False).tag_weight == 0.1


def test_the_nearest_candidates_vote_a_cut_out_photos_type_weighted_by_how_near_they_are():
    """Two jeans just ahead of a pair of trousers outvote it; the vote's share is its
    confidence. Among the nearest voters only; a candidate without a type has no vote."""
    hits = [Hit(3, 0.79, None), Hit(1, 0.80, None), Hit(2, 0.795, None), Hit(4, 0.60, None)]
    tags_of = {1: {"articleType": "Jeans"}, 2: {"articleType": "Jeans"}}
    tags_of |= {3: {"articleType": "Trousers"}, 4: {"articleType": "Shorts"}}
    jeans = 1 + np.exp(-0.005 / 0.005)
    share = jeans / (jeans + np.exp(-0.01 / 0.005))
    assert voted_type(hits, tags_of, 3) == {
        pred_field(FINE_TYPE_TAG): "Jeans",
        conf_field(FINE_TYPE_TAG): pytest.approx(share, abs=1e-4),
    }
    assert voted_type(hits[:1], tags_of, 3)[pred_field(FINE_TYPE_TAG)] == "Trousers"
    assert voted_type(hits, {1: {}, 2: None}, 2) == {}


def test_a_cut_out_photo_ranks_by_its_voted_type_not_its_mistaken_prediction():
    """The tagger calls the phone photo trousers (0.9 sure); its three nearest candidates
    are two jeans and a pair of trousers. By its prediction the trousers climb to the top;
    by the candidates' vote (DEFAULT_BLEND's cut-out weights) the jeans keep it. A studio
    photo keeps its own prediction."""
    hits = [Hit(1, 0.80, None), Hit(2, 0.795, None), Hit(3, 0.79, None)]
    tags_of = {1: {"articleType": "Jeans"}, 2: {"articleType": "Jeans"}}
    tags_of |= {3: {"articleType": "Trousers"}}
    query = {pred_field(FINE_TYPE_TAG): "Trousers", conf_field(FINE_TYPE_TAG): 0.9}
    predicted = replace(DEFAULT_BLEND.for_photo(False), near_exact=None, colour_weight=0.0)
    assert [h.id for h in rerank(hits, {}, query, tags_of, predicted)][0] == 3
    cut = replace(DEFAULT_BLEND.for_photo(True), near_exact=None, colour_weight=0.0)
    assert cut.type_voters and cut.type_weight and not predicted.type_voters
    scored = rerank(hits, {}, query, tags_of, cut)
    assert [h.id for h in scored] == [1, 2, 3]
    shares = voted_type(hits, tags_of, cut.type_voters)[conf_field(FINE_TYPE_TAG)]
    lift = (cut.tag_weight * TAG_WEIGHTS[FINE_TYPE_TAG] + cut.type_weight) * shares
    assert scored[0].score == pytest.approx(0.80 + lift, abs=1e-4)
    # Eval re-ranks a cut-out query (one with colour variants) the same way.
    queries = QuerySet([9, 10], [query, query], {COLOUR_VECTOR: np.zeros((2, 4))}, False)
    queries.variants = {COLOUR_VECTOR: {1: np.zeros((2, 4))}}
    blend = replace(DEFAULT_BLEND, near_exact=None, colour_weight=0.0)
    ranked = blend_ids([hits, hits], queries, blend, {COLOUR_VECTOR: {}}, tags_of)
    assert [r[0] for r in ranked] == [3, 1]


def test_a_query_vector_of_several_rows_scores_each_hit_by_its_best_row():
    e1, e2 = np.eye(2, dtype=np.float32)
    colours = {1: e1, 2: 0.6 * e1 + 0.8 * e2}
    rows = np.stack([e2, e1])
    assert best_cosines(rows, colours) == {1: pytest.approx(1.0), 2: pytest.approx(0.8)}
    assert best_cosines(e2, colours) == {1: pytest.approx(0.0), 2: pytest.approx(0.8)}
    hits = [Hit(1, 0.5, None), Hit(2, 0.5, None)]
    blend = Blend(colour_weight=1.0, tag_weight=0.0)
    scored = rerank(hits, {COLOUR_VECTOR: best_cosines(rows, colours)}, None, {}, blend)
    assert [(h.id, h.score) for h in scored] == [(1, pytest.approx(1.5)), (2, pytest.approx(1.3))]
    # Eval re-ranks a query with its rows too, where it has them.
    queries = QuerySet([9, 10], [{}, {}], {COLOUR_VECTOR: np.stack([e2, e2])}, False)
    queries.variants = {COLOUR_VECTOR: {1: rows}}
    assert blend_ids([hits, hits], queries, blend, {COLOUR_VECTOR: colours}, {}) == [[2, 1], [1, 2]]


def test_a_near_exact_match_keeps_the_top_above_look_alikes_the_side_scores_lift():
    """The very product (shape 0.99, colour 0.96) against look-alikes the tuned vector lifts:
    blended alone, both pass it; with near_exact it stays first. The same shape in another
    colour (4: shape 0.96, colour 0.2) is not near-exact. Scores still fall."""
    hits = [Hit(1, 0.99, None), Hit(2, 0.93, None), Hit(3, 0.92, None), Hit(4, 0.96, None)]
    sides = {
        COLOUR_VECTOR: {1: 0.96, 2: 0.99, 3: 1.0, 4: 0.2},
        TUNED_VECTOR: {1: 0.5, 2: 0.9, 3: 0.95, 4: 0.9},
    }
    plain = Blend(colour_weight=0.7, tag_weight=0.0, tuned_weight=1.0)
    assert [h.id for h in rerank(hits, sides, None, {}, plain)] == [3, 2, 1, 4]
    pinned = replace(plain, near_exact=0.95)
    scored = rerank(hits, sides, None, {}, pinned)
    assert [h.id for h in scored] == [1, 3, 2, 4]
    scores = [h.score for h in scored]
    assert scores == sorted(scores, reverse=True)
    assert scored[-1].score == pytest.approx(0.96 + 0.7 * 0.2 + 0.9)  # the rest as before
    assert pinned.most_added == pytest.approx(1.7)


def test_the_nearest_candidate_near_exact_in_colour_keeps_the_top_under_near_exact_shape():
    """A photo sharper than the catalog's finds its product nearest at a shape cosine under
    near_exact (1: 0.90, colour 0.97); look-alikes with more tuned cosine pass it unless
    nearest_shape pins it. Not pinned: the nearest in another colour, or below
    nearest_shape; only the nearest is pinned (2 is as close in colour)."""
    hits = [Hit(1, 0.90, None), Hit(2, 0.89, None), Hit(3, 0.88, None)]
    sides = {COLOUR_VECTOR: {1: 0.97, 2: 0.97, 3: 0.9}, TUNED_VECTOR: {1: 0.5, 2: 0.6, 3: 0.95}}
    blend = Blend(colour_weight=0.7, tag_weight=0.0, tuned_weight=1.0, near_exact=0.95)
    assert [h.id for h in rerank(hits, sides, None, {}, blend)] == [3, 2, 1]
    nearest = replace(blend, nearest_shape=0.85)
    assert [h.id for h in rerank(hits, sides, None, {}, nearest)] == [1, 3, 2]
    other_colour = {**sides, COLOUR_VECTOR: {**sides[COLOUR_VECTOR], 1: 0.6}}
    assert [h.id for h in rerank(hits, other_colour, None, {}, nearest)] == [3, 2, 1]
    too_far = replace(blend, nearest_shape=0.91)
    assert [h.id for h in rerank(hits, sides, None, {}, too_far)] == [3, 2, 1]


# -- the re-rank ---------------------------------------------------------------------------------
TYPES = ["Shirts", "Tops", "Heels"]
GENDERS = ["Men Apparel", "Women Apparel", "Women Footwear", "Men Footwear"]


def _points(n: int = 60, seed: int = 11) -> list[PointData]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 8)) * 2
    points = []
    for i in range(n):
        shape = centres[i % 3] + rng.normal(size=8)
        payload = {
            "articleType": TYPES[i % 3],
            "baseColour": ["Red", "Blue"][i % 2],
            # The classifier's guesses: the type wrong for every fifth product.
            "pred_articleType": TYPES[(i + (i % 5 == 0)) % 3],
            "pred_articleType_conf": round(float(rng.uniform(0.3, 1.0)), 4),
            "pred_gender_master": GENDERS[i % 4],
            "pred_gender_master_conf": round(float(rng.uniform(0.3, 1.0)), 4),
        }
        vectors = {"shape": shape, COLOUR_VECTOR: rng.random(6), TUNED_VECTOR: rng.normal(size=5)}
        points.append(PointData(i + 1, vectors, payload))
    return points


@pytest.fixture(params=["edge", "memory"])
def store(request, tmp_path):
    s = EdgeStore(tmp_path) if request.param == "edge" else ServerStore(QdrantClient(":memory:"))
    s.create_collection("c", {"shape": 8, COLOUR_VECTOR: 6, TUNED_VECTOR: 5}, {}, {})
    s.upsert("c", _points())
    yield s
    s.close()


def _numpy_blend(points, query: int, blend: Blend, top: int) -> list[tuple[int, float]]:
    """An independent computation: exact shape neighbours, then the blended score."""

    def unit(name):
        m = np.stack([p.vectors[name] for p in points])
        return m / np.linalg.norm(m, axis=1, keepdims=True)

    shape, colour, tuned = unit("shape"), unit(COLOUR_VECTOR), unit(TUNED_VECTOR)
    q = [p.id for p in points].index(query)
    cos = shape @ shape[q]
    cand = np.argsort(-cos, kind="stable")[: blend.candidates]
    if blend.tuned_weight and blend.tuned_candidates:  # the tuned vector's nearest join
        near = np.argsort(-(tuned @ tuned[q]), kind="stable")[: blend.tuned_candidates]
        cand = np.concatenate([cand, [i for i in near if i not in cand]]).astype(int)
    tags = np.zeros(len(cand))
    mine = points[q].payload
    for row, c in enumerate(cand):
        theirs = points[c].payload
        if theirs["articleType"] == mine["pred_articleType"]:  # a label counts as sure
            tags[row] += mine["pred_articleType_conf"]
        if theirs["pred_gender_master"] == mine["pred_gender_master"]:  # no label: predicted
            tags[row] += mine["pred_gender_master_conf"] * theirs["pred_gender_master_conf"]
    score = (
        cos[cand]
        + blend.colour_weight * (colour[cand] @ colour[q])
        + blend.tuned_weight * (tuned[cand] @ tuned[q])
        + blend.tag_weight * tags
    )
    order = np.argsort(-score, kind="stable")[:top]
    return [(points[cand[i]].id, float(score[i])) for i in order]


def test_tag_agreement_weighs_each_shared_tag_by_both_confidences():
    query = {"pred_articleType": "Tops", "pred_articleType_conf": 0.5,
             "pred_gender_master": "Women Apparel", "pred_gender_master_conf": 0.8}  # fmt: skip
    same_type = {"pred_articleType": "Tops", "pred_articleType_conf": 0.9,
                 "pred_gender_master": "Men Apparel", "pred_gender_master_conf": 1.0}  # fmt: skip
    assert tag_agreement(query, same_type) == pytest.approx(0.45)
    both = {**same_type, "pred_gender_master": "Women Apparel"}
    assert tag_agreement(query, both) == pytest.approx(0.45 + 0.8)
    assert tag_agreement(query, {"subCategory": "Topwear"}) == 0.0  # not tagged: no agreement
    assert tag_agreement(None, both) == 0.0


def test_a_candidates_labels_stand_for_its_predicted_gender_master_and_type():
    query = {"pred_articleType": "Tops", "pred_articleType_conf": 0.5,
             "pred_gender_master": "Women Apparel", "pred_gender_master_conf": 0.8,
             "pred_subCategory": "Topwear", "pred_subCategory_conf": 0.9}  # fmt: skip
    # Predicted a Men's Tshirt (sure), labelled a Women's Top: the labels count, as sure.
    hit = {"pred_articleType": "Tshirts", "pred_articleType_conf": 0.95,
           "pred_gender_master": "Men Apparel", "pred_gender_master_conf": 0.9,
           "pred_subCategory": "Topwear", "pred_subCategory_conf": 0.5,
           "articleType": "Tops", "gender": "Women", "masterCategory": "Apparel",
           "subCategory": "Bottomwear"}  # fmt: skip
    assert tag_agreement(query, hit) == pytest.approx(0.5 * 1.0 + 0.8 * 1.0 + 0.9 * 0.5)
    # Without labels (a catalog that has none), the predicted tags count.
    unlabelled = {k: v for k, v in hit.items() if k.startswith("pred_")}
    assert tag_agreement(query, unlabelled) == pytest.approx(0.9 * 0.5)
    # A gender without a masterCategory is no gender+master label.
    assert tag_agreement(query, {**unlabelled, "gender": "Women"}) == pytest.approx(0.45)


@pytest.mark.parametrize("tuned_candidates", [0, 8])
def test_blended_search_matches_numpy_on_both_stores(store, tuned_candidates):
    points = _points()
    blend = Blend(0.5, 0.4, candidates=10, tuned_weight=3.0, tuned_candidates=tuned_candidates)
    joined = 0
    for query in (1, 7, 30, 55):
        result = search_by_id(store, "c", query, top=5, vector="shape", blend=blend)
        expected = _numpy_blend(points, query, blend, 5)
        assert [h.id for h in result.hits] == [i for i, _ in expected]
        assert [h.score for h in result.hits] == pytest.approx([s for _, s in expected], abs=1e-5)
        assert [h.payload for h in result.hits] == [points[i - 1].payload for i, _ in expected]
        plain = search_by_id(store, "c", query, top=5, vector="shape")
        assert [h.id for h in result.hits] != [h.id for h in plain.hits] or query == 1
        shape_only = _numpy_blend(points, query, replace(blend, tuned_candidates=0), 5)
        joined += [i for i, _ in expected] != [i for i, _ in shape_only]
    assert joined == (4 if tuned_candidates else 0)  # the tuned vector's nearest made it
    # A photo query runs the two searches side by side: the same candidates.
    from concurrent.futures import ThreadPoolExecutor

    [own] = store.retrieve("c", [7], with_vectors=True)
    args = (store, "c", own.vectors["shape"], "shape", own.vectors, blend, 10, None)
    with ThreadPoolExecutor(1) as pool:
        assert search_candidates(*args, pool=pool) == search_candidates(*args)


@pytest.mark.parametrize("tuned_candidates", [0, 8])
def test_eval_blend_mode_scores_what_query_returns(store, tuned_candidates):
    blend = Blend(0.5, 0.4, candidates=20, tuned_weight=0.7, tuned_candidates=tuned_candidates)
    ids = sorted(store.ids("c"))
    mode = SearchMode("shape+blend", "shape", blend=blend)
    assert mode.vectors == ("shape", COLOUR_VECTOR, TUNED_VECTOR)
    queries = stored_queries(store, "c", ids, list(mode.vectors))
    report = evaluate(store, "c", queries, [mode], k=5, exact=True)
    hits = report.results[0].hits
    for row, query in enumerate(queries.ids):
        # Leave-one-out: the query's own point is dropped, so eval searches one more.
        one_more = Blend(0.5, 0.4, 21, 0.7, tuned_candidates + 1 if tuned_candidates else 0)
        result = search_by_id(store, "c", query, 6, "shape", blend=one_more)
        assert hits[row] == [h.id for h in result.hits if h.id != query][:5], query


# -- the ingest stage and the command ------------------------------------------------------------
def test_ingest_stores_colours_once_and_query_blends(tiny_catalog, tiny_weights, data_dir):
    args = ingest_args(tiny_catalog, tiny_weights, "--no-autoencoder", "--no-classifier", "--json")
    first = json.loads(runner.invoke(app, args).stdout)
    assert first["colour"]["action"] == "described" and first["colour"]["described"] == 24
    again = json.loads(runner.invoke(app, args).stdout)
    assert again["colour"]["action"] == "up_to_date"

    store = EdgeStore(data_dir)
    point = store.retrieve(first["collection"], [5], with_vectors=[COLOUR_VECTOR])[0]
    own = colour_descriptors(load_image(tiny_catalog / "images" / "5.jpg", *INPUT_SIZE)[None])[0]
    np.testing.assert_allclose(point.vectors[COLOUR_VECTOR], own / np.linalg.norm(own), atol=1e-6)
    store.close()

    blended = json.loads(runner.invoke(app, ["query", "--id", "5", "--json"]).stdout)
    assert blended["blend"] == {
        "colour_weight": 0.3,
        "tag_weight": 0.0,
        "tuned_weight": 0.0,
        "candidates": 100,
        "tuned_candidates": 0,
        "tag_weights": TAG_WEIGHTS,
        # a cut-out photo's weights, with no tags here either
        "cut_out": {
            "colour_weight": DEFAULT_BLEND.cut_out.colour_weight,
            "tag_weight": 0.0,
            "tuned_weight": 0.0,
            "type_weight": 0.0,
            "type_voters": 0,
        },
        "near_exact": NEAR_EXACT,
        "nearest_shape": NEAREST_SHAPE,
        "type_weight": 0.0,
        "type_voters": 0,
    }
    assert blended["hits"][0]["id"] == 5
    fewer = runner.invoke(app, ["query", "--id", "5", "--candidates", "7", "--json"])
    assert json.loads(fewer.stdout)["blend"]["candidates"] == 7
    plain = json.loads(runner.invoke(app, ["query", "--id", "5", "--plain", "--json"]).stdout)
    assert plain["blend"] is None
    photo = runner.invoke(app, ["query", str(tiny_catalog / "images" / "6.jpg")])
    assert photo.exit_code == 0, photo.output
    assert "re-ranked: colour x0.3" in photo.stdout


def test_colour_weight_without_colour_vectors_is_a_clear_error(
    tiny_catalog, tiny_weights, data_dir
):
    args = ingest_args(
        tiny_catalog, tiny_weights, "--no-colour", "--no-autoencoder", "--no-classifier"
    )
    assert runner.invoke(app, args).exit_code == 0
    plain = json.loads(runner.invoke(app, ["query", "--id", "5", "--json"]).stdout)
    assert plain["blend"] is None  # nothing to re-rank by: plain cosine
    result = runner.invoke(app, ["query", "--id", "5", "--colour-weight", "0.5"])
    assert result.exit_code == 2, result.output
    assert "no colour vectors" in result.stderr and "searchctl ingest" in result.stderr
    result = runner.invoke(app, ["query", "--id", "5", "--tuned-weight", "1"])
    assert result.exit_code == 2, result.output
    assert "no tuned vectors" in result.stderr and "--kind finetune" in result.stderr


def _phone_like(photo: Image.Image, cast=(1.12, 0.95, 0.93)) -> Image.Image:
    """The catalog photo enlarged on a green table, the whole shot with a colour cast."""
    table = np.full((320, 240, 3), (90, 140, 70), np.float32)
    table[60:220, 50:170] = np.asarray(photo.resize((120, 160)), np.float32)
    return Image.fromarray(np.clip(table * np.array(cast), 0, 255).astype(np.uint8))


def test_cut_out_photos_match_colour_under_any_white_balance_in_query_and_eval(
    tiny_catalog, tiny_weights, data_dir, tmp_path
):
    args = ingest_args(tiny_catalog, tiny_weights, "--no-autoencoder", "--no-classifier", "--json")
    collection = json.loads(runner.invoke(app, args).stdout)["collection"]
    shots = tmp_path / "shots"
    (shots / "images").mkdir(parents=True)
    lines = (tiny_catalog / "styles.csv").read_text().splitlines()
    (shots / "styles.csv").write_text("\n".join(lines[:9]) + "\n")  # products 1-8
    for i in range(1, 9):
        photo = Image.open(tiny_catalog / "images" / f"{i}.jpg").convert("RGB")
        _phone_like(photo).save(shots / "images" / f"{i}.jpg", quality=95)

    with EdgeStore(data_dir) as store:
        searcher = Searcher(store, collection, tiny_weights, compiled=False, data_dir=data_dir)
        studio = prepare_photo(tiny_catalog / "images" / "5.jpg")
        assert not was_cut_out(studio) and searcher.colour_rows(studio).shape == (COLOUR_DIM,)
        # A cut-out photo gets its own weights, in both paths.
        blend = replace(default_blend(store, collection), cut_out=CutoutWeights(3.0, 0.0, 0.0))
        mode = SearchMode("blend", searcher.spec.vector_name, blend=blend)
        queries, skipped = photo_queries(read_catalog(shots), searcher, mode.vectors)
        assert not skipped and len(queries.ids) == 8
        cut = [row for row, i in enumerate(queries.ids) if was_cut_out(prepare_photo(
            shots / "images" / f"{i}.jpg"))]  # fmt: skip
        assert len(cut) >= 6  # the table is taken off most of them
        assert sorted(queries.variants[COLOUR_VECTOR]) == cut
        for row in cut:
            photo = prepare_photo(shots / "images" / f"{queries.ids[row]}.jpg")
            rows = searcher.colour_rows(photo)
            assert rows.shape == (len(WHITE_BALANCE_GAINS), COLOUR_DIM)
            np.testing.assert_allclose(queries.variants[COLOUR_VECTOR][row], rows)
        # Eval ranks these photos as `searchctl query` does.
        report = evaluate(store, collection, queries, [mode], k=5, exact=True)
        for row, i in enumerate(queries.ids):
            found = searcher.search_image(shots / "images" / f"{i}.jpg", top=5, blend=blend)
            assert report.results[0].hits[row] == [h.id for h in found.hits], i
            assert found.blend.colour_weight == (3.0 if row in cut else 0.3)
        # (and it changes their ranking here, so the check above could fail)
        base = evaluate(store, collection, queries, [replace(mode, blend=replace(
            blend, cut_out=None))], k=5, exact=True)  # fmt: skip
        assert any(report.results[0].hits[r] != base.results[0].hits[r] for r in cut)
        studio_hits = searcher.search_image(tiny_catalog / "images" / "5.jpg", blend=blend)
        assert studio_hits.blend.colour_weight == 0.3


def test_a_photo_query_runs_numpy_blas_on_one_thread():
    from threadpoolctl import threadpool_info

    from searchctl.query import Searcher, one_blas_thread

    def blas_threads() -> set[int]:
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    seen = []
    probe = one_blas_thread(lambda: seen.append(blas_threads()))
    before = blas_threads()
    probe()
    assert seen == [{1}] and blas_threads() == before
    assert Searcher.search_image.__wrapped__  # the photo search is the one wrapped


def test_a_cut_out_photo_is_searched_with_its_query_views_pooled(
    tiny_catalog, tiny_weights, data_dir
):
    """A shopper's photo (cut out) is searched with the mean direction of its own and its
    mirrored and turned views' backbone vectors; a studio photo with its own vector, which
    finds its stored self at a cosine of 1."""
    args = ingest_args(tiny_catalog, tiny_weights, "--no-autoencoder", "--no-classifier", "--json")
    collection = json.loads(runner.invoke(app, args).stdout)["collection"]
    photo = Image.open(tiny_catalog / "images" / "3.jpg").convert("RGB")
    shot = _phone_like(photo)
    with EdgeStore(data_dir) as store:
        searcher = Searcher(store, collection, tiny_weights, compiled=False, data_dir=data_dir)
        vector = searcher.spec.vector_name
        cut = searcher.prepare(shot)
        assert was_cut_out(cut)
        pixels = np.stack([searcher.fit(cut, vector), searcher.fit(photo, vector)])
        views = query_views(pixels[:1])
        assert views.shape == (1, 3, *pixels.shape[1:])
        assert np.array_equal(views[0, 0], pixels[0, :, ::-1])  # mirrored
        assert (views[0, 1:, 0, 0] == 255).all()  # turned on white: corners are white
        own = searcher.backbone.embed(pixels)
        seen = searcher.backbone.embed(views[0])
        expected = unit_rows(unit_rows(own[:1]) + unit_rows(seen).sum(axis=0))[0]
        pooled, _ = searcher.embed_pixels(pixels, [True, False])
        np.testing.assert_allclose(unit_rows(pooled[:1])[0], expected, atol=1e-5)
        assert np.linalg.norm(pooled[0]) == pytest.approx(np.linalg.norm(own[0]), rel=1e-5)
        np.testing.assert_allclose(pooled[1], own[1], atol=1e-6)  # the studio photo's own
        assert not np.allclose(unit_rows(own[:1])[0], expected, atol=1e-3)
        np.testing.assert_allclose(
            unit_rows(searcher.embed_image(shot)[None])[0], expected, atol=1e-5
        )
        # The search uses them: its scores are cosines with the pooled vector.
        found = searcher.search_image(shot, top=3)
        scores = store.score(collection, expected, vector, [h.id for h in found.hits])
        assert [h.score for h in found.hits] == pytest.approx([scores[h.id] for h in found.hits])
        studio = searcher.search_image(tiny_catalog / "images" / "3.jpg", top=1)
        assert studio.hits[0].id == 3 and studio.hits[0].score == pytest.approx(1.0, abs=1e-5)
