"""What a test needs from the machine, and CI=true turning a skip for want of it into a failure.

A test that needs a real sshd, QEMU with LCE's aarch64 runner, or root for the aarch64 userland board carries the
marker ``ssh``, ``qemu`` or ``root`` (declared in pyproject.toml). Without the tool it is skipped with the reason, so
a developer's machine can run the rest; with the environment variable ``CI`` set to ``true`` (or ``1``) such a skip
is reported as a failure, so a CI machine that lacks the tool fails instead of passing by skipping. Skips raised in
fixtures (setup) count as well as skips in the test body. A marked test that skips for a reason that is not a
missing machine tool says so with :func:`skip_for_another_reason`; that skip stays a skip under CI.

conftest.py imports :func:`pytest_runtest_makereport` so pytest finds the hook; a pytester run loads this module
with ``-p machine_needs``.
"""

import os

import pytest

NEEDS = {
    "ssh": "a real OpenSSH server (sshd) on 127.0.0.1",
    "qemu": "qemu-aarch64 (qemu-user) and LCE's aarch64 runner or its samples (../shared/lce)",
    "root": "root, debootstrap and chroot (the aarch64 userland board)",
}


def skip_for_another_reason(reason: str):
    """Skip the running test for ``reason``, which is not that the machine lacks what its marker names: CI=true
    leaves this skip a skip, even in a marked test."""
    __tracebackhide__ = True
    skip = pytest.skip.Exception(reason)
    skip.not_the_machine = True
    raise skip


def strict() -> bool:
    """Whether this run is CI's: the environment variable CI is ``true`` or ``1``."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return reason.removeprefix("Skipped: ")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or hasattr(report, "wasxfail") or not strict():
        return
    needs = [what for marker, what in NEEDS.items() if item.get_closest_marker(marker) is not None]
    if not needs or (call.excinfo is not None and getattr(call.excinfo.value, "not_the_machine", False)):
        return
    report.outcome = "failed"
    report.longrepr = (f"CI={os.environ['CI']}: this test needs {' and '.join(needs)} and skipped: "
                       f"{_skip_reason(report)}")
