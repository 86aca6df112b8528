"""The hook of machine_needs: with CI=true a test marked ssh/qemu/root that skips (in its body or in a fixture) is a
failure naming what it needs and why it skipped; without CI it stays a skip; other skips stay skips under CI."""

import pytest

pytest_plugins = ["pytester"]

TESTS = '''
import pytest
from machine_needs import skip_for_another_reason


@pytest.fixture(scope="session")
def board():
    pytest.skip("no aarch64 test board here: not root")


@pytest.mark.ssh
def test_marked_skips_in_its_body():
    pytest.skip("cannot start a test OpenSSH server here: no sshd")


@pytest.mark.root
def test_marked_skips_in_a_session_fixture(board):
    pass


@pytest.mark.qemu
@pytest.mark.skipif(True, reason="needs qemu-aarch64")
def test_marked_skipif():
    pass


def test_unmarked_skips():
    pytest.skip("nothing to do with the machine")


@pytest.mark.ssh
def test_marked_skips_for_another_reason():
    skip_for_another_reason("root without chattr +i")


@pytest.mark.ssh
def test_marked_passes():
    pass


@pytest.mark.qemu
@pytest.mark.xfail(reason="known")
def test_marked_xfails():
    assert False
'''

INI = """[pytest]
addopts = -p machine_needs --strict-markers
filterwarnings = ignore::pytest.PytestAssertRewriteWarning
markers =
    ssh: sshd
    qemu: qemu
    root: root
"""


@pytest.fixture
def run(pytester):
    pytester.makepyfile(test_machine=TESTS)
    pytester.makeini(INI)
    return lambda: pytester.runpytest("-rA")


@pytest.mark.parametrize("value", ["true", "1"])
def test_under_ci_a_marked_skip_is_a_failure_with_its_reason(run, monkeypatch, value):
    monkeypatch.setenv("CI", value)
    result = run()
    # The body's skip fails; the skipif and the fixture's skip fail in setup, which pytest counts as errors.
    result.assert_outcomes(passed=1, failed=1, errors=2, skipped=2, xfailed=1)
    result.stdout.fnmatch_lines([
        f"*CI={value}: this test needs a real OpenSSH server (sshd) on 127.0.0.1 and skipped: cannot start a test "
        "OpenSSH server here: no sshd*",
        f"*CI={value}: this test needs root, debootstrap and chroot (the aarch64 userland board) and skipped: no "
        "aarch64 test board here: not root*",
        f"*CI={value}: this test needs qemu-aarch64 (qemu-user) and LCE's aarch64 runner or its samples "
        "(../shared/lce) and skipped: needs qemu-aarch64*",
    ])
    result.stdout.fnmatch_lines(["*SKIPPED*nothing to do with the machine*"])
    result.stdout.fnmatch_lines(["*SKIPPED*root without chattr +i*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


@pytest.mark.parametrize("value", [None, "", "false", "0"])
def test_without_ci_a_marked_skip_stays_a_skip(run, monkeypatch, value):
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    result = run()
    result.assert_outcomes(passed=1, skipped=5, xfailed=1)
    assert "CI=" not in result.stdout.str() and result.ret == pytest.ExitCode.OK
