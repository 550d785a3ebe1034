"""`searchctl eval --report DIR`: report.md, a bar chart, best and worst queries."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embedder.contact_sheet import Tile, write_contact_sheet
from searchctl.evaluate import EVAL_FIELDS, MACRO_FIELD, EvalReport, ModeResult

SHEET_QUERIES = 8


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def write_chart(report: EvalReport, path: Path) -> Path:
    """Grouped bars: one group per label field, one bar per vector or mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fields = [*EVAL_FIELDS, f"{MACRO_FIELD}\n(macro)"]
    width = 0.8 / max(1, len(report.results))
    fig, ax = plt.subplots(figsize=(11, 4.5))
    x = np.arange(len(fields))
    for i, result in enumerate(report.results):
        values = [result.agreement[f] or 0.0 for f in EVAL_FIELDS] + [result.agreement_macro or 0]
        ax.bar(
            x + (i - (len(report.results) - 1) / 2) * width, values, width, label=result.mode.name
        )
    ax.set_xticks(x, fields, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel(f"fraction of top-{report.k} hits with the query's label")
    ax.set_title(f"{report.collection}: {len(report.queries.ids):,} queries ({report.source})")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _ranked_queries(result: ModeResult, worst: bool) -> list[int]:
    """Query indexes by mean label match, ties broken by position (deterministic)."""
    scores = result.query_scores
    valid = np.flatnonzero(~np.isnan(scores))
    order = valid[np.lexsort((valid, scores[valid] if worst else -scores[valid]))]
    return order[:SHEET_QUERIES].tolist()


def write_query_sheet(
    report: EvalReport, result: ModeResult, labels_of: dict, root: str | None, path: Path, worst
) -> Path:
    """One row per query: the query photo, then its top-k hits, captioned with articleType."""

    def image_of(payload: dict) -> Path | None:
        rel = payload.get("image")
        return Path(root) / rel if root and rel else None

    queries, tiles = report.queries, []
    for q in _ranked_queries(result, worst):
        labels = queries.labels[q]
        tiles.append(
            Tile(
                queries.images[q] if queries.images else None,
                [
                    f"query {queries.ids[q]}",
                    str(labels.get("articleType") or ""),
                    f"match {result.query_scores[q]:.2f}",
                ],
            )
        )
        hits = result.hits[q]
        for rank, hit in enumerate(hits, 1):
            payload = labels_of.get(hit, {})
            tiles.append(
                Tile(
                    image_of(payload),
                    [
                        f"#{rank} id {hit}",
                        str(payload.get("articleType") or ""),
                        str(payload.get("baseColour") or ""),
                    ],
                )
            )
        tiles += [Tile(None, [])] * (report.k - len(hits))
    return write_contact_sheet(tiles, path, columns=report.k + 1)


def results_table(report: EvalReport) -> list[str]:
    head = ["search", *EVAL_FIELDS, f"{MACRO_FIELD} (macro)", "same product"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in report.results:
        row = [
            r.mode.name,
            *(_fmt(r.agreement[f]) for f in EVAL_FIELDS),
            _fmt(r.agreement_macro),
            _fmt(r.same_product_recall),
        ]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def write_report(
    report: EvalReport, out_dir: Path, labels_of: dict, catalog_root: str | None
) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    chart = write_chart(report, out_dir / "agreement.png")
    md = [
        f"# Label match rates: collection `{report.collection}`",
        "",
        f"- Queries: {len(report.queries.ids):,} from {report.source}"
        + (f" (sample of {report.sample}, seed {report.seed})" if report.sample else "")
        + ("; each query left out of its own hits" if report.queries.leave_one_out else ""),
        f"- Top k: {report.k}. A rate is the fraction of a query's top-{report.k} hits whose "
        "label equals the query's, averaged over the queries that have that label; "
        f"macro averages the {MACRO_FIELD} rate over {MACRO_FIELD} classes.",
        f"- Search: {report.search_description}.",
        "- Time: " + ", ".join(f"{k} {v:.1f} s" for k, v in report.seconds.items()) + ".",
    ]
    if report.skipped:
        md.append(f"- Skipped {len(report.skipped)} query photos that could not be used.")
    md += ["", *results_table(report), "", f"![label match rates]({chart.name})", ""]
    for r in report.results:
        name = r.mode.name.replace("/", "_")
        best = write_query_sheet(
            report, r, labels_of, catalog_root, out_dir / f"best_{name}.png", worst=False
        )
        worst = write_query_sheet(
            report, r, labels_of, catalog_root, out_dir / f"worst_{name}.png", worst=True
        )
        md += [
            f"## `{r.mode.name}`: {MACRO_FIELD} classes, worst first",
            "",
            f"| {MACRO_FIELD} | queries | " + " | ".join(EVAL_FIELDS) + " |",
            "| --- | --- |" + " --- |" * len(EVAL_FIELDS),
        ]
        for cls, v in r.per_class.items():
            cells = " | ".join(_fmt(v["agreement"][f]) for f in EVAL_FIELDS)
            md.append(f"| {cls} | {v['queries']} | {cells} |")
        md += [
            "",
            f"Best queries (query, then its top {report.k}): ![best]({best.name})",
            "",
            f"Worst queries: ![worst]({worst.name})",
            "",
        ]
    path = out_dir / "report.md"
    path.write_text("\n".join(md) + "\n")
    return path
