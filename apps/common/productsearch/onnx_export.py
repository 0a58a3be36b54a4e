"""Making the ONNX export of the embedding model: exported from the packaged weights
with torch.onnx's TorchScript exporter, verified against the torch path, and put into
the cache that productsearch.onnx_runtime reads (its docstring describes the cache,
the verification and the runtimes that serve an export without torch).

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

Exports are written to a temporary folder and renamed into place under a file lock,
so concurrent first starts (emu and the frontend) export once. The serving names
(Export, ExportError, OnnxModel, OpenVinoModel) are importable from here too, beside
``ensure_export``, which finds an export or makes one.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from productsearch import logs
from productsearch.onnx_runtime import (FORMAT, GRAPH_INPUTS, VERIFICATION_TEXTS, VERIFY_BATCH, Export, ExportError,
                                        OnnxModel, OpenVinoModel, cache_folder, cache_key, load_cached,
                                        load_for_serving, sha256_of, verify, versions)
from productsearch.settings import EmbeddingSettings
from productsearch.torch_runtime import TorchModel, mean_pool

__all__ = ["Export", "ExportError", "OnnxModel", "OpenVinoModel", "ensure_export", "export_into", "main"]

log = logging.getLogger("productsearch.onnx_export")  # not __main__ when run with -m

# ONNX opset of the export: 17 is within what onnxruntime 1.32 runs and what torch
# 2.13's TorchScript exporter writes (torch.onnx docs: "opset_version").
OPSET = 17


@contextlib.contextmanager
def _locked(path: Path):
    """Holds an exclusive flock on `path` (made if missing) while the block runs."""
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
                                      input=json.dumps(settings.model_dump()), capture_output=True, text=True,
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


    torch_settings = settings.model_copy(update={"device": "cpu", "quantize_int8": False, "runtime": "torch"})
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
                "graph_sha256": sha256_of(folder / "model.onnx"), "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
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



def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Export the embedding model to ONNX into EMBEDDING_CACHE_DIR and verify "
                                     "it against torch (what the images run at build time and the apps run on first use).")
    parser.add_argument("--settings-json", metavar="-", help="read EmbeddingSettings as JSON from stdin instead of the environment")
    args = parser.parse_args(argv)

    logs.configure("onnx-export")
    if args.settings_json:
        settings = EmbeddingSettings.model_validate(json.loads(sys.stdin.read()))
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
