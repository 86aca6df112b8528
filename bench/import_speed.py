"""Time ``edgebnn.torch_checkpoint.read`` on a full-size ReActNet-A checkpoint, in both PyTorch containers.

    .venv/bin/python bench/import_speed.py [--repeat 3] [--no-optimizer]

/usr/bin/python3 with PyTorch (Debian's python3-torch) writes ReActNet-A's state dict (the official key names and
shapes: flat binary weights, move biases, PReLUs, BatchNorms, fc; 29.3M values) with random float32 values, as
``{epoch, state_dict, best_top1_acc, optimizer}`` (the optimizer holding Adam's two moments per parameter, as the
published files do, unless --no-optimizer), zip and legacy. Each file is read ``--repeat`` times in this process;
the table gives the median seconds and the file's MB per second, beside torch.load's median on the same file.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgebnn import torch_checkpoint
from edgebnn.machine import host_label

SYSTEM_PYTHON = "/usr/bin/python3"

# (in, out, stride) of ReActNet-A's 13 blocks (MobileNetV1's channels), stem 3 -> 32.
BLOCKS = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2)] + \
    [(512, 512, 1)] * 5 + [(512, 1024, 2), (1024, 1024, 1)]

WRITER = r"""
import json, sys, time
from collections import OrderedDict
import torch

blocks, out, with_optimizer = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
gen = torch.Generator().manual_seed(0)
state = OrderedDict()

def bn(prefix, c):
    state[prefix + ".weight"] = torch.rand(c, generator=gen)
    state[prefix + ".bias"] = torch.randn(c, generator=gen)
    state[prefix + ".running_mean"] = torch.randn(c, generator=gen)
    state[prefix + ".running_var"] = torch.rand(c, generator=gen)
    state[prefix + ".num_batches_tracked"] = torch.tensor(1281167 * 256 // 256, dtype=torch.int64)

state["module.feature.0.conv1.weight"] = torch.randn(32, 3, 3, 3, generator=gen)
bn("module.feature.0.bn1", 32)
for i, (cin, cout, stride) in enumerate(blocks, start=1):
    p = f"module.feature.{i}."
    for name in ("move11", "move12", "move13", "move21", "move22", "move23"):
        c = cin if name < "move2" or name == "move21" else cout
        state[p + name + ".bias"] = torch.randn(1, c, 1, 1, generator=gen)
    state[p + "binary_3x3.weights"] = torch.randn(cin * cin * 9, 1, generator=gen)
    bn(p + "bn1", cin)
    state[p + "prelu1.weight"] = torch.rand(cin, generator=gen)
    if cin == cout:
        state[p + "binary_pw.weights"] = torch.randn(cout * cin, 1, generator=gen)
        bn(p + "bn2", cout)
    else:
        for k in (1, 2):
            state[p + f"binary_pw_down{k}.weights"] = torch.randn(cin * cin, 1, generator=gen)
            bn(p + f"bn2_{k}", cin)
    state[p + "prelu2.weight"] = torch.rand(cout, generator=gen)
state["module.fc.weight"] = torch.randn(1000, 1024, generator=gen)
state["module.fc.bias"] = torch.randn(1000, generator=gen)
params = [v for k, v in state.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
optimizer = {"state": {}, "param_groups": [{"lr": 1e-3, "params": list(range(len(params)))}]}
if with_optimizer:
    optimizer["state"] = {i: {"step": torch.tensor(256.0), "exp_avg": v.clone(), "exp_avg_sq": v.clone() ** 2}
                          for i, v in enumerate(params)}
checkpoint = {"epoch": 255, "state_dict": state, "best_top1_acc": torch.tensor(69.5), "optimizer": optimizer}
torch.save(checkpoint, out + "/reactnet-a.zip.pth.tar")
torch.save(checkpoint, out + "/reactnet-a.legacy.pth.tar", _use_new_zipfile_serialization=False)
print(json.dumps({"values": sum(v.numel() for v in state.values()), "keys": len(state)}))
"""

LOADER = r"""
import statistics, sys, time
import torch
times = []
for _ in range(int(sys.argv[2])):
    started = time.perf_counter()
    torch.load(sys.argv[1], map_location="cpu")
    times.append(time.perf_counter() - started)
print(statistics.median(times))
"""


def write(out: Path, with_optimizer: bool) -> dict:
    proc = subprocess.run([SYSTEM_PYTHON, "-c", WRITER, json.dumps(BLOCKS), str(out), "1" if with_optimizer else "0"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{SYSTEM_PYTHON} could not write the checkpoints (install Debian's python3-torch): "
                 f"{(proc.stderr.strip().splitlines() or ['no output'])[-1]}")
    return json.loads(proc.stdout)


def time_read(path: Path, repeat: int) -> tuple[float, int]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        checkpoint = torch_checkpoint.read(path)
        times.append(time.perf_counter() - started)
    return statistics.median(times), sum(a.size for a in checkpoint.state.values())


def time_torch_load(path: Path, repeat: int) -> float:
    proc = subprocess.run([SYSTEM_PYTHON, "-c", LOADER, str(path), str(repeat)], capture_output=True, text=True,
                          check=True)
    return float(proc.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-optimizer", action="store_true", help="save the state dict with an empty optimizer")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        written = write(Path(tmp), not args.no_optimizer)
        print(f"ReActNet-A state dict: {written['values']:,} values in {written['keys']} tensors; optimizer "
              f"{'empty' if args.no_optimizer else 'with Adam moments (2 x the parameters)'}\n")
        print(f"{'container':<10}{'file MB':>9}{'read s':>9}{'MB/s':>8}{'state MB/s':>12}{'torch.load s':>14}")
        print("-" * 62)
        for container in ("zip", "legacy"):
            path = Path(tmp) / f"reactnet-a.{container}.pth.tar"
            seconds, values = time_read(path, args.repeat)
            mb = path.stat().st_size / 1e6
            torch_seconds = time_torch_load(path, args.repeat)
            print(f"{container:<10}{mb:>9.1f}{seconds:>9.3f}{mb / seconds:>8.0f}{values * 4 / 1e6 / seconds:>12.0f}"
                  f"{torch_seconds:>14.3f}")
    print(f"\nmedian of {args.repeat} reads each, measured on this host: {host_label()} (shared: other jobs may run "
          "at the same time); MB/s is the file's size, state MB/s the state dict's float32 bytes, per second")


if __name__ == "__main__":
    main()
