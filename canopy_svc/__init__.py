"""canopy-svc: a Canopy Servicing-compatible customer service on PostgreSQL."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
