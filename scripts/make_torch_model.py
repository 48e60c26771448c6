#!/usr/bin/env python3
"""Write a random LeNet5 case for the lenet-jacobian CLI: any seed, batch and class count.

    DIR/model.pt            torch.save(model.state_dict())
    DIR/model.safetensors   safetensors.torch.save_file(model.state_dict())
    DIR/x.npy               float32 [B, 1, 32, 32], torch.rand drawn after the weights

Weights: PyTorch's default init after torch.manual_seed(SEED) (as make_torch_fixtures.py).
Then run the CLI on DIR/model.pt and DIR/x.npy and compare its Jacobian with
scripts/check_cli_against_torch.py.

Example:
    python scripts/make_torch_model.py --classes 7 --seed 42 --batch 5 --out /tmp/case
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_torch_fixtures import make_case, save_npy, save_state_dict  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--classes", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.classes < 1 or args.batch < 1:
        p.error("--classes and --batch must be >= 1")

    model, x = make_case(args.classes, args.seed, args.batch)
    pt, st = save_state_dict(model, args.out, "model")
    save_npy(args.out / "x.npy", x)
    print(f"wrote {pt}, {st}, {args.out / 'x.npy'} "
          f"(classes {args.classes}, seed {args.seed}, batch {args.batch})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
