"""What a collection's models are, as their saved records describe them (`searchctl info`)."""

from __future__ import annotations

from pathlib import Path

from classifier.label_tags import COLOUR, load_label_taggers
from classifier.tagger import ClassifierMissing, read_record, tagger_dir
from embedder.shopper import read_shopper_record

SHOPPER_KEY = "shopper_photos"


def models_summary(data_dir: Path, collection: str) -> dict:
    """The collection's classifier and label taggers (kind, classes, inputs, test accuracy)
    and its shopper photos (how many, whether they fitted a query map)."""

    def accuracy(metrics: dict) -> dict[str, float]:
        return {scheme: round(m["accuracy"], 4) for scheme, m in metrics.items()}

    models: dict = {}
    try:
        record = read_record(tagger_dir(data_dir, collection))
    except ClassifierMissing as exc:
        models["classifier"] = {"unusable": str(exc)}
        record = None
    if record is not None:
        models["classifier"] = {
            "kind": record.kind,
            "created": record.created,
            "test_accuracy": accuracy(record.metrics),
            "vote_test_accuracy": accuracy(record.neighbour_metrics) or None,
        }
    for tagger in load_label_taggers(data_dir, collection).values():
        models[tagger.kind.name] = {
            "model": tagger.record.get("model", "logistic regression"),
            "label": tagger.kind.label,
            "classes": len(tagger.classes),
            "inputs": tagger.vectors,
            "test_accuracy": tagger.record.get("test_accuracy"),
            "shopper_photos": tagger.record.get("shopper_photos", 0),
        }
        if tagger.kind == COLOUR:
            models[tagger.kind.name]["colours"] = len(tagger.classes)  # its key before
    shoppers = read_shopper_record(data_dir, collection)
    if shoppers is not None:
        models[SHOPPER_KEY] = {
            "rows": shoppers["rows"],
            "cut_out": shoppers["cut_out"],
            "query_map": shoppers.get("map_file") is not None,
            "created": shoppers["created"],
        }
    return models


def describe_models(models: dict) -> list[str]:
    """models_summary as lines for a person."""
    lines = []
    classifier = models.get("classifier")
    if classifier and "unusable" in classifier:
        lines.append(f"classifier: {classifier['unusable']}")
    elif classifier:
        shown = classifier["vote_test_accuracy"] or classifier["test_accuracy"]
        by = "the neighbours' vote" if classifier["vote_test_accuracy"] else "the network"
        accuracy = " / ".join(f"{shown[s]:.3f}" for s in shown)
        lines.append(
            f"classifier: {classifier['kind']} ({classifier['created'][:10]}), test accuracy "
            f"{accuracy} ({' / '.join(shown)}, tags by {by})"
        )
    taggers = {key: m for key, m in models.items() if key not in ("classifier", SHOPPER_KEY)}
    for key, tagger in taggers.items():
        held = tagger["test_accuracy"]
        shoppers = tagger.get("shopper_photos")
        lines.append(
            f"{key.replace('_', ' ')}: {tagger['model']}, {tagger['classes']} "
            f"{tagger['label']} classes from {' + '.join(tagger['inputs'])}"
            + (f" (and {shoppers:,} shopper photos)" if shoppers else "")
            + (f", test accuracy {held:.3f}" if held is not None else "")
        )
    shoppers = models.get(SHOPPER_KEY)
    if shoppers:
        lines.append(
            f"shopper photos: {shoppers['rows']:,} ({shoppers['cut_out']:,} cut out; "
            f"{shoppers['created'][:10]}), "
            + ("a query map for cut-out query photos" if shoppers["query_map"] else "no query map")
        )
    return lines
