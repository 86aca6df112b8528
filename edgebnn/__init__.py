"""edgebnn: binary neural networks from paper to ARM board.

Importing this package makes TensorFlow use Keras 2 (``tf-keras``), which Larq needs: the variable
``TF_USE_LEGACY_KERAS`` is set here, before anything imports TensorFlow. TensorFlow itself is imported
lazily by the modules that need it, so ``edgebnn --help`` stays fast.

The front door, one call per stage with keyword options and typed records back (:mod:`edgebnn.api`):
``edgebnn.build``, ``edgebnn.train``, ``edgebnn.import_checkpoint``, ``edgebnn.convert``, ``edgebnn.profile``,
``edgebnn.report``.
"""

import os as _os

_os.environ["TF_USE_LEGACY_KERAS"] = "1"
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TF's C++ start-up noise (CUDA plugins) is not for users

from edgebnn.errors import EdgebnnError  # noqa: E402
from edgebnn.version import __version__  # noqa: E402

FRONT_DOOR = ("build", "train", "import_checkpoint", "convert", "profile", "report")


def __getattr__(name):
    # The front door (edgebnn.api) is loaded on first use: importing any edgebnn module runs this file first, and
    # loading every stage then would make `edgebnn --help` and each light module pay for all of them.
    if name in FRONT_DOOR:
        from edgebnn import api

        return getattr(api, name)
    raise AttributeError(f"module 'edgebnn' has no attribute {name!r}")


__all__ = ["EdgebnnError", "__version__", *FRONT_DOOR]
