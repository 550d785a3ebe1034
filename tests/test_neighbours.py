"""Tags voted by neighbours in the tuned vector: the vote by hand, exact neighbours, and a
collection's tags, a photo's and an audit's ranking on both stores against an independent
brute force."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import KINDS
from qdrant_client import QdrantClient

from classifier import audit
from classifier.audit import Finding, audit_collection, with_agreement
from classifier.neighbours import nearest, vote, voted_tags
from classifier.schemes import SCHEMES, TUNED_VECTOR, SchemeClasses, scheme_label
from classifier.tagger import TaggerRecord, read_record
from classifier.train import tag_by_neighbours, vote_pending
from qdrant import PointData
from qdrant.edge import EdgeStore
from qdrant.server import ServerStore


def test_the_vote_by_hand():
    shirts_tops = [SchemeClasses("articleType", ("Shirts", "Tops"), {"Heels": 3})]
    payloads = [{"articleType": "Shirts"}, {"articleType": "Tops"}, {"articleType": "Heels"}]
    [even] = vote(shirts_tops, [payloads], [[0.9, 0.9, 0.9]])
    np.testing.assert_allclose(even, [[1 / 3, 1 / 3]])  # the left-out Heels keep their share
    [near_first] = vote(shirts_tops, [payloads, []], [[0.9, 0.88, 0.5], []])
    total = 1 + np.exp(-1) + np.exp(-20)
    np.testing.assert_allclose(near_first, [[1 / total, np.exp(-1) / total], [0, 0]])


def test_nearest_finds_what_brute_force_finds_and_skips_itself():
    rng = np.random.default_rng(4)
    vectors = rng.normal(size=(300, 8))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    skip = np.arange(50)
    skip[7] = -1  # this one may find itself
    index, cosine = nearest(vectors[:50], vectors, 5, skip=skip)
    for q in range(50):
        scores = vectors @ vectors[q]
        if q != 7:
            scores[q] = -np.inf
        expected = np.argsort(-scores, kind="stable")[:5]
        assert list(index[q]) == list(expected)
        np.testing.assert_allclose(cosine[q], scores[expected], rtol=1e-5)
    assert index[7][0] == 7


def _voted(schemes, payloads, vectors, query, among) -> dict:
    """An independent vote: brute-force cosines to the rows `among`, the 20 best, each
    weighted exp((cosine - best) / 0.02), shares of the whole weight."""
    cosines = vectors[among] @ (query / np.linalg.norm(query))
    near = np.argsort(-cosines, kind="stable")[:20]
    weights = np.exp((cosines[near] - cosines[near[0]]) / 0.02)
    weights /= weights.sum()
    out = {}
    for sc in schemes:
        share = dict.fromkeys(sc.classes, 0.0)
        for j, w in zip(near, weights):
            label = scheme_label(sc.scheme, payloads[among[j]])
            if label in share:
                share[label] += w
        best = max(sc.classes, key=lambda c: share[c])  # the first of the best, as argmax
        out[f"pred_{sc.scheme}"], out[f"pred_{sc.scheme}_conf"] = best, round(share[best], 4)
    return out


N = 64


def _catalog(seed: int = 2) -> tuple[list[dict], np.ndarray]:
    """Labelled products whose tuned vectors cluster by kind, a few far from their kind."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(KINDS), 6)) * 1.5
    payloads, vectors = [], []
    for i in range(N):
        kind = i % len(KINDS) if i % 9 else (i + 1) % len(KINDS)  # every 9th sits elsewhere
        g, m, s, a, _ = KINDS[i % len(KINDS)]
        payloads.append({"gender": g, "masterCategory": m, "subCategory": s, "articleType": a})
        vectors.append(centres[kind] + rng.normal(size=6))
    vectors = np.array(vectors)
    return payloads, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture(params=["edge", "memory"])
def store(request, tmp_path):
    s = EdgeStore(tmp_path) if request.param == "edge" else ServerStore(QdrantClient(":memory:"))
    payloads, vectors = _catalog()
    s.create_collection("c", {TUNED_VECTOR: 6}, {}, {})
    s.upsert("c", [PointData(i + 1, {TUNED_VECTOR: v}, p) for i, (p, v) in
                   enumerate(zip(payloads, vectors))])  # fmt: skip
    yield s
    s.close()


def _record(payloads) -> TaggerRecord:
    schemes = [SchemeClasses.from_payloads(s, payloads, 5) for s in SCHEMES]
    return TaggerRecord("finetune", {}, [80, 60, 3], schemes, 5, 0, model_file="tagger-a.keras",
                        test_ids=list(range(1, N + 1, 5)))  # fmt: skip


