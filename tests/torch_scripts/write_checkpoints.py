"""Writes PyTorch checkpoints with real torch, for tests/test_torch_checkpoint.py (run by /usr/bin/python3).

usage: write_checkpoints.py OUT_DIR

Writes into OUT_DIR, each checkpoint in the zip container (NAME.zip.pth.tar) and the legacy one
(NAME.legacy.pth.tar), with the expected arrays as OUT_DIR/NAME/<key>.npy (keys as saved) and the expected
metadata as OUT_DIR/NAME/meta.json:

- ``state``: a bare state_dict (OrderedDict with _metadata) of a small conv net: float32 conv and BatchNorm
  tensors, int64 num_batches_tracked;
- ``reactnet``: ReActNet's ``{epoch, state_dict, best_top1_acc, optimizer}`` from an nn.DataParallel module (keys
  ``module.``), best_top1_acc a 0-d tensor as ReActNet's validate() leaves it, an Adam optimizer that has stepped;
- ``mixed``: ``{epoch, state_dict, best_prec1, arch}`` (SD-BNN's CIFAR form) whose state dict holds float64,
  int64, bool, float16 and uint8 tensors, a transposed (non-contiguous) view, a view at an offset into a storage
  other tensors share, an expanded (stride 0) view, an nn.Parameter and a 0-d tensor.
"""

import json
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn


def _net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.PReLU(4), nn.Flatten(),
                        nn.Linear(4 * 4 * 4, 10))
    with torch.no_grad():
        net(torch.randn(2, 3, 6, 6))  # BatchNorm statistics move, num_batches_tracked becomes 1
    net.train()
    net(torch.randn(2, 3, 6, 6))
    return net


def _reactnet():
    model = nn.DataParallel(_net())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(2, 3, 6, 6)).sum().backward()
    optimizer.step()
    checkpoint = {"epoch": 255, "state_dict": model.state_dict(), "best_top1_acc": torch.tensor(69.5),
                  "optimizer": optimizer.state_dict()}
    return checkpoint, model.state_dict(), {"epoch": 255, "best_top1_acc": 69.5}


def _mixed():
    base = torch.arange(24, dtype=torch.float32) * 0.5 - 3.0
    grid = base.reshape(4, 6)
    state = OrderedDict()
    state["grid"] = grid
    state["grid_t"] = grid.t()  # non-contiguous: stride (1, 6)
    state["tail"] = base[7:19].reshape(3, 4)  # offset 7 into the storage grid shares
    state["column"] = grid[1:, 2]  # offset 8, stride 6
    state["expanded"] = torch.tensor([1.5, -2.0, 4.0]).expand(2, 3)  # stride (0, 1)
    state["double"] = torch.tensor([[1e-300, -2.5], [np.pi, 1e300]], dtype=torch.float64)
    state["long"] = torch.tensor([2**40, -(2**62), 7], dtype=torch.int64)
    state["flags"] = torch.tensor([True, False, True, True])
    state["half"] = torch.tensor([0.5, -65504.0, 1e-4], dtype=torch.float16)
    state["bytes"] = torch.tensor([0, 128, 255], dtype=torch.uint8)
    state["param"] = nn.Parameter(torch.linspace(-1, 1, 5))
    state["scalar"] = torch.tensor(3.25)
    state["num_batches_tracked"] = torch.tensor(1234, dtype=torch.int64)
    checkpoint = {"epoch": 199, "state_dict": state, "best_prec1": torch.tensor(86.875, dtype=torch.float64),
                  "arch": "resnet20_1w1a", "lr": 0.01}
    return checkpoint, state, {"epoch": 199, "best_prec1": 86.875, "arch": "resnet20_1w1a", "lr": 0.01}


def _write(out: Path, name: str, checkpoint, state, meta) -> None:
    torch.save(checkpoint, out / f"{name}.zip.pth.tar")
    torch.save(checkpoint, out / f"{name}.legacy.pth.tar", _use_new_zipfile_serialization=False)
    expected = out / name
    expected.mkdir()
    for key, tensor in state.items():
        np.save(expected / f"{key}.npy", tensor.detach().cpu().numpy())
    (expected / "meta.json").write_text(json.dumps({"meta": meta, "keys": list(state)}))


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    net = _net()
    _write(out, "state", net.state_dict(), net.state_dict(), {})
    _write(out, "reactnet", *_reactnet())
    _write(out, "mixed", *_mixed())
    print(f"torch {torch.__version__}")


if __name__ == "__main__":
    main()
