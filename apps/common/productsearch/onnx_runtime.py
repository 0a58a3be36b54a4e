"""The ONNX export of the embedding model, as a serving process finds and runs it
without torch: the cache of exports, their verification against torch's vectors, and
the two runtimes that serve them (ONNX Runtime, OpenVINO). Making an export is
productsearch.onnx_export's job.

Verification (``verify``): the same fixed texts of very uneven lengths, embedded in
padded batches by torch (CPU, fp32) at export time and by the exported graph in
ONNX Runtime, must agree to cosine >= ``MIN_COSINE`` = 0.99999 per text. A correct
fp32 export agrees to about 1 - 5e-7 (rounding in a different summation order); the
broken exports productsearch.onnx_export describes are off by 1e-2 to 1e-1. The
threshold sits 20x above the noise and three orders of magnitude below the failures.
The torch vectors are stored with the export, so a serving process re-runs the check
at every load, under its own thread count and optimisation level, without importing
torch.

Cache: one folder per (model files' content, max_tokens, versions of torch,
transformers, tokenizers, onnx, onnxscript, onnxruntime, this module's format), named
by a hash of all of them, so a stale export is never reused; a manifest records the
graph's SHA-256, which is checked at every load (a corrupt or truncated file is
re-exported).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import numpy as np

from productsearch.settings import EmbeddingSettings

log = logging.getLogger(__name__)

FORMAT = 2  # bump when the files or the graph's contract change: old exports are then ignored
MIN_COSINE = 0.99999
VERIFY_BATCH = 4  # several batches, each padded to its longest text
# Versions that shape the exported graph, the tokenizer or the way the graph runs.
KEYED_PACKAGES = ("torch", "transformers", "tokenizers", "onnx", "onnxscript", "onnxruntime")
# Those only the export imports. A process that serves the export but cannot make one
# (the frontend's image, which carries ONNX Runtime but not torch) lacks them; it
# takes their versions from the export's manifest (load_for_serving).
EXPORT_ONLY_PACKAGES = ("torch", "transformers", "onnx", "onnxscript")
GRAPH_INPUTS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}  # name -> tokenizers.Encoding field

# Very uneven lengths in every padded batch: empty, one character, a few words, and
# texts longer than any max_tokens the model supports (truncation), mixed together.
VERIFICATION_TEXTS = (
    "",
    "Pro System A monetize user-centric markets product. " * 40,
    "x",
    "Lite Device with zero-defect success features.",
    "Ergonomic stainless steel water bottle, 750 ml, keeps drinks cold for 24 hours.",
    "a",
    " ".join(f"token{i}" for i in range(600)),
    "Café crème brûlée — naïve façade, 東京, emoji 🙂 and numbers 3.14159.",
    "Coronary heart disease risk factors in adults: a cohort study. " * 6,
    "?",
    "Wireless noise-cancelling headphones",
    "The mitochondrial genome encodes 13 proteins of the respiratory chain; " * 3,
)


class ExportError(RuntimeError):
    """No usable ONNX export: the export failed, or it did not match torch's vectors."""


@dataclasses.dataclass(frozen=True)
class Export:
    """A valid export in the cache: its folder and its manifest (manifest.json)."""

    folder: Path
    manifest: dict

    @property
    def graph(self) -> Path:
        return self.folder / "model.onnx"

    @property
    def tokenizer(self) -> Path:
        return self.folder / "tokenizer.json"

    @property
    def reference(self) -> Path:
        return self.folder / "reference.npy"


# -- cache --------------------------------------------------------------------------
def versions() -> dict[str, str]:
    """KEYED_PACKAGES' installed versions in this process, "absent" for one it lacks."""
    out = {}
    for name in KEYED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def sha256_of(path: Path) -> str:
    """The hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_key(settings: EmbeddingSettings, recorded: dict[str, str] | None = None) -> str:
    """Hex SHA-256 over everything an export depends on: every file at the top of the
    model folder (weights, config, tokenizer), max_tokens, KEYED_PACKAGES' versions
    and FORMAT. `recorded` replaces this process's versions of the packages it names."""
    keyed = {**versions(), **(recorded or {})}
    digest = hashlib.sha256(json.dumps({"format": FORMAT, "max_tokens": settings.max_tokens, "versions": keyed},
                                       sort_keys=True).encode())
    for path in sorted(Path(settings.model_path).iterdir()):
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + sha256_of(path).encode())
    return digest.hexdigest()


