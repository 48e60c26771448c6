#!/usr/bin/env python3
"""Reference fixtures from PyTorch for the LeNet5 input Jacobians.

For each case below the weights come from PyTorch's default initialisation
after ``torch.manual_seed(seed)``, and the input is the ``torch.rand(batch, 1,
32, 32)`` drawn right after building the model (same generator). Everything is
float32 on the CPU. Each case directory gets:

    lenet5.pt                 torch.save(model.state_dict())
    lenet5.safetensors        safetensors.torch.save_file(model.state_dict())
    input.npy                 float32 [B, 1, 32, 32]
    logits.npy                float32 [B, C]
    jacobian_full.npy         float32 [B, C, B, 1, 32, 32]
                              torch.autograd.functional.jacobian(model, x, vectorize=True)
    jacobian_per_sample.npy   float32 [B, C, 1, 32, 32]
                              einsum("bibj->bij") of the full one (its diagonal blocks)

and the output directory gets VERSIONS.txt (library versions and the command).

Other scripts import ``LeNet5``, ``build_model``, ``make_case``,
``save_state_dict``, ``load_model`` and the Jacobian helpers from here.

Usage:
    python scripts/make_torch_fixtures.py [--out tests/fixtures]
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parent.parent
IMAGE = (1, 32, 32)

# name -> (batch, classes, seed)
CASES = {
    "b3_c10": (3, 10, 0),
    "b2_c4": (2, 4, 1),
}


class LeNet5(nn.Module):
    def __init__(self, n_classes):
        super().__init__()
        self.feature_extractor = nn.Sequential(
            nn.Conv2d(1, 6, kernel_size=5, stride=1), nn.Tanh(), nn.AvgPool2d(kernel_size=2),
            nn.Conv2d(6, 16, kernel_size=5, stride=1), nn.Tanh(), nn.AvgPool2d(kernel_size=2))
        self.classifier = nn.Sequential(
            nn.Linear(400, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, n_classes))

    def forward(self, x):
        x = self.feature_extractor(x); x = torch.flatten(x, 1); return self.classifier(x)


def build_model(n_classes: int, seed: int) -> LeNet5:
    """LeNet5 with PyTorch's default init after ``torch.manual_seed(seed)``, float32, eval mode.

    The global generator is left right after the weights, so a following
    ``torch.rand`` draws the case's input (see ``make_case``).
    """
    torch.manual_seed(seed)
    model = LeNet5(n_classes).float().eval()
    return model


def make_case(n_classes: int, seed: int, batch: int) -> tuple[LeNet5, torch.Tensor]:
    """The model of ``build_model`` and the input ``torch.rand(batch, 1, 32, 32)`` drawn after it."""
    model = build_model(n_classes, seed)
    x = torch.rand(batch, *IMAGE, dtype=torch.float32)
    return model, x


def save_state_dict(model: nn.Module, out_dir, stem: str = "lenet5") -> tuple[Path, Path]:
    """Write ``<stem>.pt`` (torch.save) and ``<stem>.safetensors`` of the model's state_dict."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    pt = out_dir / f"{stem}.pt"
    st = out_dir / f"{stem}.safetensors"
    torch.save(state, pt)
    save_file({k: v.detach().contiguous() for k, v in state.items()}, str(st))
    os.chmod(st, pt.stat().st_mode & 0o777)  # save_file creates it 0600; match torch.save's file
    return pt, st


def load_model(weights) -> LeNet5:
    """LeNet5 from a state_dict in a ``.pt`` or ``.safetensors`` file (classes from classifier.4.weight)."""
    weights = Path(weights)
    if weights.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(weights))
    else:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    if "classifier.4.weight" not in state:
        raise SystemExit(f"{weights}: no 'classifier.4.weight' (keys: {sorted(state)})")
    n_classes = state["classifier.4.weight"].shape[0]
    model = LeNet5(n_classes)
    model.load_state_dict(state)
    return model.float().eval()


def save_npy(path, t) -> None:
    """numpy.save of a C-contiguous float32 array."""
    a = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else t
    np.save(path, np.ascontiguousarray(a, dtype=np.float32))


