"""The app's long-lived handles: the embedding model (loaded in the background so the
port opens at once and /healthz can say what it is waiting for), the index client, the
Postgres pool, the SQS client and the one search path (productsearch.search).

Nothing here holds state that matters across requests except caches, so any number
of replicas can serve the same users."""

from __future__ import annotations

import logging
import threading
import time

from psycopg_pool import ConnectionPool

from productsearch import aws, db, products
from productsearch.embedding import Embedder
from productsearch.index import ProductIndex
from productsearch.index_set import ServingIndex
from productsearch.search import ProductSearch

from frontend.config import FrontendSettings
from frontend.query_embedding import for_queries
from frontend.status import StatusReader
from frontend.throttle import LoginThrottle

log = logging.getLogger("frontend.services")


# Attempts per index read made for a user (a search, a sync check, the status panel).
SEARCH_ATTEMPTS = 2


class NotReady(RuntimeError):
    """The model is still loading (or failed to load); the message says which."""


def login_throttle(settings: FrontendSettings):
    """The one LoginThrottle the API and the UI share, from settings.tuning.logins."""
    return LoginThrottle(settings.tuning.logins.max_failures, settings.tuning.logins.window_seconds)


class Services:
    def __init__(self, settings: FrontendSettings, *, embedder=None, index=None, pool=None, sqs=None):
        self.settings = settings
        self.pool = pool or ConnectionPool(
            settings.database.url,
            min_size=1,
            max_size=settings.db_pool_size,
            **db.pool_options(settings.database, application_name="frontend"),
            open=False,
            timeout=5.0,
            check=ConnectionPool.check_connection,
        )
        if pool is None:
            self.pool.open(wait=False)  # the database may come up after us; /healthz says so meanwhile
        if index is None:
            # Whichever configured index the serving_index row names (an index migration
            # switches it); searches, the status panel and edit checks all read that one.
            # Every read here answers a user, so its retry budget is short: two attempts
            # of ours and none inside the SDK (which would wait out each Retry-After, up
            # to 3 times per attempt). A throttled search fails fast with the index's
            # Retry-After; emu's writes keep the SDK's retries (ProductIndex's default).
            index = ServingIndex(settings.index, self.pool, lambda one: ProductIndex(
                one, attempts=SEARCH_ATTEMPTS, timeout_s=settings.tuning.index_timeout_seconds, sdk_retries=0))
            index.start()
        self.index = index
        self.sqs = sqs or aws.sqs_client(settings.queues, timeout_s=3.0, attempts=2)
        self.login_throttle = login_throttle(settings)
        self.status = StatusReader(self.pool, self.index, self.sqs, settings.queues.jobs_queue_url,
                                   settings.queues.dead_letter_queue_url)
        self._categories: tuple[float, list[str]] | None = None
        self._embedder = self._for_queries(embedder) if embedder is not None else None
        self._model_error: str | None = None
        self._model_ready = threading.Event()
        if embedder is not None:
            self._model_ready.set()

    # -- the embedding model ------------------------------------------------------
    def load_model_in_background(self) -> threading.Thread:
        thread = threading.Thread(target=self._load_model, name="model-loader", daemon=True)
        thread.start()
        return thread

    def _load_model(self) -> None:
        started = time.monotonic()
        try:
            embedder = Embedder(self.settings.embedding)
            embedder.embed(["warm up"])  # the first call pays for lazy initialisation
        except Exception as exc:  # reported by /healthz, which keeps the task out of service
            self._model_error = f"{type(exc).__name__}: {exc}"
            log.exception("embedding model failed to load")
            return
        self._embedder = self._for_queries(embedder)
        self._model_ready.set()
        log.info("frontend ready to search", extra={"model_load_s": round(time.monotonic() - started, 2),
                                                    "model": self._embedder.description})

    def _for_queries(self, embedder):
        """The one place the model is wrapped for queries: concurrent searches (UI and
        API alike) share forward passes, and recent query vectors are cached."""
        return for_queries(embedder, self.settings.tuning.query_embedding)

    @property
    def model_state(self) -> tuple[bool, str]:
        if self._model_ready.is_set():
            return True, "loaded"
        if self._model_error:
            return False, f"failed to load: {self._model_error}"
        return False, "loading"

    @property
    def embedder(self):
        ok, state = self.model_state
        if not ok:
            raise NotReady(f"the embedding model is {state}")
        return self._embedder

    @property
    def index_state(self) -> str | None:
        """Which configured index serves, as /healthz shows it (ServingIndex.state:
        "primary" or "next", with a reason when the serving_index row is not followed);
        None for an index handle given by the caller."""
        return getattr(self.index, "state", None)

    @property
    def search(self):
        return ProductSearch(self.embedder, self.index, self.pool)

    def categories(self, ttl_s: float = 60.0) -> list[str]:
        """The categories in the table, for the filter's choices (cached; a cache is
        the only state kept between requests)."""
        now = time.monotonic()
        if self._categories and now - self._categories[0] < ttl_s:
            return self._categories[1]
        with self.pool.connection(timeout=3.0) as conn:
            rows = conn.execute(products.CATEGORIES).fetchall()
        found = [r["category"] for r in rows]
        self._categories = (now, found)
        return found

    def close(self) -> None:
        if hasattr(self._embedder, "close"):  # the query batcher's worker thread
            self._embedder.close()
        self.pool.close()
