"""Shared pytest set-up: GPU tests skip without a usable CUDA device."""

from __future__ import annotations

import pytest


def _cuda_reason() -> str | None:
    try:
        from dupscope import _core
    except ImportError as exc:  # pragma: no cover - broken install
        return f"dupscope._core does not import: {exc}"
    ok, why = _core.cuda_available()
    return None if ok else why


def pytest_collection_modifyitems(config, items):
    reason = None
    checked = False
    for item in items:
        if "gpu" in item.keywords:
            if not checked:
                reason, checked = _cuda_reason(), True
            if reason:
                item.add_marker(pytest.mark.skip(reason=f"needs a CUDA GPU: {reason}"))
