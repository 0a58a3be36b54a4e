"""`pelican load-catalog` with the files spreadsheets write: a byte order mark and
capitalised headers load; a file in another encoding, or with a header that is not a
catalog's, is refused with a message naming the line, nothing written and no
traceback."""

from __future__ import annotations

import pytest

from tests.system.test_reliability import pelican_cli


def products(parts) -> list[tuple[str, str]]:
    return [(r["sku"], r["name"]) for r in parts.conn.execute("SELECT sku, name FROM products ORDER BY sku").fetchall()]


def test_a_csv_utf8_export_from_a_spreadsheet_loads(parts, stack, tmp_path):
    path = tmp_path / "export.csv"
    path.write_bytes("\ufeffName,SKU,Description,Price\r\nCafé Lamp,CL-1,a brass lamp,\"$1,200.00\"\r\n".encode())
    done = pelican_cli(stack, "load-catalog", str(path))
    assert done.returncode == 0, done.stderr
    assert "loaded=1 skipped=0" in done.stdout
    assert products(parts) == [("CL-1", "Café Lamp")]


@pytest.mark.parametrize("data, message", [
    ("name,sku,description,price\nCafé,C-1,d,1\n".encode("cp1252"), "line 2: the file is not UTF-8"),
    (b"name;sku;description;price\nx;1;d;1\n", "line 1: the columns are separated by semicolons, not commas"),
    (b"name,sku,price\nx,1,1\n", "line 1: the header lacks column(s) ['description']"),
    (b"name,sku,description,price,Name\nx,1,d,1,y\n", "column 'name' more than once"),
])
def test_a_file_that_is_not_a_catalog_is_refused_by_line_and_reason(parts, stack, tmp_path, data, message):
    path = tmp_path / "catalog.csv"
    path.write_bytes(data)
    done = pelican_cli(stack, "load-catalog", str(path))
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert products(parts) == []
