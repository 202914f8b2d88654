"""Kept so ``livefaces.sources.redact`` stays importable: the one implementation is
:mod:`livefaces.redact` (ground floor: avio, sources and serve all use it)."""

from __future__ import annotations

from ..redact import SECRET_PARAMS, redact_text, redact_url

__all__ = ["SECRET_PARAMS", "redact_text", "redact_url"]
