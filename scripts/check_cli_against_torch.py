#!/usr/bin/env python3
"""Check a Jacobian written by the lenet-jacobian CLI against PyTorch.

Loads the state_dict (``.pt`` or ``.safetensors``) into the LeNet5 of
make_torch_fixtures.py (``load_model``: the architecture of the SafeTensors
metadata entry "lenet5_config" when the file has one, else the seed's tanh/avg
LeNet5 with the class count of classifier.4.weight), recomputes the input
Jacobian of the same input with PyTorch in the requested layout and compares:

    full        [B, C, B, *image]  torch.autograd.functional.jacobian(model, x, vectorize=True)
    per-sample  [B, C, *image]     vmap(jacrev) over the samples (the diagonal blocks of full)

where image is [1, 32, 32] for the seed's model (in general [in_channels,
32 - 2 * padding, 32 - 2 * padding]).

Prints the max abs error, max |J_torch| and their ratio; exits 1 when the
ratio is above --tol (default 1e-4) or the shapes differ.

Example:
    python scripts/check_cli_against_torch.py --weights model.pt --input x.npy \
        --jacobian j.npy --layout per-sample
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_torch_fixtures import config_of, input_shape, jacobian_full, jacobian_per_sample, load_model  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", required=True, type=Path, help="state_dict: .pt (torch.save) or .safetensors")
    p.add_argument("--input", required=True, type=Path, help="input .npy [B, 1, 32, 32] (the model's image shape)")
    p.add_argument("--jacobian", required=True, type=Path, help="Jacobian .npy written by the CLI")
    p.add_argument("--layout", required=True, choices=["full", "per-sample"])
    p.add_argument("--tol", type=float, default=1e-4, help="largest allowed max-abs-error / max|J_torch| (default 1e-4)")
    p.add_argument("--float64", action="store_true", help="compute the PyTorch reference in float64")
    args = p.parse_args(argv)

    model = load_model(args.weights)
    n_classes = model.classifier[-1].out_features
    image = input_shape(config_of(model))
    x = np.load(args.input)
    if x.ndim == 3 and image[0] == 1:  # [B, H, W] -> [B, 1, H, W]
        x = x[:, None]
    if x.ndim != 4 or tuple(x.shape[1:]) != image:
        print(f"error: input {args.input} has shape {x.shape}, expected [B, {', '.join(map(str, image))}]",
              file=sys.stderr)
        return 1
    batch = x.shape[0]
    dtype = torch.float64 if args.float64 else torch.float32
    model = model.to(dtype)
    xt = torch.from_numpy(np.ascontiguousarray(x)).to(dtype)

    if args.layout == "full":
        ref = jacobian_full(model, xt)
        expected = (batch, n_classes, batch, *image)
    else:
        ref = jacobian_per_sample(model, xt)
        expected = (batch, n_classes, *image)
    ref = ref.detach().double().numpy()

    ours = np.load(args.jacobian)
    print(f"weights {args.weights} ({n_classes} classes), input {tuple(x.shape)}, layout {args.layout}")
    print(f"jacobian {args.jacobian}: {ours.dtype} {tuple(ours.shape)}; torch {tuple(expected)} in {dtype}")
    if tuple(ours.shape) != expected:
        print(f"FAIL: shape {tuple(ours.shape)} != expected {expected}")
        return 1
    if not np.all(np.isfinite(ours)):
        print(f"FAIL: {np.count_nonzero(~np.isfinite(ours))} non-finite values")
        return 1

    err = float(np.max(np.abs(ours.astype(np.float64) - ref)))
    scale = float(np.max(np.abs(ref)))
    ratio = err / scale if scale > 0 else (0.0 if err == 0 else float("inf"))
    print(f"max abs error   {err:.6e}")
    print(f"max |J_torch|   {scale:.6e}")
    print(f"ratio           {ratio:.6e} (tolerance {args.tol:g})")
    if ratio > args.tol:
        print("FAIL")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