def test_a_collection_is_tagged_by_the_vote_of_each_products_neighbours(store, tmp_path):
    payloads, vectors = _catalog()
    record = _record(payloads)
    assert tag_by_neighbours(store, "c", tmp_path, record, everyone=True) == N
    stored = {p.id: p.payload for p in store.retrieve("c", range(1, N + 1))}
    for row in range(N):
        others = np.array([r for r in range(N) if r != row])
        expected = _voted(record.schemes, payloads, vectors, vectors[row], others)
        for field, value in expected.items():
            assert stored[row + 1][field] == pytest.approx(value, abs=1e-4), (row, field)
        assert stored[row + 1]["pred_voted_by"] == "tagger-a.keras"
    # The test products are voted by the products outside the test part only, and measured.
    saved = read_record(tmp_path)
    test = np.arange(0, N, 5)  # ids 1, 6, 11, ...: every kind
    known = np.array([r for r in range(N) if r % 5])
    for sc in record.schemes:
        right = [
            _voted(record.schemes, payloads, vectors, vectors[r], known)[f"pred_{sc.scheme}"]
            == scheme_label(sc.scheme, payloads[r])
            for r in test
        ]
        assert saved.neighbour_metrics[sc.scheme]["accuracy"] == pytest.approx(
            np.mean(right), abs=1e-4
        )
    assert 0 < saved.neighbour_metrics["articleType"]["accuracy"] < 1  # the odd ones miss
    # Nothing left to vote, unless told everyone.
    assert tag_by_neighbours(store, "c", tmp_path, saved, everyone=False) == 0
    # A vote of everyone measures again (its vectors or products may be new); others do not.
    measured = saved.neighbour_metrics
    saved.neighbour_metrics = {"articleType": {"accuracy": -1.0}}
    tag_by_neighbours(store, "c", tmp_path, saved, everyone=False)
    assert saved.neighbour_metrics["articleType"]["accuracy"] == -1.0
    assert tag_by_neighbours(store, "c", tmp_path, saved, everyone=True) == N
    assert saved.neighbour_metrics == measured == read_record(tmp_path).neighbour_metrics


def test_a_photo_is_tagged_by_the_stores_nearest_products(store):
    payloads, vectors = _catalog()
    record = _record(payloads)
    photos = np.stack([vectors[5] + 0.05, vectors[40] - 0.1])
    tags = voted_tags(store, "c", record.schemes, photos)
    everyone = np.arange(N)
    assert tags == [
        pytest.approx(_voted(record.schemes, payloads, vectors, p, everyone)) for p in photos
    ]


def test_an_audit_ranks_voted_findings_by_the_agreement_of_the_nearest(
    store, tmp_path, monkeypatch
):
    payloads, vectors = _catalog()
    record = _record(payloads)
    tag_by_neighbours(store, "c", tmp_path, record, everyone=True)
    monkeypatch.setattr(audit, "AGREEMENT_NEIGHBOURS", 10)  # 100 would be all 63 others here
    findings = audit_collection(store, "c", record, min_confidence=0.5)
    # The products sitting among another kind are found (their neighbours outvote them).
    assert {f.id for f in findings} & {row + 1 for row in range(N) if row % 9 == 0}
    for f in findings:
        cos = vectors @ vectors[f.id - 1]
        cos[f.id - 1] = -np.inf
        near = np.argsort(-cos)[:10]
        agree = np.mean([scheme_label(f.scheme, payloads[j]) == f.predicted for j in near])
        assert f.agreement == pytest.approx(agree, abs=1e-4), f
    ranks = [(-f.agreement, -f.confidence, f.id) for f in findings]
    assert ranks == sorted(ranks) and len({f.agreement for f in findings}) > 1


def test_findings_without_voted_tags_keep_their_confidence_rank():
    def finding(pid, confidence):
        return Finding(pid, "articleType", "Shirts", "Tops", confidence, False, "", None)

    near = {2: [{"articleType": "Tops"}] * 3 + [{"articleType": "Shirts"}]}
    ranked = with_agreement([finding(1, 0.95), finding(2, 1.0), finding(3, 0.7)], near)
    assert [(f.id, f.agreement) for f in ranked] == [(1, None), (2, 0.75), (3, None)]


def test_an_interrupted_vote_of_everyone_is_finished_as_one(store, tmp_path, monkeypatch):
    payloads, vectors = _catalog()
    record = _record(payloads)
    assert tag_by_neighbours(store, "c", tmp_path, record, everyone=True) == N
    assert not vote_pending(store, "c")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:  # new neighbours came: everyone is re-voted, and killed
        m.setattr(store, "set_payloads", killed)
        with pytest.raises(KeyboardInterrupt):
            tag_by_neighbours(store, "c", tmp_path, record, everyone=True)
    assert vote_pending(store, "c")
    # Every point still carries this model's (older) vote; the next vote is of everyone.
    assert tag_by_neighbours(store, "c", tmp_path, record, everyone=False) == N
    assert not vote_pending(store, "c")
    assert tag_by_neighbours(store, "c", tmp_path, record, everyone=False) == 0
