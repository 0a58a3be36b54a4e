"""Local, Pinecone-API-compatible vector index server (REST data plane).

Run::

    python -m devstack.index_server --host 127.0.0.1 --port 5081 \\
        --data-dir .local/index --dimension 384 --metric dotproduct [--api-key KEY] \\
        [--latency-ms MS]

and point the official SDK at it::

    from pinecone import Pinecone
    index = Pinecone(api_key="KEY").Index(host="http://127.0.0.1:5081")

Endpoints (Pinecone data plane, JSON field names in camelCase; snake_case is
accepted too):

* ``POST /vectors/upsert``         ``{"vectors": [{"id", "values", "sparseValues", "metadata"}],
  "namespace"}``
* ``POST /query``                  ``{"vector"|"id", "sparseVector", "topK", "filter",
  "includeValues", "includeMetadata", "namespace"}``
* ``GET  /vectors/fetch``          ``?ids=a&ids=b&namespace=ns``
* ``POST /vectors/fetch_by_metadata`` ``{"filter", "namespace", "limit", "paginationToken"}``
* ``POST /vectors/delete``         ``{"ids"|"deleteAll"|"filter", "namespace"}``
* ``GET  /vectors/list``           ``?namespace=&prefix=&limit=&paginationToken=``
* ``POST /vectors/update``         ``{"id"|"filter", "values", "sparseValues", "setMetadata",
  "namespace", "dryRun"}``
* ``POST|GET /describe_index_stats``
* ``GET /namespaces``, ``GET|DELETE /namespaces/{name}``

Document indexes (Pinecone's Documents API, API version 2026-07) are served beside
the legacy index: a control plane (``POST /indexes`` with a schema, ``GET /indexes``,
``GET|PATCH|DELETE /indexes/{name}``) and each document index's data plane under its
host ``/document-indexes/{name}`` (``POST /namespaces/{ns}/documents/upsert|search|
fetch|delete|update|list``, stats and namespaces); full-text search on tantivy. See
:mod:`~devstack.index_server.document_control`, :mod:`~devstack.index_server.documents`
and docs/document-index.md.

Sparse values (``{"indices": [uint32], "values": [float32]}``) ride along with the dense
values of a record, as in a Pinecone sparse-dense (hybrid) index: see :func:`~devstack.index_server.protocol.parse_sparse`
for the rules and :mod:`devstack.index_server.scoring` and :mod:`~devstack.index_server.sparse` for how they are scored.

The default namespace is ``""``; ``"__default__"`` is accepted as its alias in
requests and is how it is reported by ``describe_index_stats`` and ``/namespaces``
(as current Pinecone does).

Errors use Pinecone's data-plane shape ``{"code": <grpc code>, "message": "...",
"details": []}`` with the matching HTTP status, so the SDK raises ``ApiError``
(alias ``PineconeApiException``) and its status subclasses.

Local-only extras (not part of Pinecone's API): ``GET /healthz`` and the fault
injection API ``POST /_faults`` / ``GET /_faults`` / ``DELETE /_faults``. A request
carrying the header ``X-Devstack-Fault-Exempt: 1`` neither triggers nor consumes a
fault, so a test can watch the index while the services under test meet the faults.
``DELETE /_faults`` also releases requests a delay is holding, and ``GET /_faults``
counts the API requests in flight, so a test can wait for the index to be quiet.
``--latency-ms`` (or ``PUT /_latency`` ``{"latency_ms": MS}`` at run time) delays
every API request, as the network to Pinecone would; ``GET /_stats`` counts the API
requests per operation since ``DELETE /_stats``, with their body bytes and the read
and write units Pinecone would bill (:mod:`~devstack.index_server.costs`; shapes in
:mod:`devstack.costs`). None of these local endpoints is delayed, counted or needs
the API key.

Modules: :mod:`~devstack.index_server.limits` (Pinecone's documented limits),
:mod:`~devstack.index_server.protocol` (wire formats and request validation),
:mod:`~devstack.index_server.handlers` (the operations),
:mod:`~devstack.index_server.store` with :mod:`~devstack.index_server.namespace`,
:mod:`~devstack.index_server.scoring` and :mod:`~devstack.index_server.sparse` (storage
and search), :mod:`~devstack.index_server.filters` with
:mod:`~devstack.index_server.columns` (metadata filters),
:mod:`~devstack.index_server.faults` (fault injection),
:mod:`~devstack.index_server.document_control`, :mod:`~devstack.index_server.documents`,
:mod:`~devstack.index_server.document_store`, :mod:`~devstack.index_server.document_search`,
:mod:`~devstack.index_server.document_routes` and :mod:`~devstack.index_server.fulltext`
(document indexes), :mod:`~devstack.index_server.costs`
(Pinecone's cost model), :mod:`~devstack.index_server.app`
(the ASGI app) and ``__main__`` (the command line).
"""
