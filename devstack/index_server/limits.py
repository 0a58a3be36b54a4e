"""Pinecone's documented data-plane limits, enforced by the local index server.

Source unless noted: docs.pinecone.io, "Database limits". Each constant is the
value Pinecone documents; the server answers a request beyond one with a
Pinecone-shaped 400 whose message names the limit.
"""

MAX_REQUEST_BYTES = 2 * 1024 * 1024  # 2 MB per request
MAX_UPSERT_VECTORS = 1_000  # vectors per upsert request
MAX_METADATA_BYTES = 40_960  # 40 KB of metadata per record
MAX_ID_LENGTH = 512  # characters per record id
MAX_NAMESPACE_LENGTH = 512
MAX_TOP_K = 10_000
MAX_TOP_K_WITH_DATA = 1_000  # top_k limit when includeValues/includeMetadata is true
MAX_IDS_PER_REQUEST = 1_000  # ids per fetch / delete request
MAX_LIST_LIMIT = 100  # ids per /vectors/list page
DEFAULT_LIST_LIMIT = 100
MAX_FETCH_BY_METADATA_LIMIT = 10_000
DEFAULT_FETCH_BY_METADATA_LIMIT = 100
# Pinecone docs, Limits: "Sparse vectors can contain no more than 1000 non-zero values" and
# "Max dimensionality for sparse vectors is 4.2 billion"; the sparse-dense vector format page
# gives the element types: indices uint32, values float32.
MAX_SPARSE_VALUES = 1_000
MAX_SPARSE_INDEX = 2**32 - 1
# Pinecone documents a limit of 10,000 values in one $in / $nin list of a metadata filter.
MAX_IN_VALUES = 10_000