def cache_folder(settings: EmbeddingSettings, key: str | None = None) -> Path:
    """The folder under EMBEDDING_CACHE_DIR that holds the export for `key` (by
    default these settings' cache_key): the model's name and the key's first 20 hex digits."""
    name = "".join(c if c.isalnum() or c in "-." else "-" for c in settings.model_name.split("/")[-1])
    return Path(settings.cache_dir) / f"{name}-onnx-{(key or cache_key(settings))[:20]}"


def load_cached(settings: EmbeddingSettings, key: str | None = None) -> Export | None:
    """The valid export in the cache, or None when there is none. A folder whose
    manifest or graph does not check out (a stale key, a truncated or altered file)
    is reported and treated as absent."""
    key = key or cache_key(settings)
    folder = cache_folder(settings, key)
    if not folder.exists():
        return None
    export: Export | None = None
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        export = Export(folder, manifest)
        problems = []
        if manifest.get("format") != FORMAT or manifest.get("key") != key:
            problems.append("it was made for another model, version or format")
        elif sha256_of(export.graph) != manifest.get("graph_sha256"):
            problems.append("model.onnx does not match the SHA-256 in its manifest")
        for path in (export.tokenizer, export.reference):
            if not path.is_file():
                problems.append(f"{path.name} is missing")
    except (OSError, ValueError) as exc:
        problems = [f"{type(exc).__name__}: {exc}"]
    if problems:
        log.warning("ignoring a corrupt or stale ONNX export in the cache", extra={"folder": str(folder), "problems": problems})
        return None
    return export


def load_for_serving(settings: EmbeddingSettings) -> Export | None:
    """In a process without some of EXPORT_ONLY_PACKAGES, which could not export: the
    valid export in the cache whose key, computed from this process's model files,
    max_tokens and serving packages with the missing packages' versions from its own
    manifest, is the key it was made under. So the model, the token limit and the
    runtime's versions must still match; only what made the graph is taken on trust,
    and its vectors are checked against torch's at load as always. None when the
    process has them all (it uses its own key) or no export matches."""
    have = versions()
    missing = [name for name in EXPORT_ONLY_PACKAGES if have[name] == "absent"]
    if not missing or not Path(settings.cache_dir).is_dir():
        return None
    for manifest in sorted(Path(settings.cache_dir).glob("*/manifest.json")):
        try:
            recorded = json.loads(manifest.read_text()).get("versions", {})
        except (OSError, ValueError):
            continue
        key = cache_key(settings, {name: recorded.get(name, "absent") for name in missing})
        if manifest.parent == cache_folder(settings, key):
            found = load_cached(settings, key)
            if found is not None:
                return found
    return None


# -- verification -------------------------------------------------------------------
def verify(model: OnnxModel, reference: np.ndarray) -> float:
    """Embeds VERIFICATION_TEXTS in padded batches of VERIFY_BATCH and compares each
    vector with torch's (reference, shape (len(VERIFICATION_TEXTS), dim), unit rows).
    Returns the lowest cosine; raises ExportError below MIN_COSINE."""
    got = model.embed_batches(list(VERIFICATION_TEXTS), VERIFY_BATCH)
    if got.shape != reference.shape:
        raise ExportError(f"the ONNX export makes vectors of shape {got.shape}; torch made {reference.shape}")
    cosines = np.sum(got.astype(np.float64) * reference.astype(np.float64), axis=1)
    worst = float(cosines.min())
    if not worst >= MIN_COSINE:  # also refuses NaN
        bad = int(np.argmin(cosines))
        raise ExportError(f"refusing the ONNX export in {model.export.folder}: its vector for verification text #{bad} "
                          f"({len(VERIFICATION_TEXTS[bad])} characters) has cosine {worst:.7f} with torch's, below {MIN_COSINE}")
    return round(worst, 9)


