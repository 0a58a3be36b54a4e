"""PINECONE_NEXT_HOST in IndexSettings: the hosts an app may send its API key to
(productsearch.index_set; docs/index-migration.md)."""

import pytest

from productsearch.settings import ConfigError, IndexSettings

BASE = {"PINECONE_HOST": "old-abc.svc.pinecone.io", "PINECONE_API_KEY": "k"}


def test_no_next_host_by_default():
    s = IndexSettings.from_env(BASE)
    assert s.next_host is None and s.hosts == ("https://old-abc.svc.pinecone.io",)
    assert IndexSettings.from_env({**BASE, "PINECONE_NEXT_HOST": "  "}).next_host is None


def test_next_host_is_normalised_like_the_primary():
    s = IndexSettings.from_env({**BASE, "PINECONE_NEXT_HOST": "New-Def.svc.pinecone.io/"})
    assert s.hosts == ("https://old-abc.svc.pinecone.io", "https://new-def.svc.pinecone.io")
    local = IndexSettings.from_env({**BASE, "PINECONE_HOST": "http://127.0.0.1:5081", "PINECONE_NEXT_HOST": "http://127.0.0.1:5082"})
    assert local.next_host == "http://127.0.0.1:5082"


def test_next_host_equal_to_the_primary_is_refused():
    with pytest.raises(ConfigError, match="PINECONE_NEXT_HOST must differ"):
        IndexSettings.from_env({**BASE, "PINECONE_NEXT_HOST": "https://OLD-abc.svc.pinecone.io"})


def test_for_host_aims_at_one_configured_host_only():
    s = IndexSettings.from_env({**BASE, "PINECONE_NEXT_HOST": "new-def.svc.pinecone.io", "PINECONE_NAMESPACE": "p"})
    one = s.for_host("new-def.svc.pinecone.io")
    assert (one.host, one.next_host, one.namespace, one.api_key.get_secret_value()) == (
        "https://new-def.svc.pinecone.io", None, "p", "k")
    keyed = IndexSettings.from_env({**BASE, "PINECONE_API_KEY": "pcsk-sekrit"})
    assert "pcsk-sekrit" not in repr(keyed) and keyed.api_key.get_secret_value() == "pcsk-sekrit"
    with pytest.raises(ConfigError, match="not a configured index host"):
        s.for_host("https://elsewhere.example")
