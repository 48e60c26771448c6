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

``LeNet5`` is also the canonical module of the LeNet-5 family the Rust tool
reads: ``LeNet5(n_classes, activation="tanh", pooling="avg", in_channels=1,
padding=0, conv3=False)``, where the defaults are the seed model above (same
keys, same initialisation order, so these fixtures do not change).
``family_from_config`` builds it from the dict the Rust tool writes as the
SafeTensors metadata entry ``"lenet5_config"`` (``CONFIG_KEY``) when it saves
weights in PyTorch's layout, and ``load_model`` uses that entry when a
``.safetensors`` file has one.

Other scripts import ``LeNet5``, ``family_from_config``, ``build_model``,
``make_case``, ``save_state_dict``, ``load_model`` and the Jacobian helpers
from here.

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


ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}
POOLINGS = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}
# SafeTensors metadata entry holding the architecture (JSON of a family_from_config dict).
CONFIG_KEY = "lenet5_config"
CONFIG_KEYS = ("num_classes", "activation", "pooling", "in_channels", "padding", "conv3")
SIDE = 32  # conv1's input side after its zero padding


class LeNet5(nn.Module):
    """The LeNet-5 family in one module; the defaults are the seed model (tanh, average pooling).

    activation   "tanh" | "relu" | "sigmoid": nn.Tanh / nn.ReLU / nn.Sigmoid after every
                 convolution and every hidden linear layer
    pooling      "avg" | "max": nn.AvgPool2d(kernel_size=2) / nn.MaxPool2d(kernel_size=2)
                 (stride 2) after the first two convolutions
    in_channels  conv1's input channels (1 for MNIST, 3 for CIFAR-10)
    padding      conv1's zero padding; the input side is 32 - 2 * padding (0: 32 x 32,
                 2: 28 x 28 as in d2l.ai)
    conv3        False: feature_extractor.0/.3 (convolutions), classifier.0/.2/.4
                 (Linear 400-120-84-n_classes); True: a third convolution
                 feature_extractor.6 (Conv2d(16, 120, 5) and the activation, 120 x 1 x 1
                 features), classifier.0/.2 (Linear 120-84-n_classes)

    forward: feature_extractor, torch.flatten(x, 1), classifier; returns the logits.
    """

    def __init__(self, n_classes, activation="tanh", pooling="avg", in_channels=1, padding=0, conv3=False):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation {activation!r} is not one of {sorted(ACTIVATIONS)}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling {pooling!r} is not one of {sorted(POOLINGS)}")
        act, pool = ACTIVATIONS[activation], POOLINGS[pooling]
        # Built in the seed's order (conv1, conv2, [conv3], linear layers): the default
        # initialisation draws the same numbers, and the keys are the seed's.
        features = [
            nn.Conv2d(in_channels, 6, kernel_size=5, stride=1, padding=padding), act(), pool(kernel_size=2),
            nn.Conv2d(6, 16, kernel_size=5, stride=1), act(), pool(kernel_size=2)]
        if conv3:
            features += [nn.Conv2d(16, 120, kernel_size=5, stride=1), act()]
            head = [nn.Linear(120, 84), act(), nn.Linear(84, n_classes)]
        else:
            head = [nn.Linear(400, 120), act(), nn.Linear(120, 84), act(), nn.Linear(84, n_classes)]
        self.feature_extractor = nn.Sequential(*features)
        self.classifier = nn.Sequential(*head)

    def forward(self, x):
        x = self.feature_extractor(x); x = torch.flatten(x, 1); return self.classifier(x)


