#!/usr/bin/env python3
"""Reference fixtures from PyTorch for a Jacobian penalty on LeNet-5 (tests/fixtures/penalty/).

Double backpropagation: the input Jacobian built with ``create_graph=True``, a
penalty on its Frobenius norm, and gradients through it. The models are the
canonical ``make_torch_fixtures.LeNet5`` (``family_from_config``), PyTorch's
default initialisation after ``torch.manual_seed(seed)``, float32 on the CPU,
eval mode. Right after building the model the same generator draws the input
``torch.rand``, then (penalty cases) the labels ``torch.randint(0, 10, (4,))``
and the contraction weights ``V = torch.randn(4, 10, 1024)``.

Penalty cases (batch N = 4, 10 classes, 1x32x32, padding 0, no conv3, lam = 0.05):

    tanh_avg   tanh, average pooling (the default architecture), seed 201
    relu_max   relu, max pooling, seed 202

With z = model(x) and J[b, k, d] = dz[b, k] / dx[b, d] (d runs over the sample's
1 x 32 x 32 values in C order; one ``torch.autograd.grad(z[:, k].sum(), x,
create_graph=True)`` per class k):

    P      = lam / 2 * (J ** 2).sum() / N      (lam/2 times the mean of ||J_b||_F^2)
    CE     = F.cross_entropy(z, labels)        (mean over the batch)
    total  = CE + P
    s      = (J * V).sum()

Each penalty case directory gets:

    lenet5.pt                     torch.save(model.state_dict())
    input.npy                     float32 [4, 1, 32, 32]
    labels.npy                    int64 [4]
    logits.npy                    float32 [4, 10], z
    contraction_v.npy             float32 [4, 10, 1, 32, 32], V
    grad_input_contraction.npy    float32 [4, 1, 32, 32], ds/dx
    grad_penalty/<key>.npy        float32, dP/d(parameter <key>) in the parameter's shape
    grad_total/<key>.npy          float32, dtotal/d(parameter <key>)
    case.json                     description, config (family_from_config dict), seed, lam, the
                                  values ce, penalty, total, jacobian_frobenius (||J_b||_F per
                                  sample), shapes, files

Hessian case hessian_tanh (tanh, average pooling, 10 classes, seed 203, class K = 3):

    lenet5.pt                     torch.save(model.state_dict())
    input.npy                     float32 [1, 1, 32, 32]
    logit.npy                     float32 [1], z[0, K]
    gradient.npy                  float32 [1, 1, 32, 32], dz[0, K]/dx
    hessian.npy                   float32 [1, 1, 32, 32, 1, 32, 32],
                                  torch.autograd.functional.hessian(lambda x: model(x)[0, K], x)
                                  ([1, 1, 32, 32, 1, 1, 32, 32]) reshaped: [sample, *image, *image]
    case.json                     description, config, seed, class, logit, symmetry, shapes, files

The output directory gets VERSIONS.txt (library versions and the command).

Checks (printed; a failure stops the script), all on float64 copies of the model
and input: along one random unit direction u in weight space, the central
difference of P agrees with dP/du (relative error < 1e-3), and along one random
unit input direction so does s's; for relu_max the activation pattern (every
ReLU input's sign, every max-pool argmax) is asserted unchanged over the
difference step, and the distances to the nearest kink are printed. The saved
float32 gradients are compared with the float64 ones. The Hessian's symmetry is
printed, and H d is compared with central differences of the gradient along 3
random unit directions d.

Usage:
    python scripts/make_penalty_fixtures.py [--out tests/fixtures/penalty]
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_family_fixtures import case_json  # noqa: E402
from make_torch_fixtures import (  # noqa: E402
    DEFAULT_CONFIG, REPO, command_line, family_from_config, input_shape, save_npy, versions_text)

BATCH = 4
LAM = 0.05
TANH_AVG = {"num_classes": 10, **DEFAULT_CONFIG}
RELU_MAX = {**TANH_AVG, "activation": "relu", "pooling": "max"}
# name -> (config, seed)
PENALTY_CASES = {"tanh_avg": (TANH_AVG, 201), "relu_max": (RELU_MAX, 202)}
HESSIAN_CASE, HESSIAN_SEED, HESSIAN_CLASS = "hessian_tanh", 203, 3

# Central-difference steps along unit directions, in float64. Small enough that no ReLU
# input or max-pool comparison of relu_max changes sign over the step (asserted), large
# enough that rounding (~1e-16 / step) stays far below the 1e-3 tolerance.
WEIGHT_STEP = 1e-6
INPUT_STEP = 1e-5
TOLERANCE = 1e-3
N_DIRECTIONS = 3  # for the Hessian


# ---- The quantities. ----

def jacobian(model: nn.Module, x: torch.Tensor, create_graph: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits z [N, C] and the per-sample Jacobian J [N, C, D] of z w.r.t. x (x requires grad).

    Row k of every sample from one backward of z[:, k].sum(): the samples do not
    interact (eval mode), so sample b's gradient is its own row.
    """
    z = model(x)
    rows = [torch.autograd.grad(z[:, k].sum(), x, retain_graph=True, create_graph=create_graph)[0].flatten(1)
            for k in range(z.shape[1])]
    return z, torch.stack(rows, dim=1)


