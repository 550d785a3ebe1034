from __future__ import annotations

import pytest
from conftest import SHARED_DATASET, make_catalog, needs_shared

from ingest.catalog import CatalogError, read_catalog, read_styles


def test_rows_are_typed_and_extra_commas_rejoined(tmp_path):
    cat = read_catalog(make_catalog(tmp_path, n=8))
    by_id = cat.by_id()
    assert by_id[3].payload["productDisplayName"].endswith(", with belt, and box")
    assert by_id[1].payload["year"] == 2011 and isinstance(by_id[1].payload["year"], int)
    assert by_id[902].payload["year"] is None  # empty field -> null
    assert by_id[903].payload["usage"] is None
    assert set(by_id[1].payload) == {
        "id", "gender", "masterCategory", "subCategory", "articleType", "baseColour",
        "season", "year", "usage", "productDisplayName",
    }  # fmt: skip


def test_joins_images_and_counts_what_is_missing(tmp_path):
    cat = read_catalog(make_catalog(tmp_path, n=8))
    assert cat.without_image == [904]
    assert cat.orphan_images == ["999"]
    assert len(cat.bad_rows) == 1 and "3 fields, expected 10" in cat.bad_rows[0][1]
    assert cat.bad_rows[0][0] == 14  # header, 8 products, then the 5th extra line
    assert {p.id for p in cat.with_image} == set(range(1, 9)) | {901, 902, 903}


def test_duplicate_and_non_integer_ids_are_reported(tmp_path):
    (tmp_path / "styles.csv").write_text("id,name\n1,a\n1,b\nx7,c\n2,d\n")
    columns, rows, bad, _, _ = read_styles(tmp_path / "styles.csv")
    assert [r["id"] for r in rows] == [1, 2]
    assert [line for line, _ in bad] == [3, 4]
    assert "duplicate id 1" in bad[0][1] and "not an integer" in bad[1][1]


def test_missing_catalog_pieces_are_clear_errors(tmp_path):
    with pytest.raises(CatalogError, match="catalog directory not found"):
        read_catalog(tmp_path / "nope")
    with pytest.raises(CatalogError, match="no styles.csv"):
        read_catalog(tmp_path)
    (tmp_path / "styles.csv").write_text("name,colour\na,b\n")
    with pytest.raises(CatalogError, match="no images/ folder"):
        read_catalog(tmp_path)
    (tmp_path / "images").mkdir()
    with pytest.raises(CatalogError, match="no 'id' column"):
        read_catalog(tmp_path)


@pytest.mark.integration
@needs_shared()
def test_shared_styles_csv_keeps_every_row():
    cat = read_catalog(SHARED_DATASET)
    assert len(cat.products) == 44_446
    assert cat.bad_rows == [] and cat.notes == []
    assert len(cat.with_image) == 44_072 and len(cat.without_image) == 374
    assert sum("," in (p.payload["productDisplayName"] or "") for p in cat.products) == 22
    assert cat.by_id()[15970].payload == {
        "id": 15970, "gender": "Men", "masterCategory": "Apparel", "subCategory": "Topwear",
        "articleType": "Shirts", "baseColour": "Navy Blue", "season": "Fall", "year": 2011,
        "usage": "Casual", "productDisplayName": "Turtle Check Men Navy Blue Shirt",
    }  # fmt: skip
