"""edgebnn's version, recorded in every run, flatbuffer and result it writes (pyproject.toml holds the same)."""

__version__ = "0.1.0"
