#!/usr/bin/env python3
"""Check that weights saved by the lenet-jacobian tool load into the matching PyTorch module.

FILE is a ``.safetensors`` file written by the Rust tool in PyTorch's layout
(keys ``feature_extractor.0.weight``, ..., ``classifier.*``). Its metadata
entry "lenet5_config" holds the architecture as JSON:

    {"num_classes": 10, "activation": "tanh", "pooling": "avg",
     "in_channels": 1, "padding": 0, "conv3": false}

The script builds ``make_torch_fixtures.family_from_config(config)`` (an error
when the entry is missing or not a valid config), runs
``model.load_state_dict(safetensors.torch.load_file(FILE))`` (strict: every
key and shape must match), computes the logits of the input in float32 and
compares them with the logits the Rust tool wrote. It prints max |diff|,
max |logit| and their ratio and exits 1 when the ratio is above --tol
(default 1e-5), the shapes differ or the file does not load.

    --input   .npy [B, in_channels, 32 - 2 * padding, 32 - 2 * padding]
              ([B, H, W] is accepted when in_channels is 1)
    --logits  .npy [B, num_classes]

Example:
    python scripts/check_saved_weights.py saved.safetensors --input x.npy --logits ours.npy
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_torch_fixtures import CONFIG_KEY, family_from_config, input_shape  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("weights", type=Path, help=f".safetensors with the metadata entry {CONFIG_KEY!r}")
    p.add_argument("--input", required=True, type=Path, help="input .npy [B, C, H, W]")
    p.add_argument("--logits", required=True, type=Path, help="logits .npy [B, classes] to compare with")
    p.add_argument("--tol", type=float, default=1e-5,
                   help="largest allowed max |diff| / max |logit| (default 1e-5)")
    args = p.parse_args(argv)

    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(args.weights), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # not a SafeTensors file, truncated header, ...
        print(f"FAIL: {args.weights}: cannot read as SafeTensors ({type(e).__name__}: {e})")
        return 1
    if CONFIG_KEY not in meta:
        print(f"FAIL: {args.weights}: no metadata entry {CONFIG_KEY!r} (metadata keys: {sorted(meta)})")
        return 1
    try:
        cfg = json.loads(meta[CONFIG_KEY])
        model = family_from_config(cfg)
    except (json.JSONDecodeError, ValueError) as e:
        print(f"FAIL: {args.weights}: metadata {CONFIG_KEY!r} = {meta[CONFIG_KEY]!r}: {e}")
        return 1
    state = load_file(str(args.weights))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        print(f"FAIL: {args.weights}: load_state_dict(strict=True) refused it:\n{e}")
        return 1
    model = model.float().eval()
    print(f"weights {args.weights}: {CONFIG_KEY} {json.dumps(cfg)}")
    print(f"  {len(state)} tensors, {sum(t.numel() for t in state.values())} values, "
          f"dtypes {sorted({str(t.dtype) for t in state.values()})}; load_state_dict(strict=True) OK")

    image = input_shape(cfg)
    x = np.load(args.input)
    if x.ndim == 3 and image[0] == 1:  # [B, H, W] -> [B, 1, H, W]
        x = x[:, None]
    if x.ndim != 4 or tuple(x.shape[1:]) != image:
        print(f"FAIL: input {args.input} has shape {x.shape}, expected [B, {', '.join(map(str, image))}]")
        return 1
    with torch.no_grad():
        ref = model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).double().numpy()

    ours = np.load(args.logits)
    print(f"input {args.input} {tuple(x.shape)}; logits {args.logits}: {ours.dtype} {tuple(ours.shape)}")
    if ours.shape != ref.shape:
        print(f"FAIL: logits shape {tuple(ours.shape)} != expected {tuple(ref.shape)}")
        return 1
    if not np.all(np.isfinite(ours)):
        print(f"FAIL: {np.count_nonzero(~np.isfinite(ours))} non-finite logits")
        return 1
    err = float(np.max(np.abs(ours.astype(np.float64) - ref)))
    scale = float(np.max(np.abs(ref)))
    ratio = err / scale if scale > 0 else (0.0 if err == 0 else float("inf"))
    print(f"max |diff|      {err:.6e}")
    print(f"max |logit|     {scale:.6e}")
    print(f"ratio           {ratio:.6e} (tolerance {args.tol:g})")
    if ratio > args.tol:
        print("FAIL")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
