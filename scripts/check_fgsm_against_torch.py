#!/usr/bin/env python3
"""Check the accuracies of `lenet-jacobian robustness` under FGSM and PGD against PyTorch.

For each ``--weights`` file (a ``.safetensors`` written by the tool with
``--save-weights``; its metadata entry "lenet5_config" gives the architecture,
see ``make_torch_fixtures.load_model``) the script recomputes in PyTorch
(float32, CPU, eval mode) on the held-out MNIST digits of ``--data``
(t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz], plain or gzip) what
the tool measures, exactly as the tool does it:

    input  each 28 x 28 digit as float32 pixel / 255, centred in a zero image of
           the model's input side (32 x 32 for padding 0: 2 zero pixels on every
           side), [N, 1, side, side] (lenet5::mnist::DigitFrame::input)
    g      the input gradient of each sample's cross-entropy of the logits with
           its label (reduction "sum": each sample's gradient, unscaled)
    clean  argmax of the logits == label
    FGSM   x' = clamp(x + eps * sign(g(x)), 0, 1) at eps 0.05, 0.1, 0.2, 0.3
    PGD    40 steps of 0.01 from the clean image (no random start):
           x' = clamp(x' + 0.01 * sign(g(x')), max(x - eps, 0), min(x + eps, 1))
           at eps 0.1 and 0.2

(jacobian::attacks::{fgsm, pgd} and src/robustness.rs; torch.sign(0) = 0 as
Burn's sign). It prints a table per model: the attack, eps, the accuracy in
PyTorch, the tool's (with --ours) and their difference in points.

With ``--ours FILE.json`` (the tool's ``robustness --json`` output, run with the
same weights on the same digits and without --normalize) each model is matched
to the entry whose "weights" has the same file name (basename), and every
clean, FGSM and PGD accuracy is compared. FGSM's sign(g) flips where a gradient
component is near zero and the tool and PyTorch round differently, so a few
samples may differ; --tolerance (default 1.0 point = 10 of 1000 digits) absorbs
that, and the script also reports how many samples' sign(g) differs between
float32 and float64 in PyTorch (how fragile the signs are). With
``--adversarial FILE.npy`` (the FGSM images the tool writes with
``--adversarial``, one --weights only) it counts the samples whose FGSM image
differs from PyTorch's at ``--adversarial-eps``; both are reports, not checks.

Exit status: 0 when every accuracy is within --tolerance (or without --ours),
1 when one is not, 2 when an input cannot be read or compared (weights, digits,
JSON, a model or budget missing from it, another sample count or PGD).

Usage:
    python scripts/check_fgsm_against_torch.py --weights A.safetensors [--weights B.safetensors ...]
        [--data data/mnist] [--ours robustness.json] [--tolerance 1.0]
        [--adversarial fgsm.npy [--adversarial-eps 0.1]] [--threads 2]

Example:
    lenet-jacobian robustness --weights tanh.safetensors --input data/mnist/t10k-images-idx3-ubyte.gz \\
        --json > ours.json
    python scripts/check_fgsm_against_torch.py --weights tanh.safetensors --ours ours.json
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import struct
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_torch_fixtures import CONFIG_KEY, config_of, input_shape, load_model, saved_config  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

# The tool's constants (src/robustness.rs), as float32 like there.
FGSM_EPS = (0.05, 0.1, 0.2, 0.3)
PGD_EPS = (0.1, 0.2)
PGD_STEP = 0.01
PGD_STEPS = 40
ADVERSARIAL_EPS = 0.1

MNIST_SIZE = 28
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
GZIP_MAGIC = b"\x1f\x8b"
# The JSON holds the tool's f32 budgets widened to f64 (0.05 -> 0.05000000074505806).
EPS_MATCH = 1e-6


class Unreadable(Exception):
    """An input that cannot be read or compared: exit status 2."""


def f32(value: float) -> torch.Tensor:
    """A float32 scalar: the tool's budgets are f32, so round them the same way."""
    return torch.tensor(value, dtype=torch.float32)


# --- the digits -------------------------------------------------------------------------


def find_idx(data: Path, name: str) -> Path:
    """``name`` or ``name.gz`` in ``data``, the plain file first (as Mnist::load)."""
    for path in (data / name, data / f"{name}.gz"):
        if path.is_file():
            return path
    raise Unreadable(f"{data}: no {name} nor {name}.gz")