def family_from_config(cfg: dict) -> LeNet5:
    """``LeNet5`` from a dict with exactly the keys of ``CONFIG_KEYS``.

    {"num_classes": int >= 1, "activation": "tanh" | "relu" | "sigmoid", "pooling": "avg" | "max",
     "in_channels": int >= 1, "padding": int with 0 <= padding <= 15, "conv3": bool}

    This dict's JSON is the SafeTensors metadata entry "lenet5_config" of the weights
    the Rust tool saves in PyTorch's layout. Raises ValueError on anything else.
    """
    if not isinstance(cfg, dict) or set(cfg) != set(CONFIG_KEYS):
        keys = sorted(cfg) if isinstance(cfg, dict) else type(cfg).__name__
        raise ValueError(f"LeNet-5 config must have exactly the keys {list(CONFIG_KEYS)}, got {keys}")

    def count(name, low, high=None):
        v = cfg[name]
        if type(v) is not int or v < low or (high is not None and v > high):
            bound = f"{low} <= {name} <= {high}" if high is not None else f"{name} >= {low}"
            raise ValueError(f"LeNet-5 config: {name} must be an int with {bound}, got {v!r}")
        return v

    n_classes, in_channels = count("num_classes", 1), count("in_channels", 1)
    padding = count("padding", 0, (SIDE - 1) // 2)
    for name, allowed in [("activation", ACTIVATIONS), ("pooling", POOLINGS)]:
        if cfg[name] not in allowed:
            raise ValueError(f"LeNet-5 config: {name} must be one of {sorted(allowed)}, got {cfg[name]!r}")
    if type(cfg["conv3"]) is not bool:
        raise ValueError(f"LeNet-5 config: conv3 must be true or false, got {cfg['conv3']!r}")
    return LeNet5(n_classes, activation=cfg["activation"], pooling=cfg["pooling"], in_channels=in_channels,
                  padding=padding, conv3=cfg["conv3"])


def config_of(model: LeNet5) -> dict:
    """The ``family_from_config`` dict of a ``LeNet5`` (read from its modules)."""
    conv1, fe = model.feature_extractor[0], model.feature_extractor
    activation = next(k for k, cls in ACTIVATIONS.items() if type(fe[1]) is cls)
    pooling = next(k for k, cls in POOLINGS.items() if type(fe[2]) is cls)
    return {"num_classes": model.classifier[-1].out_features, "activation": activation, "pooling": pooling,
            "in_channels": conv1.in_channels, "padding": conv1.padding[0], "conv3": len(fe) == 8}


def input_shape(cfg: dict) -> tuple[int, int, int]:
    """One sample's shape for a config: (in_channels, 32 - 2 * padding, 32 - 2 * padding)."""
    side = SIDE - 2 * cfg["padding"]
    return (cfg["in_channels"], side, side)


# The architecture of LeNet5(n_classes) with the defaults (every key but num_classes).
DEFAULT_CONFIG = {"activation": "tanh", "pooling": "avg", "in_channels": 1, "padding": 0, "conv3": False}


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


def saved_config(weights) -> dict | None:
    """The "lenet5_config" metadata entry of a ``.safetensors`` file, parsed; None when absent."""
    import json

    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as f:
        meta = f.metadata() or {}
    if CONFIG_KEY not in meta:
        return None
    try:
        return json.loads(meta[CONFIG_KEY])
    except json.JSONDecodeError as e:
        raise SystemExit(f"{weights}: metadata {CONFIG_KEY!r} is not JSON ({e}): {meta[CONFIG_KEY]!r}")


def load_model(weights) -> LeNet5:
    """LeNet5 from a state_dict in a ``.pt`` or ``.safetensors`` file, loaded with strict=True.

    A ``.safetensors`` file with the metadata entry "lenet5_config" gives the
    architecture (``family_from_config``); otherwise it is the seed's tanh/avg
    LeNet5 with the class count of classifier.4.weight.
    """
    weights = Path(weights)
    cfg = None
    if weights.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(weights))
        cfg = saved_config(weights)
    else:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    if cfg is not None:
        try:
            model = family_from_config(cfg)
        except ValueError as e:
            raise SystemExit(f"{weights}: {e}")
    else:
        if "classifier.4.weight" not in state:
            raise SystemExit(f"{weights}: no 'classifier.4.weight' (keys: {sorted(state)})")
        model = LeNet5(state["classifier.4.weight"].shape[0])
    model.load_state_dict(state, strict=True)
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
