"""Shared fixtures: a tiny test task whose model is a single 1x1 convolution."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

TESTS_DIR = Path(__file__).parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))
