"""Sentence embeddings: mean pooling over the last hidden state, L2-normalised, inputs
truncated to max_tokens, the way the sentence-transformers/all-MiniLM-L6-v2 model
card prescribes. Two runtimes compute the same vectors (EMBEDDING_RUNTIME):

- torch (transformers): CUDA with fp16 when a GPU is present (or asked for), CPU
  fp32 (or int8 with EMBEDDING_QUANTIZE=int8) otherwise;
- onnx: the model exported to ONNX and run by ONNX Runtime on CPU
  (productsearch.onnx_export): the same vectors at about half torch's peak RSS,
  because torch is never imported in the serving process;
- openvino: the same export and checks, compiled by OpenVINO for CPU (opt-in;
  figures side by side in docs/benchmarks.md).

torch is the default (emu's): on this project's 2-core CPU it embedded batches of 64
texts as fast as ONNX Runtime or faster, side by side (docs/benchmarks.md). The
frontend defaults to auto (settings.EmbeddingSettings.for_queries): for one query at a time
ONNX Runtime takes about half torch's time. auto takes torch on a GPU or when
int8 is asked for, and onnx otherwise (about half the peak memory), falling back to
torch with a logged warning when no verified export can be had.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from collections.abc import Sequence
from importlib import metadata

import numpy as np

from productsearch import onnx_export
from productsearch.settings import EmbeddingSettings
from productsearch.torch_runtime import TorchModel

log = logging.getLogger(__name__)


def _gpu_present(settings: EmbeddingSettings) -> bool:
    """Whether auto would put torch on a GPU, without importing torch here (it would
    stay in this process's memory for nothing when ONNX Runtime serves): PyTorch's CPU
    wheels carry the +cpu local version label; any other build is asked in a child."""
    if settings.device != "auto":
        return settings.device.startswith("cuda")
    try:
        version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        return False
    if version.endswith("+cpu"):
        return False
    probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
                           capture_output=True, text=True, timeout=300)
    return probe.stdout.strip() == "True"


def _load(settings: EmbeddingSettings):
    wanted = settings.runtime
    if wanted == "torch" or (wanted == "auto" and (settings.quantize_int8 or _gpu_present(settings))):
        return TorchModel(settings)
    runtime = onnx_export.OpenVinoModel if wanted == "openvino" else onnx_export.OnnxModel
    try:
        try:
            return runtime(settings, onnx_export.ensure_export(settings))
        except ImportError as exc:  # onnxruntime, openvino or tokenizers not installed
            raise onnx_export.ExportError(f"the {wanted} runtime cannot be imported: {exc}") from exc
    except onnx_export.ExportError as exc:
        if wanted != "auto":
            raise
        log.warning("no verified ONNX export; embedding with torch on CPU instead", extra={"reason": str(exc)})
        return TorchModel(settings)


class Embedder:
    """The model, on the runtime EMBEDDING_RUNTIME picks (see the module's docstring).

    embed(texts) -> float32 (len(texts), settings.dimension), unit rows, in the
    order given. Safe to call from several threads (calls run one at a time).
    Raises productsearch.onnx_export.ExportError for EMBEDDING_RUNTIME=onnx without a
    verified export, RuntimeError for a model whose width is not EMBEDDING_DIMENSION.

    sort_by_length: embed texts in order of length and restore the caller's order, so
    that each padded batch holds texts of similar length and pads less (no effect on
    the vectors beyond float rounding).
    """

    def __init__(self, settings: EmbeddingSettings, sort_by_length: bool = True):
        self.settings = settings
        self.sort_by_length = sort_by_length
        self._model = _load(settings)
        self.runtime = self._model.runtime
        self.device = self._model.device
        hidden = self._model.hidden_size
        if hidden is not None and hidden != settings.dimension:
            raise RuntimeError(f"model {settings.model_path} makes {hidden}-dim vectors but EMBEDDING_DIMENSION is {settings.dimension}")
        # Tokenizers are not safe to share between threads mid-call; the frontend embeds from many.
        self._lock = threading.Lock()
        log.info("embedding model loaded", extra={"model": settings.model_name, "runtime": self.runtime,
                                                   "description": self.description})

    @property
    def description(self) -> str:
        return f"{self._model.description}, batch {self.settings.batch_size}, max {self.settings.max_tokens} tokens"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Returns a float32 array of shape (len(texts), dimension), rows of unit length."""
        if not texts:
            return np.zeros((0, self.settings.dimension), dtype=np.float32)
        texts = list(texts)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i])) if self.sort_by_length else range(len(texts))
        with self._lock:
            vectors = self._model.embed_batches([texts[i] for i in order], self.settings.batch_size)
        if not self.sort_by_length:
            return vectors
        out = np.empty_like(vectors)
        out[np.asarray(order)] = vectors
        return out
