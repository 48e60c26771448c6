#!/usr/bin/env python3
"""PyTorch state_dicts that do not fit LeNet5, for the error tests (tests/errors.rs).

Each file is ``torch.save`` of a dict like the state_dict of ``LeNet5(10)`` from
make_torch_fixtures.py (seed 0), changed in one way:

    conv1_8.pt        feature_extractor.0 with 8 output channels instead of 6
                      (weight [8, 1, 5, 5], bias [8])

(Other key names are no error: the loader finds the layers by their shapes. The
LeNet-5s people save under other names are in tests/fixtures/family/.)

SafeTensors files of the same kinds are written by the tests themselves; only the
pickle-based .pt format needs PyTorch. Each file is about 250 KB.

Usage:
    python scripts/make_bad_weights.py [--out tests/fixtures/bad]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_torch_fixtures import REPO, build_model  # noqa: E402


def state_dict() -> dict[str, torch.Tensor]:
    """The state_dict of LeNet5(10) with seed 0, as plain contiguous tensors."""
    model = build_model(10, 0)
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def conv1_8() -> dict[str, torch.Tensor]:
    state = state_dict()
    generator = torch.Generator().manual_seed(0)
    state["feature_extractor.0.weight"] = torch.rand(8, 1, 5, 5, generator=generator) - 0.5
    state["feature_extractor.0.bias"] = torch.rand(8, generator=generator) - 0.5
    return state


FILES = {
    "conv1_8.pt": conv1_8,
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "bad",
                   help="output directory (default: tests/fixtures/bad)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, make in FILES.items():
        path = args.out / name
        torch.save(make(), path)
        loaded = torch.load(path, map_location="cpu", weights_only=True)
        shapes = {k: list(v.shape) for k, v in loaded.items()}
        print(f"{path}: {path.stat().st_size / 1e3:.0f} KB, {shapes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
