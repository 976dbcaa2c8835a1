"""The HTTP shim: Segment's tracking API (tracking_api.py) served by a Starlette app (app.py)."""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
