"""The embedding runtimes (EMBEDDING_RUNTIME): torch and ONNX Runtime make the same
vectors on padded batches of uneven texts; the ONNX export is cached by key, checked
at every load, re-exported when corrupt and refused when it disagrees with torch;
an export that cannot be made is a clear error for onnx and a fallback for auto.

One export per session, into a temporary cache (about half a minute on 2 cores)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from productsearch import onnx_export, onnx_runtime
from productsearch.embedding import Embedder
from productsearch.onnx_runtime import MIN_COSINE, VERIFICATION_TEXTS, ExportError
from productsearch.settings import ConfigError, EmbeddingSettings

# Very uneven lengths, so each batch of 4 pads most of its texts (and truncates one).
TEXTS = ["x", "Wireless noise-cancelling headphones with a 30-hour battery. " * 30, "", "Lite Device",
         "Café crème — 東京 🙂", "Pro System A monetize user-centric markets product. " * 3, "a b c", "?" * 5]


def settings_for(cache_dir, **env) -> EmbeddingSettings:
    return EmbeddingSettings.from_env({"EMBEDDING_CACHE_DIR": str(cache_dir), "EMBEDDING_BATCH_SIZE": "4", **env})


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("embedding-cache")
    onnx_export.ensure_export(settings_for(cache))
    return cache


@pytest.fixture(scope="session")
def torch_vectors(onnx_cache):
    return Embedder(settings_for(onnx_cache, EMBEDDING_RUNTIME="torch")).embed(TEXTS)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a.astype(np.float64) * b.astype(np.float64), axis=1)


@pytest.mark.timeout(600)
def test_onnx_vectors_match_torch_on_padded_batches_of_uneven_texts(onnx_cache, torch_vectors):
    onnx = Embedder(settings_for(onnx_cache, EMBEDDING_RUNTIME="onnx"))
    assert onnx.runtime == "onnx" and str(onnx.device) == "cpu" and "onnxruntime" in onnx.description
    vectors = onnx.embed(TEXTS)
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert cosines(vectors, torch_vectors).min() >= MIN_COSINE
    # The caller's order comes back whether or not batches are sorted by length.
    unsorted = Embedder(settings_for(onnx_cache, EMBEDDING_RUNTIME="onnx"), sort_by_length=False).embed(TEXTS)
    assert cosines(vectors, unsorted).min() >= MIN_COSINE
    assert cosines(onnx.embed(TEXTS[::-1])[::-1], vectors).min() >= MIN_COSINE
    assert onnx.embed([]).shape == (0, 384)


def test_openvino_vectors_match_torch_on_padded_batches_of_uneven_texts(onnx_cache, torch_vectors):
    openvino = Embedder(settings_for(onnx_cache, EMBEDDING_RUNTIME="openvino"))
    assert openvino.runtime == "openvino" and "OpenVINO" in openvino.description
    vectors = openvino.embed(TEXTS)
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    assert cosines(vectors, torch_vectors).min() >= MIN_COSINE


def test_torch_runtime_keeps_its_description_and_device(onnx_cache, torch_vectors):
    torch_embedder = Embedder(settings_for(onnx_cache, EMBEDDING_RUNTIME="torch"))
    assert torch_embedder.runtime == "torch" and str(torch_embedder.device) == "cpu"
    assert torch_embedder.description.endswith("on cpu (fp32), batch 4, max 256 tokens")
    assert torch_vectors.shape == (len(TEXTS), 384)


def test_auto_serves_the_cached_export_without_importing_torch(onnx_cache):
    """auto on a CPU-only machine takes ONNX Runtime; the serving process never loads
    torch (its memory is what keeps emu's peak RSS down)."""
    code = ("import sys, json; from productsearch.embedding import Embedder; from productsearch.settings import EmbeddingSettings; "
            "e = Embedder(EmbeddingSettings.from_env()); v = e.embed(['a', 'bb ' * 50]); "
            "print(json.dumps([e.runtime, 'torch' in sys.modules, v.shape[0]]))")
    env = {**os.environ, "EMBEDDING_CACHE_DIR": str(onnx_cache), "EMBEDDING_RUNTIME": "auto", "EMBEDDING_DEVICE": "cpu"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["onnx", False, 2]


def test_a_stale_export_is_never_reused(onnx_cache, tmp_path):
    settings = settings_for(onnx_cache)
    assert onnx_runtime.cache_key(settings) != onnx_runtime.cache_key(settings.model_copy(update={"max_tokens": 128}))
    cache = tmp_path / "cache"
    shutil.copytree(onnx_cache, cache)
    copy = settings_for(cache)
    folder = onnx_runtime.cache_folder(copy)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["key"] = "0" * 64  # as if made by other versions under a colliding folder name
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert onnx_runtime.load_cached(copy) is None


def test_a_process_without_torch_serves_the_export_made_with_it(onnx_cache, monkeypatch):
    """The frontend's image exports in a build stage with torch and serves without it:
    the export is found by the model, its token limit and the serving packages'
    versions, with the missing export-only packages' versions from its manifest."""
    settings = settings_for(onnx_cache, EMBEDDING_RUNTIME="onnx")
    made = onnx_runtime.load_cached(settings)
    real = onnx_runtime.versions()
    without_torch = {**real, **dict.fromkeys(onnx_runtime.EXPORT_ONLY_PACKAGES, "absent")}
    monkeypatch.setattr(onnx_runtime, "versions", lambda: dict(without_torch))
    assert onnx_runtime.load_cached(settings) is None  # its own key names torch "absent"
    found = onnx_runtime.load_for_serving(settings)
    assert found is not None and found.folder == made.folder
    assert onnx_export.ensure_export(settings).folder == made.folder  # no export attempted
    assert Embedder(settings).runtime == "onnx"
    # Another ONNX Runtime than the export was checked with: not taken on trust.
    without_torch["onnxruntime"] = "0.0.1"
    assert onnx_runtime.load_for_serving(settings) is None
    # A process that has torch keys by its own versions only.
    monkeypatch.setattr(onnx_runtime, "versions", lambda: dict(real))
    assert onnx_runtime.load_for_serving(settings) is None


@pytest.mark.timeout(600)
def test_a_corrupt_export_is_detected_and_exported_again(onnx_cache, torch_vectors, tmp_path, caplog):
    cache = tmp_path / "cache"
    shutil.copytree(onnx_cache, cache)
    settings = settings_for(cache, EMBEDDING_RUNTIME="onnx")
    graph = onnx_runtime.cache_folder(settings) / "model.onnx"
    with open(graph, "r+b") as handle:  # a torn write: the tail of the weights is gone
        handle.truncate(graph.stat().st_size // 2)
    with caplog.at_level(logging.WARNING, logger="productsearch.onnx_runtime"):
        embedder = Embedder(settings)
    assert any("corrupt or stale ONNX export" in r.getMessage() for r in caplog.records)
    assert cosines(embedder.embed(TEXTS), torch_vectors).min() >= MIN_COSINE
    assert onnx_runtime.load_cached(settings) is not None


def test_an_export_that_disagrees_with_torch_is_refused(onnx_cache, tmp_path, caplog):
    cache = tmp_path / "cache"
    shutil.copytree(onnx_cache, cache)
    folder = onnx_runtime.cache_folder(settings_for(cache))
    reference = np.load(folder / "reference.npy")
    skewed = reference + 0.01 * np.roll(reference, 1, axis=1)  # cosine about 0.99995: slight, still refused
    np.save(folder / "reference.npy", (skewed / np.linalg.norm(skewed, axis=1, keepdims=True)).astype(np.float32))

    with pytest.raises(ExportError, match=r"refusing the ONNX export .* below 0\.99999"):
        Embedder(settings_for(cache, EMBEDDING_RUNTIME="onnx"))
    with caplog.at_level(logging.WARNING, logger="productsearch.embedding"):
        fallback = Embedder(settings_for(cache, EMBEDDING_RUNTIME="auto", EMBEDDING_DEVICE="cpu"))
    assert fallback.runtime == "torch"
    assert any("no verified ONNX export" in r.getMessage() for r in caplog.records)


@pytest.mark.timeout(300)
def test_onnx_with_a_model_that_cannot_be_exported_is_a_clear_error(onnx_cache, tmp_path):
    model = tmp_path / "not-a-model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    settings = settings_for(tmp_path / "cache", EMBEDDING_RUNTIME="onnx", EMBEDDING_MODEL_PATH=str(model))
    with pytest.raises(ExportError, match=r"the ONNX export of .*not-a-model failed \(exit code \d+\)"):
        Embedder(settings)
    assert onnx_runtime.load_cached(settings) is None  # nothing half-made is left to be used


def test_the_verification_texts_cover_padding_and_truncation():
    lengths = sorted(len(t) for t in VERIFICATION_TEXTS)
    assert lengths[0] == 0 and lengths[-1] > 4 * 256  # longer than max_tokens in any tokenisation
    assert onnx_runtime.VERIFY_BATCH < len(VERIFICATION_TEXTS)


@pytest.mark.parametrize(("env", "names"), [
    ({"EMBEDDING_RUNTIME": "tensorrt"}, "EMBEDDING_RUNTIME"),
    ({"EMBEDDING_RUNTIME": "onnx", "EMBEDDING_DEVICE": "cuda"}, "EMBEDDING_DEVICE=cuda"),
    ({"EMBEDDING_RUNTIME": "onnx", "EMBEDDING_QUANTIZE": "int8"}, "EMBEDDING_QUANTIZE=int8"),
    ({"EMBEDDING_RUNTIME": "openvino", "EMBEDDING_DEVICE": "cuda:1"}, "EMBEDDING_DEVICE=cuda"),
])
def test_settings_refuse_runtime_combinations_that_cannot_work(env, names):
    with pytest.raises(ConfigError, match=names):
        EmbeddingSettings.from_env(env)


def test_settings_runtime_and_cache_dir_defaults():
    s = EmbeddingSettings.from_env({"XDG_CACHE_HOME": "/var/cache/me"})
    assert s.runtime == "torch" and s.cache_dir == "/var/cache/me/productsearch"
    assert EmbeddingSettings.from_env({"HOME": "/home/u"}).cache_dir == "/home/u/.cache/productsearch"
    s = EmbeddingSettings.from_env({"EMBEDDING_RUNTIME": "ONNX", "EMBEDDING_CACHE_DIR": "/opt/embedding-cache"})
    assert s.runtime == "onnx" and s.cache_dir == "/opt/embedding-cache"
    assert EmbeddingSettings.from_env({"EMBEDDING_RUNTIME": "torch", "EMBEDDING_QUANTIZE": "int8"}).quantize_int8