def jacobian_full(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """PyTorch's layout: [B, C, B, *image]."""
    return torch.autograd.functional.jacobian(model, x, vectorize=True)


def per_sample_from_full(full: torch.Tensor) -> torch.Tensor:
    """Diagonal blocks of the full Jacobian: [B, C, *image]."""
    b, c = full.shape[:2]
    return torch.einsum("bibj->bij", full.reshape(b, c, b, -1)).reshape(b, c, *full.shape[3:])


def jacobian_per_sample(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Per-sample layout [B, C, *image] without the B x B blocks: vmap(jacrev) over samples."""

    def f(sample):
        return model(sample.unsqueeze(0)).squeeze(0)

    return torch.func.vmap(torch.func.jacrev(f))(x)


def versions_text(command: str) -> str:
    import numpy
    import safetensors

    return (
        f"torch {torch.__version__}\n"
        f"numpy {numpy.__version__}\n"
        f"safetensors {safetensors.__version__}\n"
        f"python {platform.python_version()}\n"
        f"platform {platform.system()} {platform.machine()}\n"
        f"command {command}\n"
    )


def command_line() -> str:
    script = Path(sys.argv[0]).resolve()
    try:
        script = script.relative_to(Path.cwd())
    except ValueError:
        pass
    return shlex.join(["python", str(script), *sys.argv[1:]])


def write_case(out: Path, name: str, batch: int, n_classes: int, seed: int) -> float:
    case = out / name
    case.mkdir(parents=True, exist_ok=True)
    model, x = make_case(n_classes, seed, batch)
    save_state_dict(model, case, "lenet5")

    with torch.no_grad():
        logits = model(x)
    full = jacobian_full(model, x)
    per_sample = per_sample_from_full(full)

    # Self-checks: shapes, zero off-diagonal blocks, agreement with vmap(jacrev).
    assert full.shape == (batch, n_classes, batch, *IMAGE), full.shape
    assert per_sample.shape == (batch, n_classes, *IMAGE), per_sample.shape
    blocks = full.reshape(batch, n_classes, batch, -1)
    for i in range(batch):
        for j in range(batch):
            if i != j:
                nz = torch.count_nonzero(blocks[i, :, j]).item()
                assert nz == 0, f"{name}: block ({i},{j}) of the full Jacobian has {nz} non-zeros"
    vj = jacobian_per_sample(model, x)
    scale = per_sample.abs().max().item()
    err = (vj - per_sample).abs().max().item()
    assert err <= 1e-5 * scale, f"{name}: vmap(jacrev) differs from the full Jacobian by {err} (max |J| {scale})"

    save_npy(case / "input.npy", x)
    save_npy(case / "logits.npy", logits)
    save_npy(case / "jacobian_full.npy", full)
    save_npy(case / "jacobian_per_sample.npy", per_sample)

    # Read back what was written.
    for f, shape in [
        ("input.npy", (batch, *IMAGE)),
        ("logits.npy", (batch, n_classes)),
        ("jacobian_full.npy", (batch, n_classes, batch, *IMAGE)),
        ("jacobian_per_sample.npy", (batch, n_classes, *IMAGE)),
    ]:
        a = np.load(case / f)
        assert a.dtype == np.float32 and a.shape == shape and a.flags.c_contiguous, (f, a.dtype, a.shape)

    print(
        f"{name}: batch {batch}, classes {n_classes}, seed {seed}: "
        f"max |J| {scale:.6g}, max |logit| {logits.abs().max().item():.6g}, "
        f"off-diagonal blocks zero, vmap(jacrev) max diff {err:.3g}"
    )
    return scale


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures",
                   help="output directory (default: tests/fixtures)")
    args = p.parse_args(argv)

    torch.set_default_dtype(torch.float32)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (batch, n_classes, seed) in CASES.items():
        write_case(args.out, name, batch, n_classes, seed)
    (args.out / "VERSIONS.txt").write_text(versions_text(command_line()))

    total = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"wrote {args.out} ({total / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
