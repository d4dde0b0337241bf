"""What people look at, beside the API: the page at ``/`` with the site's three boxes, live, and
the API browser at ``/docs``. Neither is part of the API (nor of its OpenAPI document)."""

from __future__ import annotations

from .routes import site_routes

__all__ = ["site_routes"]
