"""Shared pytest set-up: GPU tests skip without a usable CUDA device."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from seeding import SEED  # noqa: E402


def pytest_report_header(config):
    return f"random inputs: DUPSCOPE_TEST_SEED={SEED} (set it to repeat this run's data)"


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