# -- runtimes (no torch) -------------------------------------------------------------
class OnnxModel:
    """The export in ONNX Runtime's CPU execution provider, graph optimisation
    ORT_ENABLE_ALL, intra-op threads = settings.threads or the cores this process may
    use. check=True (the default) re-runs ``verify`` against the stored torch vectors
    and raises ExportError if they differ."""

    runtime = "onnx"
    device = "cpu"

    def __init__(self, settings: EmbeddingSettings, export: Export, check: bool = True):
        # optional extra: onnxruntime and tokenizers come with the embedding extra
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.settings = settings
        self.export = export
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = settings.threads or len(os.sched_getaffinity(0))
        options.inter_op_num_threads = 1
        # Without the arena, memory for each batch is freed after it: a lower peak RSS on
        # catalog texts, at texts/s equal within noise.
        options.enable_cpu_mem_arena = False
        options.log_severity_level = 3  # errors only: the optimiser's notes are not for operators
        try:
            self.session = ort.InferenceSession(str(export.graph), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph types
            raise ExportError(f"onnxruntime cannot load {export.graph}: {exc}") from None
        self.tokenizer = Tokenizer.from_file(str(export.tokenizer))
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.version = ort.__version__
        self.threads = options.intra_op_num_threads
        self.hidden_size = export.manifest.get("dimension")
        self.description = f"{settings.model_name} on cpu via onnxruntime {self.version} (fp32, {self.threads} thread{'' if self.threads == 1 else 's'})"
        if check:
            self.min_cosine = verify(self, np.load(export.reference))

    def feed(self, texts: list[str]) -> dict[str, np.ndarray]:
        """The graph's inputs for texts: int64 (len(texts), longest text's tokens)."""
        encodings = self.tokenizer.encode_batch(texts)
        return {name: np.array([getattr(e, GRAPH_INPUTS[name]) for e in encodings], dtype=np.int64) for name in self.inputs}

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        """float32 (len(texts), dim), unit rows; texts padded to the longest among them."""
        return np.asarray(self.session.run(None, self.feed(texts))[0], dtype=np.float32)

    def embed_batches(self, texts: Sequence[str], size: int) -> np.ndarray:
        return np.concatenate([self.embed_batch(list(texts[i : i + size])) for i in range(0, len(texts), size)])


class OpenVinoModel(OnnxModel):
    """The same export and tokenizer compiled by OpenVINO for CPU (EMBEDDING_RUNTIME=
    openvino): fp32 (INFERENCE_PRECISION_HINT f32, or OpenVINO computes in bf16 on
    CPUs that have bf16 units), settings.threads or one thread per core, verified
    against torch's vectors at load like ONNX Runtime."""

    runtime = "openvino"

    def __init__(self, settings: EmbeddingSettings, export: Export, check: bool = True):
        # optional extra: openvino (the openvino extra), tokenizers (the embedding extra)
        import openvino as ov
        from tokenizers import Tokenizer

        self.settings = settings
        self.export = export
        self.threads = settings.threads or len(os.sched_getaffinity(0))
        try:
            compiled = ov.Core().compile_model(str(export.graph), "CPU", {"INFERENCE_NUM_THREADS": self.threads,
                                                                          "INFERENCE_PRECISION_HINT": "f32",
                                                                          "PERFORMANCE_HINT": "LATENCY"})
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
            raise ExportError(f"OpenVINO cannot compile {export.graph}: {exc}") from None
        self.request = compiled.create_infer_request()
        self.tokenizer = Tokenizer.from_file(str(export.tokenizer))
        self.inputs = [i.get_any_name() for i in compiled.inputs]
        self.version = ov.__version__
        self.hidden_size = export.manifest.get("dimension")
        self.description = f"{settings.model_name} on cpu via OpenVINO {self.version} (fp32, {self.threads} thread{'' if self.threads == 1 else 's'})"
        if check:
            self.min_cosine = verify(self, np.load(export.reference))

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        return np.array(self.request.infer(self.feed(texts))[0], dtype=np.float32)


