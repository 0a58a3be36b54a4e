import csv
import io
from decimal import Decimal

import pytest

from productsearch.catalog import CatalogError, LoadReport, check_utf8, infer_category, parse_price, parse_rows


@pytest.mark.parametrize("text, value", [("$344.87", "344.87"), ("845", "845"), ("$1,344.50", "1344.50"), (" $5.5 ", "5.5")])
def test_parse_price_accepts_money_text(text, value):
    assert parse_price(text) == Decimal(value)


@pytest.mark.parametrize("text", ["", "abc", "$-3", "1.234", "$1,34.00", "12,34", "NaN"])
def test_parse_price_rejects_non_amounts(text):
    with pytest.raises(ValueError):
        parse_price(text)


def test_bad_rows_are_reported_with_line_numbers_and_skipped():
    csv_text = (
        "name,sku,description,price,last_updated\n"
        "Pro System,SKU-1,Fine,$10.00,2023-09-20\n"
        "No Price,SKU-2,Broken,ten dollars,2023-09-20\n"
        ",SKU-3,No name,$1.00,2023-09-20\n"
        "Dup,SKU-1,Same sku,$2.00,2023-09-20\n"
        "Lite Device,SKU-4,\"multi\nline\",$3.00,2023-09-20\n"
        "Short,SKU-5\n"
    )
    report = LoadReport()
    rows = list(parse_rows(io.StringIO(csv_text), report))
    assert [r["sku"] for r in rows] == ["SKU-1", "SKU-4"]
    assert rows[1]["category"] == "device"
    assert [line for line, _ in report.skipped] == [3, 4, 5, 8]
    assert "price" in report.skipped[0][1] and "name is empty" in report.skipped[1][1] and "duplicate" in report.skipped[2][1]


def test_missing_columns_fail_loudly():
    with pytest.raises(CatalogError, match="line 1: the header lacks column"):
        list(parse_rows(io.StringIO("name,price\nx,1\n"), LoadReport()))


def test_a_spreadsheets_header_loads_whatever_its_case_and_byte_order_mark():
    text = "\ufeffName, SKU ,DESCRIPTION,Price,Category\nLamp,L-1,a desk lamp,$12.50,Home\n"
    rows = list(parse_rows(io.StringIO(text), LoadReport()))
    assert rows == [{"name": "Lamp", "sku": "L-1", "description": "a desk lamp", "price": Decimal("12.50"), "category": "Home"}]


@pytest.mark.parametrize("text, separator", [("Name;SKU;Description;Price\nLamp;L-1;a lamp;1,50\n", "semicolons"),
                                             ("name\tsku\tdescription\tprice\nLamp\tL-1\ta lamp\t1.50\n", "tabs")])
def test_a_file_separated_by_semicolons_or_tabs_is_refused_naming_the_separator(text, separator):
    with pytest.raises(CatalogError, match=f"line 1: the columns are separated by {separator}, not commas"):
        list(parse_rows(io.StringIO(text), LoadReport()))


def test_a_column_named_twice_is_refused_by_name_and_position():
    with pytest.raises(CatalogError, match=r"column 'sku' more than once \(columns 2, 5\)"):
        list(parse_rows(io.StringIO("name,sku,description,price,SKU\nx,1,d,1,2\n"), LoadReport()))


def test_a_broken_csv_structure_names_its_line():
    text = "name,sku,description,price\nLamp,L-1,ok,1\nBad,L-2,\"" + "x" * (csv.field_size_limit() + 10) + "\",1\n"
    report = LoadReport()
    rows = parse_rows(io.StringIO(text), report)
    assert next(rows)["sku"] == "L-1"
    with pytest.raises(CatalogError, match="line 3: field larger than field limit"):
        next(rows)


@pytest.mark.parametrize("data, line", [("name,sku,description,price\nCaf\xe9,C-1,d,1\n".encode("cp1252"), 2),
                                        (b"name,sku,description,price\nx,1,d,1\n\xe2\x82", 3)])
def test_a_file_that_is_not_utf8_is_refused_before_anything_is_read(tmp_path, data, line):
    path = tmp_path / "catalog.csv"
    path.write_bytes(data)
    with pytest.raises(CatalogError, match=f"line {line}: the file is not UTF-8"):
        check_utf8(path)


def test_category_is_the_last_word_of_the_name():
    assert infer_category("Ultra Controller") == "controller"
    assert infer_category("") == ""


def test_a_sku_is_read_in_its_normal_form_so_two_forms_are_one_sku():
    import unicodedata

    nfd = unicodedata.normalize("NFD", "CAFÉ-1")
    report = LoadReport()
    rows = list(parse_rows(io.StringIO(f"name,sku,description,price\nA, {nfd} ,d,1\nB,CAFÉ-1,d,2\n"), report))
    assert [r["sku"] for r in rows] == ["CAFÉ-1"] and unicodedata.is_normalized("NFC", rows[0]["sku"])
    assert report.skipped == [(3, "duplicate sku 'CAFÉ-1' in this file")]
