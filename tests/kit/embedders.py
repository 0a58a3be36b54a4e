"""An embedder for tests that records its calls and can hold a forward pass open, so
other callers queue behind it: interleavings made deterministic, on the real model."""

from __future__ import annotations

import threading


class Recording:
    """The real Embedder, recording each call's texts. A call whose texts include
    `hold_on` waits for `release` (so other callers queue meanwhile); with `fail` set,
    calls raise it instead of embedding."""

    def __init__(self, embedder):
        self.inner = embedder
        self.settings = embedder.settings
        self.description = embedder.description
        self.calls: list[list[str]] = []
        self.hold_on: str | None = None
        self.held = threading.Event()
        self.release = threading.Event()
        self.fail: BaseException | None = None

    def embed(self, texts):
        texts = list(texts)
        self.calls.append(texts)
        if self.hold_on is not None and self.hold_on in texts:
            self.held.set()
            assert self.release.wait(120), "the test never released the held forward pass"
        if self.fail is not None:
            raise self.fail
        return self.inner.embed(texts)
