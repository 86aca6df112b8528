"""The device layer: where a flatbuffer runs, below every stage that runs one.

Conversion's on-device proof, profiling and estimation all reach a device through this package, and none of them
through another. It imports only the floor (errors, inputs, outputs, machine, targets) and ``edgebnn.tflite``.

- ``config``: the boards by name (``~/.config/edgebnn/devices.toml`` or a named file) and device specs;
- ``ssh``: OpenSSH connections with a shared master;
- ``board``: a board's facts (CPU, governor, temperature, glibc, emulation) and the checks before a run;
- ``load``: how busy a machine was around a measurement;
- ``parse``: ``lce_benchmark_model``'s output read into figures and op profiles;
- ``remote``: a board session: upload, run the benchmark in its own work folder, end it;
- ``local``: this host: LCE's Python interpreter timed in a child process;
- ``qemu``, ``elf``: LCE's aarch64 runner under QEMU user-mode emulation, its symbol table, the counting plugin;
- ``execute``: one way to run a device's ``lce_benchmark_model`` with files, on any device that has one;
- ``scratch``: a run's own scratch folders and children, which die with it; ``cleanup``: what a killed run left.
"""
