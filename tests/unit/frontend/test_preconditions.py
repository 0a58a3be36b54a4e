"""Reading an edit's precondition (If-Match, versions) and the index's Retry-After."""

from __future__ import annotations

import time
from email.utils import formatdate

import pytest

from frontend import editing
from productsearch.index import MAX_RETRY_AFTER_S, retry_after_s


@pytest.mark.parametrize("header,version", [('"123"', 123), (' "0" ', 0), ("*", None),
                                            (f'"{2**63 - 1}"', 2**63 - 1)])
def test_if_match_names_one_version_or_any(header, version):
    assert editing.parse_if_match(header) == version
    if version is not None:
        assert editing.parse_if_match(editing.etag(version)) == version


@pytest.mark.parametrize("header", ['W/"123"', "123", '"12', '"1", "2"', '"\u00b2"', '"\u0661\u0662"', '"-1"',
                                    f'"{2**63}"', '""', '"1 2"', ""])
def test_a_weak_listed_or_malformed_if_match_is_refused(header):
    with pytest.raises(editing.InvalidEdit):
        editing.parse_if_match(header)


@pytest.mark.parametrize("value", ["\u00b2", "1\u00b2", "\uff11", -1, True, 1.0, None, "9" * 40])
def test_versions_are_ascii_digits_only(value):
    with pytest.raises(editing.InvalidEdit):
        editing.validate_version(value)


class FakeApiError(Exception):
    def __init__(self, status: int, headers: dict[str, str]):
        super().__init__(f"{status}")
        self.status, self.headers = status, headers


def test_retry_after_is_read_from_a_429_in_the_cause_chain():
    try:
        try:
            raise FakeApiError(429, {"Retry-After": "7"})
        except FakeApiError as inner:
            raise RuntimeError("query failed 2 times") from inner
    except RuntimeError as outer:
        assert retry_after_s(outer) == 7
    assert retry_after_s(FakeApiError(429, {"retry-after": "0.2"})) == 1  # rounded up, at least 1 s
    assert retry_after_s(FakeApiError(503, {"Retry-After": "99999"})) == MAX_RETRY_AFTER_S
    in_a_minute = formatdate(time.time() + 60, usegmt=True)
    assert 55 <= retry_after_s(FakeApiError(429, {"Retry-After": in_a_minute})) <= 61


@pytest.mark.parametrize("error", [FakeApiError(429, {}), FakeApiError(400, {"Retry-After": "5"}),
                                   FakeApiError(429, {"Retry-After": "soon"}), FakeApiError(429, {"Retry-After": "-3"}),
                                   ValueError("no status")])
def test_no_retry_after_when_the_index_gave_none(error):
    assert retry_after_s(error) is None
