"""ARM64 latency without a board: LCE's own aarch64 kernels run under QEMU user-mode emulation, their
instructions counted by a TCG plugin, and turned into an estimate per named board with a calibration made on
published figures, its leave-one-out error beside every estimate.

- ``counting``: instructions per inference, per vCPU, per kernel class and per op;
- ``boards``: the boards, their published latencies and the QEMU core each is counted on (``boards.toml``:
  cortex-a72 for the Pi 4B and the Pixel 1; cortex-a76 for the Pi 5, uncalibrated: instructions only);
- ``fit``: the board model and its leave-one-out error;
- ``calibration``: the shipped calibration (``calibration.json``), flags, and ``edgebnn calibrate``;
- ``zoo``: the Larq Zoo calibration models (the ``zoo`` extra);
- ``estimate``: estimated result rows for the results database, and their table;
- ``emulated``: the ``qemu:aarch64`` device of ``edgebnn profile``.

The emulator itself, its plugin and the runner's symbol table are the device layer's (``edgebnn.devices.qemu``,
``edgebnn.devices.elf``); ``counting.count_model(runner, model)`` counts one flatbuffer.
"""