def read_idx(path: Path, magic: int) -> np.ndarray:
    """An IDX file of unsigned bytes, plain or gzip (told apart by its first bytes, not its name)."""
    try:
        data = path.read_bytes()
        if data[:2] == GZIP_MAGIC:
            data = gzip.decompress(data)
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise Unreadable(f"{path}: {e}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise Unreadable(f"{path}: {len(data)} bytes, too short for an IDX header of {header}")
    found, *dims = struct.unpack(f">I{ndim}I", data[:header])
    if found != magic:
        raise Unreadable(f"{path}: magic number 0x{found:08x}, expected 0x{magic:08x}")
    body = data[header:]
    if len(body) != int(np.prod(dims)) or 0 in dims:
        raise Unreadable(f"{path}: {len(body)} data bytes for dimensions {dims}")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def read_digits(data: Path) -> tuple[np.ndarray, np.ndarray]:
    """The test split: images [N, 28, 28] uint8 and labels [N] int64."""
    images = read_idx(find_idx(data, "t10k-images-idx3-ubyte"), IMAGES_MAGIC)
    labels = read_idx(find_idx(data, "t10k-labels-idx1-ubyte"), LABELS_MAGIC)
    if images.shape[1:] != (MNIST_SIZE, MNIST_SIZE):
        raise Unreadable(f"{data}: images of {images.shape[1]} x {images.shape[2]}, MNIST digits are 28 x 28")
    if len(images) != len(labels):
        raise Unreadable(f"{data}: {len(images)} images but {len(labels)} labels")
    if labels.max() > 9:
        raise Unreadable(f"{data}: label {labels.max()}, expected digits 0 to 9")
    return images, labels.astype(np.int64)


def frame(images: np.ndarray, side: int) -> torch.Tensor:
    """DigitFrame::input: float32 pixel / 255 centred in side x side zeros, [N, 1, side, side]."""
    border = (side - MNIST_SIZE) // 2
    x = np.zeros((len(images), 1, side, side), dtype=np.float32)
    # A float32 division, as the tool's f32::from(pixel) / 255.0 (not a float64 one rounded after).
    x[:, 0, border:border + MNIST_SIZE, border:border + MNIST_SIZE] = images.astype(np.float32) / np.float32(255)
    return torch.from_numpy(x)


# --- the attacks ------------------------------------------------------------------------


def gradient(model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Input gradient of each sample's cross-entropy; "sum" keeps each sample's own gradient
    (the tool contracts each sample's Jacobian with softmax - one_hot, unscaled)."""
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), labels, reduction="sum")
    (g,) = torch.autograd.grad(loss, x)
    return g


def correct(model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor) -> int:
    """Samples whose largest logit is their label (argmax takes the first of equal logits)."""
    with torch.no_grad():
        return int((model(x).argmax(1) == labels).sum())


def fgsm(x: torch.Tensor, g: torch.Tensor, eps: float) -> torch.Tensor:
    """jacobian::attacks::fgsm: (x + sign(g) * eps).clamp(0, 1), in float32."""
    return (x + g.sign() * f32(eps)).clamp(0.0, 1.0)


def pgd(model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, eps: float) -> torch.Tensor:
    """jacobian::attacks::pgd: PGD_STEPS signed steps from x, each projected onto the eps ball
    clipped to [0, 1] (the bounds clipped once, as the tool does)."""
    low = (x - f32(eps)).clamp(min=0.0)
    high = (x + f32(eps)).clamp(max=1.0)
    adversarial = x
    for _ in range(PGD_STEPS):
        moved = adversarial + gradient(model, adversarial, labels).sign() * f32(PGD_STEP)
        adversarial = torch.minimum(torch.maximum(moved, low), high)  # max_pair(low).min_pair(high)
    return adversarial.detach()


def measure(model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor) -> dict:
    """Correct counts: {"clean": n, "fgsm": {eps: n}, "pgd": {eps: n}}, and the FGSM gradient."""
    g = gradient(model, x, labels)
    return {
        "clean": correct(model, x, labels),
        "fgsm": {eps: correct(model, fgsm(x, g, eps), labels) for eps in FGSM_EPS},
        "pgd": {eps: correct(model, pgd(model, x, labels, eps), labels) for eps in PGD_EPS},
        "gradient": g,
    }


def samples_differing(a: torch.Tensor, b: torch.Tensor) -> tuple[int, int]:
    """(samples with at least one differing element, differing elements)."""
    differ = (a != b).reshape(len(a), -1)
    return int(differ.any(1).sum()), int(differ.sum())


# --- the tool's JSON --------------------------------------------------------------------


def read_ours(path: Path, samples: int) -> dict:
    """The tool's `robustness --json` output, checked to be of these digits and this PGD."""
    try:
        ours = json.loads(path.read_text())
        models, n, attack = ours["models"], ours["samples"], ours["pgd"]
        if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
            raise TypeError("'models' is not a list of objects")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise Unreadable(f"{path}: not the JSON of `lenet-jacobian robustness --json` ({type(e).__name__}: {e})")
    if n != samples:
        raise Unreadable(f"{path}: {n} samples ({ours.get('input')}), PyTorch measured {samples} digits")
    # Another PGD (a future --pgd-steps, say) would not be this script's.
    if (attack.get("steps"), attack.get("random_start")) != (PGD_STEPS, False) or \
            abs(attack.get("step", -1) - PGD_STEP) > EPS_MATCH:
        raise Unreadable(f"{path}: PGD {attack}, this script runs {PGD_STEPS} steps of {PGD_STEP} without random start")
    return ours


def ours_for(ours: dict, path: Path, weights: Path) -> dict:
    """The model entry whose weights file has the name of ``weights``."""
    found = [m for m in ours["models"] if Path(str(m.get("weights", ""))).name == weights.name]
    if len(found) != 1:
        names = [Path(str(m.get("weights", ""))).name for m in ours["models"]]
        what = "no model" if not found else f"{len(found)} models"
        raise Unreadable(f"{path}: {what} with weights named {weights.name!r} (models: {names})")
    return found[0]


def ours_correct(entry: dict, path: Path) -> dict:
    """{"clean": n, "fgsm": {eps: n}, "pgd": {eps: n}} of a model entry, at this script's budgets."""

    def series(key: str, budgets) -> dict:
        points = entry.get(key, [])
        out = {}
        for eps in budgets:
            match = [p for p in points if abs(p.get("eps", -1) - eps) <= EPS_MATCH]
            if len(match) != 1:
                raise Unreadable(f"{path}: {entry.get('weights')}: no {key} accuracy at eps {eps}")
            out[eps] = match[0]["correct"]
        return out

    try:
        return {"clean": entry["clean"]["correct"], "fgsm": series("fgsm", FGSM_EPS), "pgd": series("pgd", PGD_EPS)}
    except (KeyError, TypeError) as e:
        raise Unreadable(f"{path}: {entry.get('weights')}: {type(e).__name__}: {e}")


# --- the report -------------------------------------------------------------------------


def rows(torch_counts: dict, our_counts: dict | None):
    """(attack, eps, torch count, our count or None) for clean, each FGSM and each PGD budget."""
    yield "clean", None, torch_counts["clean"], None if our_counts is None else our_counts["clean"]
    for attack in ("fgsm", "pgd"):
        for eps, n in torch_counts[attack].items():
            yield attack.upper(), eps, n, None if our_counts is None else our_counts[attack][eps]


def report(torch_counts: dict, our_counts: dict | None, samples: int, tolerance: float) -> bool:
    """Prints the table; True when every accuracy is within tolerance (or nothing to compare)."""
    points = lambda n: 100.0 * n / samples  # noqa: E731
    ok = True
    print(f"  {'attack':<6} {'eps':>5} {'torch':>16} {'ours':>16} {'diff':>7}")
    for attack, eps, ref, ours in rows(torch_counts, our_counts):
        eps_text = "-" if eps is None else f"{eps:g}"
        cell = lambda n: f"{points(n):6.2f}% ({n:4d})"  # noqa: E731
        if ours is None:
            print(f"  {attack:<6} {eps_text:>5} {cell(ref):>16} {'-':>16} {'-':>7}")
            continue
        # In counts, then points: 10 of 1000 digits is exactly 1.00 point, not 1.0000000000000002.
        diff = 100.0 * (ours - ref) / samples
        bad = abs(diff) > tolerance
        ok &= not bad
        flag = "  > tolerance" if bad else ""
        print(f"  {attack:<6} {eps_text:>5} {cell(ref):>16} {cell(ours):>16} {diff:+7.2f}{flag}")
    return ok


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", required=True, type=Path, action="append",
                   help="a .safetensors written by the tool with --save-weights; repeat it for several models")
    p.add_argument("--data", type=Path, default=REPO / "data" / "mnist",
                   help="directory with t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz] "
                        "(default: data/mnist)")
    p.add_argument("--ours", type=Path, help="the tool's `robustness --json` output to compare with")
    p.add_argument("--tolerance", type=float, default=1.0,
                   help="largest allowed |torch - ours| accuracy, in points (default 1.0)")
    p.add_argument("--adversarial", type=Path,
                   help="the FGSM images the tool wrote with --adversarial (.npy), to count the samples that differ")
    p.add_argument("--adversarial-eps", type=float, default=ADVERSARIAL_EPS,
                   help=f"the budget of --adversarial (default {ADVERSARIAL_EPS}, the tool's)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = p.parse_args(argv)
    if args.adversarial is not None and len(args.weights) != 1:
        p.error("--adversarial holds one model's images: give one --weights")

    torch.set_num_threads(args.threads)
    try:
        images, labels = read_digits(args.data)
        samples = len(labels)
        ours = read_ours(args.ours, samples) if args.ours is not None else None
        ok = True
        for weights in args.weights:
            try:
                model = load_model(weights).float().eval()
            except SystemExit as e:  # load_model's own messages (bad metadata, no classifier.4)
                raise Unreadable(str(e))
            except Exception as e:  # not SafeTensors, strict load_state_dict refused it, ...
                raise Unreadable(f"{weights}: {type(e).__name__}: {e}")
            cfg = config_of(model)
            if weights.suffix != ".safetensors" or saved_config(weights) is None:
                # load_model's fallback; the tool's --save-weights always records the architecture.
                print(f"note: {weights} has no metadata entry {CONFIG_KEY!r}: read as the seed's tanh/avg LeNet5")
            channels, side, _ = input_shape(cfg)
            if channels != 1 or side < MNIST_SIZE:
                raise Unreadable(f"{weights}: takes [{channels}, {side}, {side}] inputs; MNIST digits need "
                                 f"one channel and a side of 28 or more")
            if labels.max() >= cfg["num_classes"]:
                raise Unreadable(f"{weights}: {cfg['num_classes']} classes, and a digit is labelled {labels.max()}")
            our_counts = None
            if ours is not None:
                our_counts = ours_correct(ours_for(ours, args.ours, weights), args.ours)

            x, y = frame(images, side), torch.from_numpy(labels)
            counts = measure(model, x, y)
            print(f"{weights}: {json.dumps(cfg)}, {samples} digits of {args.data}")
            ok &= report(counts, our_counts, samples, args.tolerance)

            # How fragile sign(g) is: the same gradient in float64 flips some near-zero components.
            g64 = gradient(copy.deepcopy(model).double(), x.double(), y)
            n, elements = samples_differing(counts["gradient"].sign(), g64.sign().float())
            print(f"  sign(g) float32 vs float64: {n} of {samples} samples differ ({elements} pixels)")

            if args.adversarial is not None:
                try:
                    theirs = np.load(args.adversarial)
                except (OSError, ValueError) as e:
                    raise Unreadable(f"{args.adversarial}: {e}")
                if theirs.shape != tuple(x.shape):
                    raise Unreadable(f"{args.adversarial}: shape {theirs.shape}, expected {tuple(x.shape)}")
                # The same f32 operations on the same x: equal signs give bit-equal images.
                mine = fgsm(x, counts["gradient"], args.adversarial_eps)
                n, elements = samples_differing(mine, torch.from_numpy(theirs.astype(np.float32)))
                print(f"  FGSM images at eps {args.adversarial_eps:g} vs {args.adversarial}: "
                      f"{n} of {samples} samples differ ({elements} pixels)")
    except Unreadable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if ours is None:
        print("no --ours: nothing compared")
        return 0
    print(f"OK: every accuracy within {args.tolerance:g} points" if ok
          else f"FAIL: an accuracy differs by more than {args.tolerance:g} points")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
