"""The torch runtime of productsearch.embedding: transformers' model with mean
pooling over the last hidden state, L2-normalised. embedding serves it, and
productsearch.onnx_export traces the same pooling into its graph and checks the export
against it, so both runtimes pool alike. torch and transformers come from the optional
embedding extra and are imported only when a model is made.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from productsearch.settings import EmbeddingSettings


def mean_pool(hidden, attention_mask):
    """torch: mean of hidden (batch, tokens, dim) over the tokens the mask keeps
    (batch, tokens), then L2-normalised: (batch, dim) in hidden's dtype. The torch
    runtime and the ONNX export both use this, so they pool alike."""
    import torch  # heavy: torch, from the optional embedding extra

    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * mask).sum(dim=1)
    counts = mask.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(summed / counts, p=2, dim=1)


class TorchModel:
    """transformers + torch: CUDA fp16, CPU fp32 or CPU int8 (dynamic quantisation)."""

    runtime = "torch"

    def __init__(self, settings: EmbeddingSettings):
        # heavy: torch and transformers, from the optional embedding extra
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
        self.hidden_size = getattr(model.config, "hidden_size", None)
        self.mode = "fp16" if self.device.type == "cuda" else ("int8-dynamic" if settings.quantize_int8 else "fp32")

    @property
    def description(self) -> str:
        return f"{self.settings.model_name} on {self.device} ({self.mode})"

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            encoded = self.tokenizer(
                texts, padding=True, truncation=True, max_length=self.settings.max_tokens, return_tensors="pt"
            ).to(self.device)
            hidden = self.model(**encoded).last_hidden_state
            pooled = mean_pool(hidden.float(), encoded["attention_mask"])
            return pooled.cpu().numpy().astype(np.float32)

    def embed_batches(self, texts: Sequence[str], size: int) -> np.ndarray:
        return np.concatenate([self.embed_batch(list(texts[i : i + size])) for i in range(0, len(texts), size)])
