"""Target profiles shipped as package data."""

import pytest

from edgebnn import targets
from edgebnn.errors import EdgebnnError


def test_every_documented_target_ships():
    assert targets.names() == ["arm64", "armv7", "x86_64", "xcore"]


def test_arm64_profile():
    t = targets.load("arm64")
    assert t.lce_target == "arm" and "aarch64" in t.machines and t.elf_machine == "aarch64"
    assert t.runner == "lce_benchmark_model_aarch64" and t.threads == (1, 4) and t.num_runs > 0


def test_armv7_needs_glibc_2_29():
    t = targets.load("armv7")
    assert t.min_glibc == "2.29" and t.runner == "lce_benchmark_model_aarch32" and "armv7l" in t.machines


def test_xcore_uses_lces_xcore_target():
    assert targets.load("xcore").lce_target == "xcore"


def test_unknown_target_lists_the_known_ones():
    with pytest.raises(EdgebnnError, match="unknown target 'riscv'.*arm64, armv7, x86_64, xcore"):
        targets.load("riscv")


def test_profile_from_a_file(tmp_path):
    good = tmp_path / "pi.toml"
    good.write_text('name = "pi"\nlce_target = "arm"\nmachines = ["aarch64"]\n[benchmark]\nthreads = [2]\n')
    assert targets.load(str(good)).threads == (2,)
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n')
    with pytest.raises(EdgebnnError, match="bad.toml has no lce_target"):
        targets.load(str(bad))
    with pytest.raises(EdgebnnError, match="does not exist"):
        targets.load(str(tmp_path / "none.toml"))
