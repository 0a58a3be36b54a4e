import io
from decimal import Decimal

import pytest

from productsearch.catalog import LoadReport, infer_category, parse_price, parse_rows


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
    with pytest.raises(ValueError, match="lacks column"):
        list(parse_rows(io.StringIO("name,price\nx,1\n"), LoadReport()))


def test_category_is_the_last_word_of_the_name():
    assert infer_category("Ultra Controller") == "controller"
    assert infer_category("") == ""
