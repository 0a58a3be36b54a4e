"""pelican's command line refuses a malformed option before it touches anything: exit
code 2, one line naming the option, never a traceback."""

from __future__ import annotations

import pytest

from pelican.__main__ import main


@pytest.mark.parametrize("argv, option", [
    (["backfill", "--chunk-size", "0"], "--chunk-size"),
    (["backfill", "--chunk-size", "-5"], "--chunk-size"),
    (["backfill", "--chunk-size", "\u00b2"], "--chunk-size"),  # a digit to str.isdigit, not to int()
    (["reconcile", "--page-size", "0"], "--page-size"),
    (["reconcile", "--page-size", "many"], "--page-size"),
    (["migrate-index", "--timeout", "-1"], "--timeout"),
    (["migrate-index", "--timeout", "nan"], "--timeout"),
    (["migrate-index", "--poll-seconds", "0"], "--poll-seconds"),
    (["migrate-index", "--poll-seconds", "inf"], "--poll-seconds"),
])
def test_a_malformed_option_is_refused_naming_it(argv, option, capsys):
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: must be" in err and "Traceback" not in err, err
