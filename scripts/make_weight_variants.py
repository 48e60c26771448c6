#!/usr/bin/env python3
"""LeNet5 weight files in the shapes people actually have them, for the loader tests.

Every file holds the weights of ``LeNet5(10)`` with seed 0 from
make_torch_fixtures.py, i.e. the model of fixture case ``b3_c10`` (the script
checks that its values are bit-for-bit those of ``b3_c10/lenet5.safetensors``),
saved in one of these ways:

    dataparallel.pt        torch.save(nn.DataParallel(model).state_dict()): every key "module.<name>"
    compiled.pt            torch.save(torch.compile(model).state_dict()): every key "_orig_mod.<name>"
                           (torch.compile only wraps the module; nothing is compiled, so no C
                           compiler is needed. If torch.compile raises, the same dict is built by
                           prefixing the keys and the script says so.)
    legacy.pt              torch.save(model.state_dict(), f, _use_new_zipfile_serialization=False):
                           the pre-1.6 pickle format instead of a zip archive. Not byte-for-byte
                           reproducible: this format names each storage by its memory address
                           (str(storage._cdata)), so the keys change on every run; the values do not.
    whole_module.pt        torch.save(model): the pickled module (class make_torch_fixtures.LeNet5),
                           not a state_dict; torch.load needs weights_only=False and scripts/ on
                           sys.path. A loader should refuse it and suggest saving model.state_dict().
    float16.safetensors    the state_dict converted to float16 (safetensors.torch.save_file)
    bfloat16.safetensors   the state_dict converted to bfloat16
    float16.pt             the float16 state_dict via torch.save (zip format)
    jacobian_full_{float16,bfloat16}.npy
                           float32 [3, 10, 3, 1, 32, 32]: torch.autograd.functional.jacobian(model, x,
                           vectorize=True) of a float32 LeNet5 holding the *rounded* weights (the
                           half-precision file read back and converted with .float()), on
                           b3_c10/input.npy
    jacobian_per_sample_{float16,bfloat16}.npy
                           float32 [3, 10, 1, 32, 32]: einsum("bibj->bij") of the full one
    nan_weight.safetensors, nan_weight.pt
                           float32 state_dict with classifier.2.weight[3, 5] = NaN
    inf_bias.pt            float32 state_dict with feature_extractor.3.bias[2] = +Inf

plus VERSIONS.txt (library versions and the command). Apart from legacy.pt,
reruns with the same versions give identical bytes. The full-precision files
(dataparallel, compiled, legacy, whole_module) hold exactly b3_c10's values, so
b3_c10's logits.npy and jacobian_*.npy are their references. At the end every
file is loaded again with PyTorch and checked (keys, dtypes, values, the NaN and
the Inf, whole_module.pt refused with weights_only=True).

Usage:
    python scripts/make_weight_variants.py [--out tests/fixtures/variants] [--reference tests/fixtures/b3_c10]
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_torch_fixtures import (  # noqa: E402
    IMAGE, REPO, LeNet5, build_model, command_line, jacobian_full, per_sample_from_full, save_npy, versions_text)

N_CLASSES, SEED, BATCH = 10, 0, 3  # case b3_c10
HALF = {"float16": torch.float16, "bfloat16": torch.bfloat16}
NAN_AT = ("classifier.2.weight", (3, 5))
INF_AT = ("feature_extractor.3.bias", (2,))


def plain(state) -> dict[str, torch.Tensor]:
    """A state_dict as a plain dict of detached contiguous copies."""
    return {k: v.detach().clone().contiguous() for k, v in state.items()}


def save_safetensors(state: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous() for k, v in state.items()}, str(path))
    os.chmod(path, 0o644)  # save_file creates it 0600; match torch.save's files


def load_any(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def same_values(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Same keys, dtypes, shapes and bits (so NaN equals NaN)."""

    def bits(t: torch.Tensor) -> torch.Tensor:
        return t.detach().contiguous().reshape(-1).view(torch.uint8)

    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and torch.equal(bits(a[k]), bits(b[k])) for k in a)


