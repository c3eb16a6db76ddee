"""The public JSON API under ``/v1/``, one module per resource.

Every JSON response states its ``period``, ``methodology_version``, ``sources`` and
``licence``; countries go out as ``{alpha2, alpha3, name}``; percentages are in percent;
unknown is null. Every GET carries an ``ETag`` and ``Cache-Control`` and answers 304 to a
matching ``If-None-Match``. Collection endpoints have a CSV twin (``.csv`` suffix or
``Accept`` negotiation: ``conventions.negotiate``). Errors are raised as
``publish.problems.Problem`` and rendered by ``publish.middleware.error_response``. The
contract is documented in docs/api.md and ``/v1/openapi.json``.

- ``conventions``: the envelope's fields, negotiation, the CSV twin, answers kept per snapshot
  (the answers themselves are ``publish.contract``'s and ``publish.contract_ops``' models);
- ``summaries``: how a corridor and its cheapest service are shown everywhere;
- ``compare``, ``corridors``, ``indicators``, ``kpis``, ``postal``: the data resources;
- ``operations`` (the OpenAPI document, ``/metrics``), ``admin``, ``static``;
- ``routes``: which handler answers which path (``setup_routes``).

This package's ``__init__`` imports nothing, so that importing one resource (the page imports
``compare``) does not import them all.
"""
