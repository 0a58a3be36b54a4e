"""The embedding model as an ONNX graph for ONNX Runtime on CPU: exported from the
packaged weights with torch.onnx's TorchScript exporter, verified against the torch path,
kept in a cache folder, and loaded without torch.

Export (``export_into``, run in a process of its own: ``python -m
productsearch.onnx_export``): the model is loaded with eager attention and traced on
a padded example batch, with batch and sequence dimensions dynamic. Mean pooling and
L2 normalisation are part of the graph (``productsearch.torch_runtime.mean_pool``, the
torch path's own code), so the graph's output is the finished vector. Two traps that
give an export which loads and runs but whose vectors are wrong for padded batches
(measured on all-MiniLM-L6-v2, transformers 5.24, torch 2.13): tracing transformers'
SDPA attention on an unpadded example (cosine off by up to 0.1 on padded rows), and
shapes fixed at the example's size instead of declared dynamic (cosine 0.82-0.98
against torch on other batches). Hence eager attention, a padded example, dynamic
batch and sequence axes, and a check.

Verification (``verify``): the same fixed texts of very uneven lengths, embedded in
padded batches by torch (CPU, fp32) at export time and by the exported graph in
ONNX Runtime, must agree to cosine >= ``MIN_COSINE`` = 0.99999 per text. A correct
fp32 export agrees to about 1 - 5e-7 (rounding in a different summation order); the
broken exports above are off by 1e-2 to 1e-1. The threshold sits 20x above the noise
and three orders of magnitude below the failures. The torch vectors are stored with
the export, so a serving process re-runs the check at every load, under its own
thread count and optimisation level, without importing torch.

Cache: one folder per (model files' content, max_tokens, versions of torch,
transformers, tokenizers, onnx, onnxscript, onnxruntime, this module's format), named
by a hash of all of them, so a stale export is never reused; a manifest records the
graph's SHA-256, which is checked at every load (a corrupt or truncated file is
re-exported). Exports are written to a temporary folder and renamed into place under
a file lock, so concurrent first starts (emu and the frontend) export once.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import numpy as np

from productsearch import logs
from productsearch.settings import EmbeddingSettings
from productsearch.torch_runtime import TorchModel, mean_pool

log = logging.getLogger("productsearch.onnx_export")  # not __main__ when run with -m

FORMAT = 2  # bump when the files or the graph's contract change: old exports are then ignored
# ONNX opset of the export: 17 is within what onnxruntime 1.32 runs and what torch
# 2.13's TorchScript exporter writes (torch.onnx docs: "opset_version").
OPSET = 17
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
    out = {}
    for name in KEYED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def _sha256(path: Path) -> str:
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
            digest.update(path.name.encode() + b"\0" + _sha256(path).encode())
    return digest.hexdigest()


def cache_folder(settings: EmbeddingSettings, key: str | None = None) -> Path:
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
        elif _sha256(export.graph) != manifest.get("graph_sha256"):
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


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_export(settings: EmbeddingSettings, timeout_s: float = 1800.0) -> Export:
    """A verified export for these settings: from the cache, or made now in a child
    process (``python -m productsearch.onnx_export``) so that torch and the traced
    model never occupy the caller's memory. Raises ExportError with the child's last
    log lines when the export fails or is refused by the verification."""
    key = cache_key(settings)
    found = load_cached(settings, key) or load_for_serving(settings)
    if found is not None:
        return found
    folder = cache_folder(settings, key)
    try:
        with _locked(folder.with_name(folder.name + ".lock")):
            found = load_cached(settings, key)  # another process may have exported while we waited
            if found is not None:
                return found
            log.info("exporting the embedding model to ONNX (once per model and version set)", extra={"folder": str(folder)})
            started = time.monotonic()
            try:
                done = subprocess.run([sys.executable, "-m", "productsearch.onnx_export", "--settings-json", "-"],
                                      input=json.dumps(dataclasses.asdict(settings)), capture_output=True, text=True,
                                      timeout=timeout_s, env={**os.environ, "PYTHONUNBUFFERED": "1"})
            except subprocess.TimeoutExpired:
                raise ExportError(f"the ONNX export of {settings.model_path} took longer than {timeout_s:.0f}s") from None
            if done.returncode != 0:
                tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
                raise ExportError(f"the ONNX export of {settings.model_path} failed (exit code {done.returncode}):\n{tail}")
    except OSError as exc:
        raise ExportError(f"cannot write the ONNX export under EMBEDDING_CACHE_DIR {settings.cache_dir!r}: {exc}") from None
    found = load_cached(settings, key)
    if found is None:
        raise ExportError(f"the ONNX export of {settings.model_path} finished but {folder} does not hold a valid export")
    log.info("exported the embedding model to ONNX", extra={"folder": str(folder), "seconds": round(time.monotonic() - started, 1),
                                                            "min_cosine_vs_torch": found.manifest.get("min_cosine_vs_torch")})
    return found


# -- export (imports torch; run in a process of its own) -------------------------------
def export_into(settings: EmbeddingSettings, folder: Path) -> dict:
    """Exports, verifies against torch and writes model.onnx, tokenizer.json,
    reference.npy and manifest.json into folder (which must exist). Returns the
    manifest. Raises ExportError if the export's vectors do not match torch's."""
    # heavy: torch and transformers, from the optional embedding extra
    import torch
    from transformers import AutoModel, AutoTokenizer


    torch_settings = dataclasses.replace(settings, device="cpu", quantize_int8=False, runtime="torch")
    tokenizer = AutoTokenizer.from_pretrained(settings.model_path, local_files_only=True)
    inputs = [name for name in tokenizer.model_input_names if name in GRAPH_INPUTS]
    if "input_ids" not in inputs or "attention_mask" not in inputs:
        raise ExportError(f"the tokenizer gives {tokenizer.model_input_names}; the export needs input_ids and attention_mask")
    # Eager attention: traced SDPA attention gave wrong vectors for padded batches.
    model = AutoModel.from_pretrained(settings.model_path, local_files_only=True, attn_implementation="eager").eval()

    class Pooled(torch.nn.Module):
        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
            return mean_pool(hidden, attention_mask)

    inputs = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in inputs]  # forward's order

    # A padded example: texts of different lengths, so the mask holds zeros when traced.
    example = tokenizer(["a", "a padded example batch whose texts differ in length", "three words here"],
                        padding=True, return_tensors="pt")
    with torch.no_grad():
        # The TorchScript exporter: with eager attention its graph is as exact as the
        # dynamo exporter's (cosine 1 - 4e-7 against torch) and ONNX Runtime runs it
        # faster (side by side here: 1.33x torch on the catalog's texts against 1.18x,
        # 1.0x on SciFact's long texts against 0.79x; 2026-11-30, 2 busy cores). Batch
        # and sequence are dynamic axes.
        torch.onnx.export(Pooled(model), tuple(example[name] for name in inputs), str(folder / "model.onnx"), dynamo=False,
                          input_names=inputs, output_names=["sentence_embedding"], opset_version=OPSET,
                          dynamic_axes={name: {0: "batch", 1: "sequence"} for name in inputs})

    # transformers' own fast tokenizer, with the truncation and padding its call applies.
    backend = type(tokenizer.backend_tokenizer).from_str(tokenizer.backend_tokenizer.to_str())
    backend.enable_truncation(max_length=settings.max_tokens, strategy="longest_first", direction=tokenizer.truncation_side)
    backend.enable_padding(direction=tokenizer.padding_side, pad_id=tokenizer.pad_token_id,
                           pad_type_id=tokenizer.pad_token_type_id, pad_token=tokenizer.pad_token)
    backend.save(str(folder / "tokenizer.json"))

    reference = TorchModel(torch_settings).embed_batches(list(VERIFICATION_TEXTS), VERIFY_BATCH)
    np.save(folder / "reference.npy", reference)
    manifest = {"format": FORMAT, "key": cache_key(settings), "model_name": settings.model_name,
                "model_path": str(settings.model_path), "max_tokens": settings.max_tokens, "versions": versions(),
                "inputs": inputs, "output": "sentence_embedding", "dimension": int(reference.shape[1]),
                "exporter": f"torch.onnx.export(dynamo=False, opset {OPSET}), eager attention, padded example",
                "graph_sha256": _sha256(folder / "model.onnx"), "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    export = Export(folder, manifest)
    # The tokenizer file must split exactly as transformers does.
    from tokenizers import Tokenizer  # optional extra: embedding

    saved = Tokenizer.from_file(str(export.tokenizer))
    ours = [e.ids for e in saved.encode_batch(list(VERIFICATION_TEXTS))]
    theirs = tokenizer(list(VERIFICATION_TEXTS), padding=True, truncation=True, max_length=settings.max_tokens)["input_ids"]
    if ours != theirs:
        raise ExportError("the exported tokenizer splits the verification texts differently from transformers' tokenizer")
    manifest["min_cosine_vs_torch"] = verify(OnnxModel(settings, export, check=False), reference)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


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


# -- serving (no torch) -----------------------------------------------------------------
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
        # Without the arena, memory for each batch is freed after it: peak RSS 304 against
        # 324 MiB on 1,280 catalog texts, at equal texts/s within this machine's noise.
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Export the embedding model to ONNX into EMBEDDING_CACHE_DIR and verify "
                                     "it against torch (what the images run at build time and the apps run on first use).")
    parser.add_argument("--settings-json", metavar="-", help="read EmbeddingSettings as JSON from stdin instead of the environment")
    args = parser.parse_args(argv)

    logs.configure("onnx-export")
    if args.settings_json:
        settings = EmbeddingSettings(**json.loads(sys.stdin.read()))
    else:
        settings = EmbeddingSettings.from_env()
    found = load_cached(settings)
    if found is not None:
        print(found.folder)
        return 0
    folder = cache_folder(settings)
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        manifest = export_into(settings, work)
        os.chmod(work, 0o755)  # mkdtemp makes it private; the apps may run as another user (images)
        shutil.rmtree(folder, ignore_errors=True)  # a corrupt one that load_cached refused
        os.rename(work, folder)
    except ExportError as exc:
        log.error(str(exc))
        return 3
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("ONNX export verified against torch", extra={"folder": str(folder), "min_cosine_vs_torch": manifest["min_cosine_vs_torch"]})
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