def penalty(j: torch.Tensor) -> torch.Tensor:
    """lam / 2 times the mean over samples of ||J_b||_F^2."""
    return LAM / 2 * (j ** 2).sum() / j.shape[0]


def parameter_grads(out: torch.Tensor, model: nn.Module) -> dict[str, torch.Tensor]:
    """d out / d parameter for every parameter, in state_dict order.

    Zeros where ``out`` does not reach the parameter: classifier.4.bias never enters
    J, so autograd.grad would otherwise refuse it (allow_unused) or give None.
    """
    names, params = zip(*model.named_parameters())
    grads = torch.autograd.grad(out, params, retain_graph=True, allow_unused=True, materialize_grads=True)
    return dict(zip(names, grads))


def unit(t: torch.Tensor) -> torch.Tensor:
    return t / t.norm()


def file_list(d: Path) -> list[str]:
    """The case's files, case.json included (written last), sorted."""
    return sorted({str(f.relative_to(d)) for f in d.rglob("*") if f.is_file()} | {"case.json"})


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b| (0 when both are zero)."""
    scale = b.abs().max().item()
    diff = (a - b).abs().max().item()
    return diff / scale if scale else diff


# ---- Kinks of relu_max: where J jumps. ----

def kink_inputs(model: nn.Module, x: torch.Tensor) -> list[tuple[nn.Module, torch.Tensor]]:
    """The inputs of the model's ReLU and MaxPool2d layers at x, in forward order."""
    seen = []
    hooks = [m.register_forward_hook(lambda mod, args, out: seen.append((mod, args[0])))
             for m in model.modules() if isinstance(m, (nn.ReLU, nn.MaxPool2d))]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


