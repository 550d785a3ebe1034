"""The commands about a collection's labels and models: `audit` and `info`."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from searchctl.cli.common import (
    CollectionOpt,
    DataDir,
    JsonOpt,
    QdrantApiKey,
    QdrantUrl,
    data_dir_or_default,
    err,
    out,
    print_json,
    store_of,
)

MinConfidenceOpt = Annotated[
    float, typer.Option(min=0.0, max=1.0, help="Only predictions at least this sure.")
]
SchemeOpt = Annotated[
    list[str] | None,
    typer.Option(
        help="gender_master, subCategory, articleType, baseColour (the colour tagger's) or "
        "fineArticleType (the type tagger's, of the types the classifier leaves out; asked "
        "for only) \\[default: all the collection has but fineArticleType]."
    ),
]
CsvPathOpt = Annotated[
    Path | None, typer.Option("--csv", help="Write every finding as CSV ('-': stdout).")
]
ShowOpt = Annotated[Path | None, typer.Option(help="Contact sheet PNG of the first findings.")]


def audit(
    min_confidence: MinConfidenceOpt = 0.9,
    scheme: SchemeOpt = None,
    csv_path: CsvPathOpt = None,
    show: ShowOpt = None,
    limit: Annotated[int, typer.Option(min=1, help="Findings in the table and --show.")] = 30,
    collection: CollectionOpt = None,
    data_dir: DataDir = None,
    qdrant_url: QdrantUrl = None,
    qdrant_api_key: QdrantApiKey = None,
    as_json: JsonOpt = False,
) -> None:
    """Products whose stored label disagrees with a confident prediction: likely mislabels.

    The classifier's schemes and baseColour where the collection has a colour tagger; asked
    for, fineArticleType: the articleType labels of the types the classifier leaves out
    (under --min-class-size), where it has a type tagger (on the shared catalog a third of
    its first findings were mislabels, against two thirds for colour).

    Most convincing first: where the tags were voted by neighbours (a finetune classifier),
    by the share of the product's 100 nearest products labelled as predicted ("agree");
    otherwise by the prediction's confidence. baseColour and fineArticleType findings by
    their confidence times 1 - the share of held-out products with that label the tagger
    predicts the same way ("confused": Tan taken for Brown is common, Black for Blue is
    not)."""
    from classifier.audit import audit as find_findings
    from classifier.audit import write_csv
    from searchctl.config import pick_collection

    with store_of(data_dir, qdrant_url, qdrant_api_key) as store:
        name = pick_collection(store, collection)
        models = data_dir_or_default(data_dir)
        findings = find_findings(store, name, models, min_confidence, scheme)
        catalog_root = store.get_metadata(name).get("catalog")
    to_stdout = csv_path is not None and str(csv_path) == "-"
    if csv_path is not None:
        write_csv(findings, None, sys.stdout) if to_stdout else write_csv(findings, csv_path)
        if not to_stdout:
            err.print(f"{len(findings)} findings written to {csv_path}")
    if show:
        _write_audit_sheet(findings[:limit], catalog_root, show)
        err.print(f"contact sheet: {show}")
    if as_json:
        found = [asdict(f) for f in findings]
        print_json({"collection": name, "min_confidence": min_confidence, "findings": found})
    elif not to_stdout:
        _print_findings(findings, name, min_confidence, limit)


def _print_findings(findings, name: str, min_confidence: float, limit: int) -> None:
    table = Table(
        title=f"{len(findings):,} products of '{name}' whose label disagrees with a "
        f"prediction of confidence >= {min_confidence}",
        title_justify="left",
    )
    columns = ("id", "scheme", "label", "predicted", "conf", "agree", "confused", "held out")
    for col in (*columns, "name"):
        numeric = col in ("id", "conf", "agree", "confused")
        table.add_column(col, no_wrap=True, justify="right" if numeric else "left")
    for f in findings[:limit]:
        table.add_row(
            str(f.id), f.scheme, f.label, f.predicted, f"{f.confidence:.3f}",
            "" if f.agreement is None else f"{f.agreement:.2f}",
            "" if f.confusion is None else f"{f.confusion:.2f}",
            "yes" if f.held_out else "no", f.name,
        )  # fmt: skip
    out.print(table)
    if len(findings) > limit:
        out.print(f"({len(findings) - limit:,} more: --limit, --csv or --json for all.)")


def _finding_score(f) -> str:
    score = f"{f.confidence:.2f}"  # a caption has room for 20 characters: not the confusion
    return score if f.agreement is None else f"{score} agree {f.agreement:.2f}"


def _write_audit_sheet(findings, catalog_root, path) -> None:
    from embedder.contact_sheet import Tile, write_contact_sheet

    tiles = [
        Tile(
            Path(catalog_root) / f.image if catalog_root and f.image else None,
            [f"id {f.id} {_finding_score(f)}", f"label {f.label}", f"pred {f.predicted}"],
        )
        for f in findings
    ]
    write_contact_sheet(tiles, path, columns=min(6, max(1, len(tiles))))


def info(
    data_dir: DataDir = None,
    qdrant_url: QdrantUrl = None,
    qdrant_api_key: QdrantApiKey = None,
    as_json: JsonOpt = False,
) -> None:
    """Collections, their point counts, named vectors, embedder records and models."""
    from classifier.summary import models_summary
    from ingest.sync import collection_retrain_advice

    with store_of(data_dir, qdrant_url, qdrant_api_key) as store:
        models_dir = data_dir_or_default(data_dir)
        collections = [
            {
                "name": name,
                "points": store.count(name),
                "vectors": store.vector_sizes(name),
                **store.get_metadata(name),
                "models": models_summary(models_dir, name),
                "retrain_advised": [
                    asdict(a) for a in collection_retrain_advice(store, name, models_dir)
                ],
            }
            for name in store.list_collections()
        ]
    if as_json:
        print_json({"store": repr(store), "collections": collections})
        return
    out.print(f"Store: {store!r}", highlight=False)
    if not collections:
        out.print("No collections yet: run `searchctl ingest CATALOG`.")
    for c in collections:
        _print_collection(c)


def _print_collection(c: dict) -> None:
    from classifier.summary import describe_models
    from ingest.sync import RetrainAdvice

    out.print(f"\n[bold]{c['name']}[/]: {c['points']:,} points", highlight=False)
    out.print(f"  vectors: {', '.join(f'{k} ({v} dims, cosine)' for k, v in c['vectors'].items())}")
    if c.get("catalog"):
        cut = "cut out" if c.get("cutout") else "as they are"
        size = c.get("photo_size")
        sharpness = c.get("photo_sharpness")
        typical = f"; typically {size[0]}x{size[1]}" if size else ""
        typical += f", sharpness {sharpness:.2f}" if size and sharpness is not None else ""
        typical += ", queries brought down to it" if size else ""
        out.print(f"  catalog: {c['catalog']} (photos embedded {cut}{typical})", highlight=False)
    emb = c.get("embedder")
    if emb:
        out.print(
            f"  embedder: {emb['backbone']}, weights {emb['weights_id']}, input "
            f"{emb['input_height']}x{emb['input_width']}, {emb['preprocessing']} "
            f"preprocessing, {emb['dim']} dims",
            highlight=False,
        )
    for line in describe_models(c["models"]):
        out.print(f"  {line}", highlight=False)
    changes = c.get("catalog_changes") or []
    if changes:
        changed = sum(entry["changed"] for entry in changes)
        out.print(f"  catalog changes: {changed:,} products over {len(changes)} ingests")
    for advice in c["retrain_advised"]:
        out.print(f"  [yellow]advice[/]: {RetrainAdvice(**advice).line()}", highlight=False)
