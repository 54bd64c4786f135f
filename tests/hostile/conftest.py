"""Fixtures of the hostile-input corpus (helpers in :mod:`hostile.helpers`)."""

from __future__ import annotations

import signal
import sys

import pytest

from hostile.helpers import app_with, make_task


@pytest.fixture(scope="session")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile-site")
    sys.path.insert(0, str(root))
    yield root
    sys.path.remove(str(root))


@pytest.fixture(scope="session")
def tiny3d(site):
    return make_task(site, "tiny")


@pytest.fixture(scope="session")
def tiny2d(site):
    return make_task(site, "tiny2d", ndim=2)


@pytest.fixture(scope="session")
def app3d(tiny3d, tiny2d):
    return lambda: app_with(tiny3d, tiny2d)


@pytest.fixture(autouse=True)
def no_hang():
    """A case that blocks (a FIFO read, /dev/zero read to the end) fails after 60 s instead of hanging CI."""

    def timeout(signum, frame):
        raise TimeoutError("hostile case still running after 60 s: the input made segtool hang")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)
