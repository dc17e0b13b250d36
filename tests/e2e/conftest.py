"""Shared pytest fixtures: where the build is, and free loopback ports."""
import os
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def build_dir() -> Path:
    return (ROOT / os.environ.get("HUTCH_BUILD_DIR", "build")).resolve()


@pytest.fixture(scope="session")
def bindir() -> Path:
    d = build_dir() / "bin"
    if not d.is_dir():
        pytest.fail(f"no programs in {d}: build first (make build or make test)")
    return d


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
