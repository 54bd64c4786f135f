"""Shared fixtures: a tiny test task whose model is a single 1x1 convolution."""

from __future__ import annotations

import locale
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))


@pytest.fixture(autouse=True)
def restore_process_locale():
    """Tests that write DICOM with SimpleITK's GDCM writer leave the process in the "C"
    locale (ASCII default encoding); put the locale back so later tests see the real one."""
    saved = locale.setlocale(locale.LC_ALL)
    yield
    if locale.setlocale(locale.LC_ALL) != saved:
        locale.setlocale(locale.LC_ALL, saved)


@pytest.fixture
def clean_hub_env(monkeypatch):
    """No Hub settings leak in from the machine running the tests."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT", "SEGTOOL_CACHE", "HF_HUB_CACHE", "HF_HOME", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
