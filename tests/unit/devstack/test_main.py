"""`python -m devstack`'s choice of the products index's API (what `make up` starts)."""

from __future__ import annotations

import pytest

from devstack.__main__ import chosen_index_api


@pytest.fixture
def started(tmp_path):
    env_file = tmp_path / "stack.env"
    env_file.write_text("PINECONE_HOST=http://127.0.0.1:5081\nPINECONE_INDEX_API=documents\n")
    return env_file


def test_the_option_wins_over_the_variable_and_the_running_stack(started):
    assert chosen_index_api("vectors", {"PINECONE_INDEX_API": "documents"}, started) == "vectors"


def test_the_variable_wins_over_the_running_stack(started):
    assert chosen_index_api(None, {"PINECONE_INDEX_API": "vectors"}, started) == "vectors"


def test_status_and_down_follow_the_running_stack(started):
    assert chosen_index_api(None, {}, started) == "documents"


def test_nothing_said_and_nothing_running_is_a_legacy_index(tmp_path):
    assert chosen_index_api(None, {"PINECONE_INDEX_API": ""}, tmp_path / "stack.env") == "vectors"


def test_a_misspelt_variable_stops_with_its_name(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        chosen_index_api(None, {"PINECONE_INDEX_API": "document"}, tmp_path / "stack.env")
    assert stop.value.code == 2
    assert "PINECONE_INDEX_API='document'" in capsys.readouterr().err
