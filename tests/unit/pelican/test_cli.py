"""pelican's command line refuses a malformed option before it touches anything: exit
code 2, one line naming the option, never a traceback."""

from __future__ import annotations

import pytest

from pelican.__main__ import main
from productsearch import logs


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


@pytest.mark.parametrize("argv", [["--k1", "inf"], ["--k1", "nan"], ["--k1", "0"], ["--b", "nan"], ["--b", "2"]])
def test_refit_lexical_refuses_bm25_parameters_out_of_range(argv, capsys, monkeypatch):
    # Checked before any connection is made: the address is never dialled.
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.setattr(logs, "configure", lambda service: None)  # leave pytest's log capture alone
    assert main(["refit-lexical", *argv]) == 2
    err = capsys.readouterr().err
    assert "k1 must be a finite number above 0 and b within 0..1" in err and "Traceback" not in err, err