def pattern(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The linear piece x and the weights lie on: each ReLU input's sign, each max-pool's argmax."""
    return [a > 0 if isinstance(m, nn.ReLU) else F.max_pool2d(a, 2, return_indices=True)[1]
            for m, a in kink_inputs(model, x)]


def same_pattern(p: list[torch.Tensor], q: list[torch.Tensor]) -> bool:
    return all(torch.equal(a, b) for a, b in zip(p, q, strict=True))


def kink_distances(model: nn.Module, x: torch.Tensor) -> dict:
    """How far the model is from a kink at x.

    relu: the smallest |ReLU input|. pool_gap: the smallest gap between the two largest
    entries of a 2x2 window whose largest entry is positive. Windows of a max-pool that
    follows a ReLU tie whenever all four inputs were negative (all four are 0); there the
    derivative is 0 whichever entry a framework picks, so only ties between positive
    entries (tied_positive) would make the reference ambiguous.
    """
    relu, gaps, tied_zero, tied_positive = [], [], 0, 0
    for m, a in kink_inputs(model, x):
        if isinstance(m, nn.ReLU):
            relu.append(a.abs().min().item())
            continue
        windows = a.unfold(2, 2, 2).unfold(3, 2, 2).flatten(-2).sort(dim=-1, descending=True).values
        top, gap = windows[..., 0], windows[..., 0] - windows[..., 1]
        tied_zero += int(((gap == 0) & (top == 0)).sum())
        tied_positive += int(((gap == 0) & (top > 0)).sum())
        gaps.append(gap[top > 0].min().item())
    return {"relu": min(relu), "pool_gap": min(gaps), "tied_zero": tied_zero, "tied_positive": tied_positive}


# ---- Penalty cases. ----

def shifted(model: nn.Module, direction: dict[str, torch.Tensor], t: float) -> nn.Module:
    """A copy of the model with every parameter moved by t * direction."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in out.named_parameters():
            p += t * direction[name]
    return out


def check_penalty_case(name: str, model: nn.Module, x: torch.Tensor, labels: torch.Tensor, v: torch.Tensor,
                       saved: dict[str, dict[str, torch.Tensor]], grad_x: torch.Tensor, seed: int) -> None:
    """Central differences in float64 against the analytic derivatives; float32 against float64."""
    piecewise = any(isinstance(m, (nn.ReLU, nn.MaxPool2d)) for m in model.modules())
    m64 = copy.deepcopy(model).double()
    x64 = x.double().requires_grad_()
    gen = torch.Generator().manual_seed(seed)  # the checks' own stream: the fixtures do not depend on it

    z, j = jacobian(m64, x64, create_graph=True)
    p = penalty(j)
    grads64 = {"penalty": parameter_grads(p, m64),
               "total": parameter_grads(F.cross_entropy(z, labels) + p, m64)}
    grad_x64 = torch.autograd.grad((j * v.double()).sum(), x64, materialize_grads=True)[0]

    if piecewise:
        d32, d64 = kink_distances(model, x), kink_distances(m64, x64)
        assert same_pattern(pattern(model, x), pattern(m64, x64)), f"{name}: float32 and float64 on different pieces"
        assert d32["tied_positive"] == 0, f"{name}: max-pool ties between positive entries: {d32}"
        print(f"  kinks: min |ReLU input| {d32['relu']:.3g} (float64 {d64['relu']:.3g}), "
              f"min max-pool gap {d32['pool_gap']:.3g}; tied windows: {d32['tied_zero']} all zero after ReLU "
              f"(derivative 0 either way), {d32['tied_positive']} between positive entries; "
              f"float32 and float64 on the same piece")

    # dP along a random unit direction in weight space.
    u = {n: torch.randn(q.shape, generator=gen, dtype=torch.float64) for n, q in m64.named_parameters()}
    norm = torch.sqrt(sum((w ** 2).sum() for w in u.values()))
    u = {n: w / norm for n, w in u.items()}
    analytic = sum((grads64["penalty"][n] * u[n]).sum() for n in u).item()
    from_saved = sum((saved["penalty"][n].double() * u[n]).sum() for n in u).item()
    plus, minus = shifted(m64, u, WEIGHT_STEP), shifted(m64, u, -WEIGHT_STEP)
    if piecewise:
        here = pattern(m64, x64)
        assert same_pattern(pattern(plus, x64), here) and same_pattern(pattern(minus, x64), here), \
            f"{name}: the weight step crosses a kink"
    fd = ((penalty(jacobian(plus, x64, False)[1]) - penalty(jacobian(minus, x64, False)[1])) / (2 * WEIGHT_STEP)).item()
    err = abs(fd - analytic) / abs(analytic)
    assert err < TOLERANCE, f"{name}: dP/du {analytic} vs central difference {fd}"
    print(f"  dP/du (random unit u, weights): float64 {analytic:.9g}, central difference (step {WEIGHT_STEP:g}) "
          f"{fd:.9g}, rel. error {err:.2g}; float32 gradients {from_saved:.9g} "
          f"(rel. {abs(from_saved - analytic) / abs(analytic):.2g})"
          + (" [same piece over the step]" if piecewise else ""))

    for what in ("penalty", "total"):
        worst = max(rel(saved[what][n].double(), grads64[what][n]) for n in u)
        zero = [n for n in u if not grads64[what][n].any()]
        assert all(not saved[what][n].any() for n in zero), f"{name}: grad_{what} not zero where float64's is"
        print(f"  grad_{what}: float32 vs float64, max over tensors of max|diff|/max|g| {worst:.2g}; "
              f"identically zero: {', '.join(zero) or 'none'}")

    # ds along a random unit input direction.
    e = unit(torch.randn(x64.shape, generator=gen, dtype=torch.float64))
    analytic = (grad_x64 * e).sum().item()
    xp, xm = (x64 + INPUT_STEP * e).detach().requires_grad_(), (x64 - INPUT_STEP * e).detach().requires_grad_()
    if piecewise:
        assert same_pattern(pattern(m64, xp), pattern(m64, xm)), f"{name}: the input step crosses a kink"
    s = [(jacobian(m64, xs, False)[1] * v.double()).sum().item() for xs in (xp, xm)]
    fd = (s[0] - s[1]) / (2 * INPUT_STEP)
    if analytic:
        err = abs(fd - analytic) / abs(analytic)
        assert err < TOLERANCE, f"{name}: ds/de {analytic} vs central difference {fd}"
        print(f"  ds/de (random unit e, input): float64 {analytic:.9g}, central difference {fd:.9g}, "
              f"rel. error {err:.2g}; grad_input_contraction float32 vs float64 {rel(grad_x.double(), grad_x64):.2g}")
    else:
        # Piecewise linear in x: J is constant on each piece, so s has zero derivative there.
        assert fd == 0 and not grad_x.any(), f"{name}: ds/dx {fd}, max |saved| {grad_x.abs().max()}"
        print(f"  ds/dx: zero (float32, float64 and the central difference {fd:g}: J is constant on the piece)")


def write_penalty_case(out: Path, name: str, cfg: dict, seed: int) -> None:
    d = out / name
    (d / "grad_penalty").mkdir(parents=True, exist_ok=True)
    (d / "grad_total").mkdir(parents=True, exist_ok=True)

    torch.manual_seed(seed)
    model = family_from_config(cfg).float().eval()
    x = torch.rand(BATCH, *input_shape(cfg), dtype=torch.float32)
    labels = torch.randint(0, cfg["num_classes"], (BATCH,))
    v = torch.randn(BATCH, cfg["num_classes"], x[0].numel(), dtype=torch.float32)

    xg = x.clone().requires_grad_()
    z, j = jacobian(model, xg, create_graph=True)
    p = penalty(j)
    ce = F.cross_entropy(z, labels)
    total = ce + p
    saved = {"penalty": parameter_grads(p, model), "total": parameter_grads(total, model)}
    grad_x = torch.autograd.grad((j * v).sum(), xg, materialize_grads=True)[0]
    frobenius = j.detach().flatten(1).norm(dim=1)

    torch.save(model.state_dict(), d / "lenet5.pt")
    save_npy(d / "input.npy", x)
    np.save(d / "labels.npy", labels.numpy().astype(np.int64))
    save_npy(d / "logits.npy", z)
    save_npy(d / "contraction_v.npy", v.reshape(BATCH, cfg["num_classes"], *x.shape[1:]))
    save_npy(d / "grad_input_contraction.npy", grad_x)
    for what, grads in saved.items():
        for key, g in grads.items():
            save_npy(d / f"grad_{what}" / f"{key}.npy", g)

    shapes = {"input": list(x.shape), "labels": [BATCH], "logits": list(z.shape),
              "jacobian": [BATCH, cfg["num_classes"], x[0].numel()],
              "contraction_v": [BATCH, cfg["num_classes"], *x.shape[1:]],
              "grad_input_contraction": list(x.shape),
              **{f"grad/{k}": list(g.shape) for k, g in saved["penalty"].items()}}
    data = {
        "description": f"Jacobian penalty on LeNet5 ({cfg['activation']}, {cfg['pooling']} pooling): "
                       "P = lam / 2 * (J ** 2).sum() / N, CE = F.cross_entropy(logits, labels), total = CE + P, "
                       "s = (J * V).sum(); J [N, 10, 1024] from torch.autograd.grad(logits[:, k].sum(), x, "
                       "create_graph=True) for each class k",
        "config": cfg,
        "seed": seed,
        "lam": LAM,
        "ce": ce.item(),
        "penalty": p.item(),
        "total": total.item(),
        "jacobian_frobenius": frobenius.tolist(),
        "keys": list(saved["penalty"]),
        "shapes": shapes,
        "files": file_list(d),
    }
    (d / "case.json").write_text(case_json(data))

    # Read back what was written.
    for f, shape in [("input.npy", x.shape), ("logits.npy", z.shape), ("contraction_v.npy", shapes["contraction_v"]),
                     ("grad_input_contraction.npy", x.shape)] + [
                    (f"grad_{w}/{k}.npy", g.shape) for w in saved for k, g in saved[w].items()]:
        a = np.load(d / f)
        assert a.dtype == np.float32 and a.shape == tuple(shape) and a.flags.c_contiguous, (f, a.dtype, a.shape)
    assert np.load(d / "labels.npy").dtype == np.int64

    print(f"{name}: seed {seed}, labels {labels.tolist()}: CE {ce.item():.9g}, P {p.item():.9g}, "
          f"total {total.item():.9g}, ||J_b||_F {[round(f, 6) for f in frobenius.tolist()]}, "
          f"max |ds/dx| {grad_x.abs().max().item():.3g}")
    check_penalty_case(name, model, x, labels, v, saved, grad_x, seed)


# ---- Hessian case. ----

def write_hessian_case(out: Path) -> None:
    d = out / HESSIAN_CASE
    d.mkdir(parents=True, exist_ok=True)
    cfg, k = TANH_AVG, HESSIAN_CLASS

    torch.manual_seed(HESSIAN_SEED)
    model = family_from_config(cfg).float().eval()
    x = torch.rand(1, *input_shape(cfg), dtype=torch.float32)

    def logit(m: nn.Module):
        return lambda t: m(t)[0, k]

    # hessian() gives [*x.shape, *x.shape]; saved per sample as [1, *image, *image], the layout of
    # jacobian_per_sample.npy (the batch index once).
    full = torch.autograd.functional.hessian(logit(model), x)
    assert full.shape == (*x.shape, *x.shape), full.shape
    hessian = full.reshape(*x.shape, *x.shape[1:])
    xg = x.clone().requires_grad_()
    value = logit(model)(xg)
    gradient = torch.autograd.grad(value, xg)[0]

    square = hessian.reshape(x.numel(), x.numel())
    symmetry = ((square - square.T).abs().max() / square.abs().max()).item()

    torch.save(model.state_dict(), d / "lenet5.pt")
    save_npy(d / "input.npy", x)
    save_npy(d / "logit.npy", value.detach().reshape(1))
    save_npy(d / "gradient.npy", gradient)
    save_npy(d / "hessian.npy", hessian)
    for f, shape in [("input.npy", x.shape), ("logit.npy", (1,)), ("gradient.npy", x.shape),
                     ("hessian.npy", hessian.shape)]:
        a = np.load(d / f)
        assert a.dtype == np.float32 and a.shape == tuple(shape) and a.flags.c_contiguous, (f, a.dtype, a.shape)

    data = {
        "description": "Input Hessian of one logit of LeNet5 (tanh, average pooling): "
                       "torch.autograd.functional.hessian(lambda x: model(x)[0, K], x), K = class",
        "config": cfg,
        "seed": HESSIAN_SEED,
        "class": k,
        "logit": value.item(),
        "symmetry": symmetry,
        "shapes": {"input": list(x.shape), "logit": [1], "gradient": list(x.shape), "hessian": list(hessian.shape)},
        "files": file_list(d),
    }
    (d / "case.json").write_text(case_json(data))
    print(f"{HESSIAN_CASE}: seed {HESSIAN_SEED}, class {k}: logit {value.item():.9g}, max |H| "
          f"{square.abs().max().item():.6g}, symmetry max |H - H^T| / max |H| {symmetry:.3g}")

    # H d against central differences of the float64 gradient, along random unit directions.
    m64, x64 = copy.deepcopy(model).double(), x.double()
    gen = torch.Generator().manual_seed(HESSIAN_SEED)

    def grad64(t: torch.Tensor) -> torch.Tensor:
        t = t.detach().requires_grad_()
        return torch.autograd.grad(logit(m64)(t), t)[0]

    for i in range(N_DIRECTIONS):
        e = unit(torch.randn(x64.shape, generator=gen, dtype=torch.float64))
        hd64 = torch.autograd.functional.hvp(logit(m64), x64, e)[1]
        fd = (grad64(x64 + INPUT_STEP * e) - grad64(x64 - INPUT_STEP * e)) / (2 * INPUT_STEP)
        hd32 = (square.double() @ e.flatten()).reshape(x.shape)
        err, err32 = rel(fd, hd64), rel(hd32, hd64)
        assert err < TOLERANCE and err32 < TOLERANCE, f"{HESSIAN_CASE}: direction {i}: {err}, {err32}"
        print(f"  direction {i}: H d (float64 hvp) vs central difference of the gradient (step {INPUT_STEP:g}) "
              f"max|diff|/max|H d| {err:.2g}; hessian.npy d vs float64 {err32:.2g}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "penalty",
                   help="output directory (default: tests/fixtures/penalty)")
    args = p.parse_args(argv)

    torch.set_num_threads(2)
    torch.set_default_dtype(torch.float32)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    for name, (cfg, seed) in PENALTY_CASES.items():
        write_penalty_case(out, name, cfg, seed)
    write_hessian_case(out)
    (out / "VERSIONS.txt").write_text(versions_text(command_line()))

    total = 0
    for f in sorted(out.rglob("*")):
        if f.is_file():
            total += f.stat().st_size
            print(f"  {str(f.relative_to(out)):52s} {f.stat().st_size:>8d} B")
    print(f"wrote {out} ({total / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
