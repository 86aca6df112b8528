"""Loaded by pytest before any test module: importing edgebnn first sets TF_USE_LEGACY_KERAS, so test modules may
import larq and tensorflow in any order (ruff sorts third-party imports before ours)."""

import sys

import pytest
from machine_needs import pytest_runtest_makereport  # noqa: F401  (the hook: CI=true fails ssh/qemu/root skips)

import edgebnn  # noqa: F401  (neither sys nor pytest imports TensorFlow)


@pytest.fixture(scope="session")
def arm64_board():
    """An aarch64 Debian 12 userland with its own sshd on 127.0.0.1 (arm64_userland): built once into
    the cache folder, started for the session, stopped with every process it started; skipped with the reason when
    it cannot be built or started here (not root, no Debian archive, no qemu-user-static)."""
    from arm64_userland import Arm64Sshd, Arm64Unavailable, build_rootfs

    try:
        board = Arm64Sshd(build_rootfs(log=lambda msg: print(msg, file=sys.stderr, flush=True))).start()
    except Arm64Unavailable as err:
        pytest.skip(f"no aarch64 test board here: {err}")
    yield board
    board.stop()
