"""The papers' published checkpoints as edgebnn run folders (``edgebnn import``).

    >>> from edgebnn.importing import import_checkpoint
    >>> run = import_checkpoint("ReActNet-A.pth.tar")          # runs/reactnet-a-TIMESTAMP/

One module per family's key map (``reactnet``, ``bireal``, ``sdbnn``, ``xnorpp``, ``zoo``), the shared tensor
conversions and the exactly-once ledger (``tensors``), the file readers (``sources``), the run folder
(``run_folder``) and the whole import (``importer``).
"""

from edgebnn.importing.importer import KEY_MAPS, import_checkpoint

__all__ = ["KEY_MAPS", "import_checkpoint"]
