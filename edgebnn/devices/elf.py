"""The function symbols of an ELF file (the runner's own symbol table), read with the standard library.

Only what the estimator needs: 64-bit little-endian ELF, section headers, ``.symtab`` (or ``.dynsym``) and its
string table; every ``STT_FUNC`` symbol with a non-zero address as (address, size, mangled name), sorted.
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass
from pathlib import Path

from edgebnn.errors import EdgebnnError

_SHT_SYMTAB, _SHT_DYNSYM = 2, 11
_STT_FUNC = 2
EM_AARCH64 = 183


@dataclass
class Symbols:
    """Sorted function symbols of one binary; ``find(pc)`` gives the one whose range holds ``pc``."""

    machine: int
    starts: list[int]
    sizes: list[int]
    names: list[str]

    def find(self, pc: int) -> int | None:
        """Index of the function holding ``pc`` (None when it falls outside every sized function)."""
        i = bisect.bisect_right(self.starts, pc) - 1
        if i >= 0 and pc < self.starts[i] + max(self.sizes[i], 1):
            return i
        return None

    def address(self, name: str) -> int | None:
        """Start address of the function named ``name`` (mangled), or None."""
        try:
            return self.starts[self.names.index(name)]
        except ValueError:
            return None


def _sections(data: bytes) -> list[tuple]:
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    return [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]


def read_symbols(path: str | Path) -> Symbols:
    """Function symbols of the ELF file at ``path``; a file that is not 64-bit little-endian ELF raises
    :class:`EdgebnnError`."""
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise EdgebnnError(f"{path} is not a 64-bit little-endian ELF program: pass an lce_benchmark_model build "
                           "for aarch64")
    machine, = struct.unpack_from("<H", data, 0x12)
    sections = _sections(data)
    tables = [s for s in sections if s[1] == _SHT_SYMTAB] or [s for s in sections if s[1] == _SHT_DYNSYM]
    funcs: dict[int, tuple[int, str]] = {}
    for _name, _type, _flags, _addr, offset, size, link, _info, _align, entsize in tables:
        strtab = sections[link]
        str_off, str_size = strtab[4], strtab[5]
        for pos in range(offset, offset + size, entsize or 24):
            st_name, st_info, _other, _shndx, value, sym_size = struct.unpack_from("<IBBHQQ", data, pos)
            if st_info & 0xF != _STT_FUNC or value == 0:
                continue
            end = data.index(b"\0", str_off + st_name, str_off + str_size)
            name = data[str_off + st_name:end].decode("utf-8", "replace")
            if value not in funcs or (sym_size and not funcs[value][0]):
                funcs[value] = (sym_size, name)
    starts = sorted(funcs)
    return Symbols(machine, starts, [funcs[a][0] for a in starts], [funcs[a][1] for a in starts])
