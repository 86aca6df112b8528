"""edgebnn: binary neural networks from paper to ARM board.

Importing this package makes TensorFlow use Keras 2 (``tf-keras``), which Larq needs: the variable
``TF_USE_LEGACY_KERAS`` is set here, before anything imports TensorFlow. TensorFlow itself is imported
lazily by the modules that need it, so ``edgebnn --help`` stays fast.
"""

import os as _os

_os.environ["TF_USE_LEGACY_KERAS"] = "1"
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TF's C++ start-up noise (CUDA plugins) is not for users

from edgebnn.errors import EdgebnnError  # noqa: E402
from edgebnn.version import __version__  # noqa: E402


def __getattr__(name):
    # The public Python API, imported on first use so that `import edgebnn` does not load TensorFlow.
    if name == "convert":
        from edgebnn.convert import convert

        return convert
    raise AttributeError(f"module 'edgebnn' has no attribute {name!r}")


__all__ = ["EdgebnnError", "__version__", "convert"]