def strip(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    assert all(k.startswith(prefix) for k in state), f"not every key starts with {prefix!r}: {sorted(state)}"
    return {k[len(prefix):]: v for k, v in state.items()}


def compiled_state_dict(model: nn.Module) -> tuple[dict, str]:
    try:
        return torch.compile(model).state_dict(), "torch.compile(model).state_dict()"
    except Exception as e:  # torch.compile missing or refusing on this platform
        print(f"note: torch.compile failed ({type(e).__name__}: {e}); prefixing the keys with '_orig_mod.' instead")
        return {f"_orig_mod.{k}": v for k, v in model.state_dict().items()}, "keys prefixed by hand"


def with_value(state: dict[str, torch.Tensor], key: str, index: tuple, value: float) -> dict[str, torch.Tensor]:
    out = plain(state)
    out[key][index] = value
    return out


def half_reference(path: Path, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Full and per-sample Jacobians of a float32 LeNet5 holding the weights of a half-precision file."""
    state = {k: v.float() for k, v in load_any(path).items()}
    model = LeNet5(state["classifier.4.weight"].shape[0])
    model.load_state_dict(state)
    model = model.float().eval()
    full = jacobian_full(model, x)
    return full, per_sample_from_full(full)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "variants",
                   help="output directory (default: tests/fixtures/variants)")
    p.add_argument("--reference", type=Path, default=REPO / "tests" / "fixtures" / "b3_c10",
                   help="the b3_c10 case written by make_torch_fixtures.py (default: tests/fixtures/b3_c10)")
    args = p.parse_args(argv)
    warnings.simplefilter("always")  # show every PyTorch warning, also repeated ones

    torch.set_default_dtype(torch.float32)
    out, ref = args.out, args.reference
    out.mkdir(parents=True, exist_ok=True)

    model = build_model(N_CLASSES, SEED)
    state = plain(model.state_dict())
    reference = load_any(ref / "lenet5.safetensors")
    assert same_values(state, reference), f"LeNet5({N_CLASSES}) of seed {SEED} differs from {ref}/lenet5.safetensors"
    assert same_values(state, load_any(ref / "lenet5.pt")), f"differs from {ref}/lenet5.pt"
    x = torch.from_numpy(np.load(ref / "input.npy"))
    assert x.dtype == torch.float32 and x.shape == (BATCH, *IMAGE), (x.dtype, x.shape)

    # Full precision, other containers and key prefixes.
    dp_state = nn.DataParallel(model).state_dict()
    torch.save(dp_state, out / "dataparallel.pt")
    compiled, how = compiled_state_dict(model)
    torch.save(compiled, out / "compiled.pt")
    torch.save(model.state_dict(), out / "legacy.pt", _use_new_zipfile_serialization=False)
    torch.save(model, out / "whole_module.pt")

    # Half precision and references on the rounded weights.
    for name, dtype in HALF.items():
        save_safetensors({k: v.to(dtype) for k, v in state.items()}, out / f"{name}.safetensors")
    torch.save({k: v.to(torch.float16) for k, v in state.items()}, out / "float16.pt")
    ref_full = torch.from_numpy(np.load(ref / "jacobian_full.npy"))
    scale = ref_full.abs().max().item()
    for name in HALF:
        full, per_sample = half_reference(out / f"{name}.safetensors", x)
        assert full.shape == (BATCH, N_CLASSES, BATCH, *IMAGE) and per_sample.shape == (BATCH, N_CLASSES, *IMAGE)
        save_npy(out / f"jacobian_full_{name}.npy", full)
        save_npy(out / f"jacobian_per_sample_{name}.npy", per_sample)
        rel = (full - ref_full).abs().max().item() / scale
        print(f"{name}: Jacobian on the rounded weights differs from b3_c10's by max |diff| / max |J| = {rel:.3g}")

    # Non-finite values.
    nan_state = with_value(state, *NAN_AT, float("nan"))
    save_safetensors(nan_state, out / "nan_weight.safetensors")
    torch.save(nan_state, out / "nan_weight.pt")
    torch.save(with_value(state, *INF_AT, float("inf")), out / "inf_bias.pt")

    # ---- Read everything back. ----
    names = sorted(state)
    for f, prefix in [("dataparallel.pt", "module."), ("compiled.pt", "_orig_mod."), ("legacy.pt", "")]:
        loaded = load_any(out / f)
        assert same_values(strip(loaded, prefix), reference), f"{f}: values differ from {ref}"
        print(f"{f}: keys {list(loaded)} == b3_c10's with prefix {prefix!r}, values bit-identical")
    assert (out / "legacy.pt").read_bytes()[:2] == b"\x80\x02", "legacy.pt should be a bare pickle (protocol 2)"
    assert (out / "dataparallel.pt").read_bytes()[:2] == b"PK", "dataparallel.pt should be a zip archive"
    print(f"compiled.pt: made by {how}")

    try:
        torch.load(out / "whole_module.pt", map_location="cpu", weights_only=True)
        raise AssertionError("whole_module.pt loaded with weights_only=True")
    except Exception as e:  # pickle.UnpicklingError
        first = str(e).strip().splitlines()[-1] if "Unsupported global" not in str(e) else \
            next(line for line in str(e).splitlines() if "Unsupported global" in line).strip()
        print(f"whole_module.pt: weights_only=True refused ({type(e).__name__}: {first[:160]})")
    whole = torch.load(out / "whole_module.pt", map_location="cpu", weights_only=False)
    assert isinstance(whole, LeNet5) and same_values(plain(whole.state_dict()), reference)
    print(f"whole_module.pt: weights_only=False gives {type(whole).__module__}.{type(whole).__name__}, "
          f"state_dict bit-identical to b3_c10's")

    # The full-precision variants reproduce b3_c10's Jacobian.
    for f, prefix in [("dataparallel.pt", "module."), ("compiled.pt", "_orig_mod."), ("legacy.pt", "")]:
        m = LeNet5(N_CLASSES)
        m.load_state_dict(strip(load_any(out / f), prefix))
        full = jacobian_full(m.float().eval(), x)
        diff = (full - ref_full).abs().max().item()
        assert diff <= 1e-6 * scale, (f, diff)
        print(f"{f}: Jacobian recomputed in PyTorch, max |diff| to b3_c10/jacobian_full.npy {diff:.3g}")

    for name, dtype in HALF.items():
        loaded = load_any(out / f"{name}.safetensors")
        assert sorted(loaded) == names and all(v.dtype == dtype for v in loaded.values()), name
        assert same_values(loaded, {k: v.to(dtype) for k, v in state.items()}), name
        print(f"{name}.safetensors: keys {list(loaded)}, all {dtype}")
    f16 = load_any(out / "float16.pt")
    assert same_values(f16, load_any(out / "float16.safetensors")), "float16.pt differs from float16.safetensors"
    print(f"float16.pt: keys {list(f16)}, all torch.float16, equal to float16.safetensors")
    for name in HALF:
        full = torch.from_numpy(np.load(out / f"jacobian_full_{name}.npy"))
        per_sample = np.load(out / f"jacobian_per_sample_{name}.npy")
        assert np.array_equal(per_sample, per_sample_from_full(full).numpy())
        assert per_sample.dtype == np.float32 and per_sample.flags.c_contiguous

    for f, (key, index), bad in [("nan_weight.safetensors", NAN_AT, "nan"), ("nan_weight.pt", NAN_AT, "nan"),
                                 ("inf_bias.pt", INF_AT, "inf")]:
        loaded = load_any(out / f)
        assert sorted(loaded) == names and all(v.dtype == torch.float32 for v in loaded.values())
        nonfinite = {k: torch.nonzero(~torch.isfinite(v)).tolist() for k, v in loaded.items() if not torch.isfinite(v).all()}
        assert nonfinite == {key: [list(index)]}, (f, nonfinite)
        value = loaded[key][index].item()
        assert (np.isnan(value) if bad == "nan" else value == float("inf")), (f, value)
        m = LeNet5(N_CLASSES)
        m.load_state_dict(loaded)
        with torch.no_grad():
            logits = m.eval()(x)
        jac = jacobian_full(m, x)
        others = {k: v for k, v in loaded.items() if k != key}
        assert all(torch.equal(v, reference[k]) for k, v in others.items()), f"{f}: other tensors changed"
        print(f"{f}: {key}{list(index)} = {value}; PyTorch logits finite: {bool(torch.isfinite(logits).all())}, "
              f"Jacobian finite: {bool(torch.isfinite(jac).all())}")

    (out / "VERSIONS.txt").write_text(versions_text(command_line()) + f"compiled.pt {how}\n")
    total = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    for f in sorted(out.iterdir()):
        print(f"  {f.name:34s} {f.stat().st_size:>8d} B")
    print(f"wrote {out} ({total / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
