"""Sentence embeddings with transformers + torch: mean pooling over the last hidden
state, L2-normalised, inputs truncated to max_tokens, the way the
sentence-transformers/all-MiniLM-L6-v2 model card prescribes. CUDA with fp16 when a
GPU is present (or asked for), CPU otherwise; the same code either way."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import numpy as np

from productsearch.settings import EmbeddingSettings

log = logging.getLogger(__name__)


class Embedder:
    def __init__(self, settings: EmbeddingSettings):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self._torch = torch
        self.settings = settings
        if settings.threads:
            torch.set_num_threads(settings.threads)
        device = settings.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError("EMBEDDING_DEVICE asks for CUDA but torch sees no GPU")
        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(settings.model_path, local_files_only=True)
        model = AutoModel.from_pretrained(settings.model_path, local_files_only=True)
        model.eval()
        if self.device.type == "cuda":
            model = model.half()
        elif settings.quantize_int8:
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        self.model = model.to(self.device)
        hidden = getattr(model.config, "hidden_size", None)
        if hidden is not None and hidden != settings.dimension:
            raise RuntimeError(f"model {settings.model_path} makes {hidden}-dim vectors but EMBEDDING_DIMENSION is {settings.dimension}")
        # Tokenizers are not safe to share between threads mid-call; the frontend embeds from many.
        self._lock = threading.Lock()
        log.info("embedding model loaded", extra={"model": settings.model_name, "device": str(self.device),
                                                   "dtype": "fp16" if self.device.type == "cuda" else ("int8" if settings.quantize_int8 else "fp32")})

    @property
    def description(self) -> str:
        mode = "fp16" if self.device.type == "cuda" else ("int8-dynamic" if self.settings.quantize_int8 else "fp32")
        return f"{self.settings.model_name} on {self.device} ({mode}), batch {self.settings.batch_size}, max {self.settings.max_tokens} tokens"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Returns a float32 array of shape (len(texts), dimension), rows of unit length."""
        if not texts:
            return np.zeros((0, self.settings.dimension), dtype=np.float32)
        out = []
        size = self.settings.batch_size
        for start in range(0, len(texts), size):
            out.append(self._embed_batch(list(texts[start : start + size])))
        return np.concatenate(out)

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        with self._lock, torch.inference_mode():
            encoded = self.tokenizer(
                texts, padding=True, truncation=True, max_length=self.settings.max_tokens, return_tensors="pt"
            ).to(self.device)
            hidden = self.model(**encoded).last_hidden_state
            mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            summed = (hidden * mask).sum(dim=1)
            counts = mask.sum(dim=1).clamp(min=1e-9)
            pooled = (summed / counts).float()
            normalised = torch.nn.functional.normalize(pooled, p=2, dim=1)
            return normalised.cpu().numpy().astype(np.float32)
