"""The HTTP API: one module per resource (``events``, ``rankings``, ``articles``, ``editorial``,
``ops``), the route table and the middleware that turns errors into JSON (``routes``), who may
call what (``auth``, ``cors``), what a request must satisfy first (``preconditions``), the JSON
responses (``responses``) and the typed app keys (``appkeys``).

Nothing is imported here: :func:`ranker.api.routes.add_routes` is what the app factory uses.
"""
