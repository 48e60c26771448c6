#!/usr/bin/env python3
"""Benchmark PyTorch against the lenet-jacobian binary on the same shapes, in one run.

The model is one variant of the LeNet5 family of make_torch_fixtures.py, chosen
with --activation tanh|relu|sigmoid, --pooling avg|max and --padding P (default:
the seed's tanh, avg, 0), with 1 input channel, 10 classes and PyTorch's default
init after torch.manual_seed(--seed); the input is torch.rand(N, 1, S, S) with
S = 32 - 2 * P, drawn right after the model, float32 on the CPU.

PyTorch ways:
  per-sample layout [N, 10, 1, S, S]
    (a) one forward, then torch.autograd.grad(out[:, k].sum(), x, retain_graph=True)
        for k in 0..9; measured with the parameters requiring grad and with
        requires_grad_(False) on them
    (b) torch.func.vmap(torch.func.jacrev(f)), f: one sample [1, S, S] -> logits [10];
        measured with the parameters requiring grad and frozen
    torch best = the smallest median of (a) and (b)
  full layout [N, 10, N, 1, S, S]
    (c) torch.autograd.functional.jacobian(model, x, vectorize=True), batch <= 128 only
    torch best = (c)

Ours: `<bin> bench --backend B --batch N --layout per-sample|full --repeats R --json --method M
--activation ACT --pooling POOL --padding P` (plus --ours-args) for each backend and method, the
variant flags always given; every stdout line that is a JSON object with "backend", "batch",
"layout" and "median_s" (optionally "min_s", "max_s") is a result; other lines
and keys are ignored, stderr passes through.

Each way is run once as a warm-up, then timed --repeats times; the table gives
the median, min and max in seconds and, for our rows, median / torch best median.
With --rounds R the whole measurement (the machine's product included) runs R times,
interleaved: each round times every PyTorch way and then ours, row after row. The
table then gives the median over rounds of each round's median (min and max over all
runs), and each of our ratios is the median over rounds of that round's ratio, ours
against the round's fastest PyTorch way, timed back to back: a slow minute of the
machine then moves both sides of a ratio rather than one.
The report names the variant, and every --json-out row has a "variant" field
({"activation", "pooling", "padding"}) and a "gflop" field (the arithmetic of the row's
Jacobian, jacobian_flop), its "round" (from 0) and, for ours, its "ratio" to that round's
fastest PyTorch way. It also measures the machine in the same run (PyTorch's float32
2048 x 2048 product) and gives each row's achieved GFLOP/s and its share of that product's.

Example:
    python scripts/bench_vs_torch.py --batches 12,128 --markdown-out bench.md
    python scripts/bench_vs_torch.py --activation relu --pooling max --padding 2
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_torch_fixtures import (  # noqa: E402
    ACTIVATIONS, DEFAULT_CONFIG, POOLINGS, REPO, SIDE, family_from_config, input_shape)

N_CLASSES = 10
TORCH_FULL_MAX_BATCH = 128  # the full Jacobian grows with batch squared
LAYOUTS = ("per-sample", "full")
MAX_PADDING = (SIDE - 1) // 2  # the input side 32 - 2 * padding stays >= 1


class Variant:
    """The LeNet-5 variant measured: activation, pooling and conv1 padding (1 input channel)."""

    def __init__(self, activation: str, pooling: str, padding: int):
        self.activation, self.pooling, self.padding = activation, pooling, padding
        self.config = {**DEFAULT_CONFIG, "num_classes": N_CLASSES, "activation": activation,
                       "pooling": pooling, "padding": padding}
        self.image = input_shape(self.config)  # (1, S, S)

    def build_model(self, seed: int):
        """Like make_torch_fixtures.build_model: default init after torch.manual_seed(seed),
        float32, eval mode; the generator is left right after the weights."""
        torch.manual_seed(seed)
        return family_from_config(self.config).float().eval()

    def flags(self) -> list[str]:
        """The same variant as `bench` flags of our binary."""
        return ["--activation", self.activation, "--pooling", self.pooling, "--padding", str(self.padding)]

    def text(self) -> str:
        c, s, _ = self.image
        return (f"{self.activation} activation, {self.pooling} pooling, padding {self.padding} "
                f"(input {c} x {s} x {s})")

    def record(self) -> dict:
        return {"activation": self.activation, "pooling": self.pooling, "padding": self.padding}


def padding_arg(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {s!r}")
    if not 0 <= v <= MAX_PADDING:
        raise argparse.ArgumentTypeError(f"expected 0 <= padding <= {MAX_PADDING} (input side 32 - 2 x padding), "
                                         f"got {v}")
    return v


def int_list(s: str) -> list[int]:
    try:
        out = [int(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}")
    if not out or any(v < 1 for v in out):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {s!r}")
    return out


def str_list(s: str) -> list[str]:
    return [v.strip() for v in s.split(",") if v.strip()]


# LeNet-5's sizes (as crates/lenet5/src/model/config.rs states them).
KERNEL, C1, C2, S1, S2, P2, H1, H2 = 5, 6, 16, 28, 10, 5, 120, 84


def jacobian_flop(variant: Variant, layout: str, batch: int) -> float:
    """Floating-point operations of a Jacobian by one forward pass and rows carried back, counting
    a multiply-add as two: per sample, the forward pass, then one row per logit (per-sample
    layout) or per logit of every sample of the batch (full layout: every row goes through every
    sample, as the host kernels compute it), each through fc3..fc1 and both convolutions'
    adjoints. The pooling, activations and their derivatives are not counted."""
    channels = variant.image[0]
    conv1 = 2 * S1 * S1 * channels * KERNEL * KERNEL * C1
    conv2 = 2 * S2 * S2 * C1 * KERNEL * KERNEL * C2
    linear = 2 * (C2 * P2 * P2 * H1 + H1 * H2 + H2 * N_CLASSES)
    forward = conv1 + conv2 + linear
    row = conv1 + conv2 + linear
    rows = N_CLASSES if layout == "per-sample" else N_CLASSES * batch
    return batch * (forward + rows * row)


def sgemm_gflops(n: int = 2048, repeats: int = 7) -> float:
    """The machine's matrix-product speed in this run: PyTorch's float32 n x n product on the
    threads torch uses, median of `repeats` after a warm-up, in GFLOP/s."""
    a, b = torch.rand(n, n), torch.rand(n, n)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def stats(times: list[float]) -> dict:
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}


def time_fn(fn, repeats: int):
    """Warm-up once, then `repeats` timed calls. Returns (stats, warm-up result)."""
    result = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return stats(times), result


# ---- PyTorch ways ---------------------------------------------------------------------------

def way_autograd_per_logit(model, x):
    def run():
        xg = x.detach().requires_grad_(True)
        out = model(xg)
        grads = [torch.autograd.grad(out[:, k].sum(), xg, retain_graph=True)[0]
                 for k in range(out.shape[1])]
        return torch.stack(grads, dim=1)  # [N, C, 1, S, S]
    return run


def way_vmap_jacrev(model, x):
    def f(sample):  # [1, S, S] -> [C]
        return model(sample.unsqueeze(0)).squeeze(0)

    jac = torch.func.vmap(torch.func.jacrev(f))

    def run():
        return jac(x)  # [N, C, 1, S, S]
    return run


def way_functional_full(model, x):
    def run():
        return torch.autograd.functional.jacobian(model, x, vectorize=True)  # [N, C, N, 1, S, S]
    return run


def torch_results(variant: Variant, layout: str, batch: int, repeats: int, seed: int) -> list[dict]:
    image = variant.image
    model = variant.build_model(seed)
    x = torch.rand(batch, *image)
    frozen = copy.deepcopy(model).requires_grad_(False)

    if layout == "per-sample":
        ways = [
            ("torch (a) autograd.grad per logit", way_autograd_per_logit(model, x)),
            ("torch (a) autograd.grad per logit, params frozen", way_autograd_per_logit(frozen, x)),
            ("torch (b) vmap(jacrev)", way_vmap_jacrev(model, x)),
            ("torch (b) vmap(jacrev), params frozen", way_vmap_jacrev(frozen, x)),
        ]
        expected = (batch, N_CLASSES, *image)
    else:
        if batch > TORCH_FULL_MAX_BATCH:
            print(f"  torch (c) skipped for batch {batch} > {TORCH_FULL_MAX_BATCH}", file=sys.stderr)
            return []
        ways = [("torch (c) autograd.functional.jacobian(vectorize=True)", way_functional_full(model, x))]
        expected = (batch, N_CLASSES, batch, *image)

    rows, reference = [], None
    for name, fn in ways:
        st, j = time_fn(fn, repeats)
        assert tuple(j.shape) == expected, (name, tuple(j.shape), expected)
        # The ways must agree (same model, same input).
        if reference is None:
            reference = j
        else:
            err = (j - reference).abs().max().item()
            scale = reference.abs().max().item()
            if err > 1e-4 * scale:
                print(f"  warning: {name} differs from {ways[0][0]} by {err:.3g} (max |J| {scale:.3g})",
                      file=sys.stderr)
        print(f"  {layout:10s} batch {batch:5d}  {name:55s} median {st['median_s']:.4g} s", file=sys.stderr)
        rows.append({"layout": layout, "batch": batch, "way": name, "side": "torch", **st})
    return rows


# ---- our binary -----------------------------------------------------------------------------

def normalize_layout(v) -> str:
    return str(v).strip().lower().replace("_", "-")


def parse_ours(stdout: str) -> list[dict]:
    rows = []
    for line in stdout.splitlines():
        s = line.strip()
        rec = None
        if s.startswith("{"):
            try:
                rec = json.loads(s)
            except json.JSONDecodeError:
                rec = None
        if not isinstance(rec, dict) or not {"backend", "batch", "layout", "median_s"} <= rec.keys():
            if s:
                print(f"  [bin] {line}", file=sys.stderr)
            continue
        try:
            median = float(rec["median_s"])
            rows.append({
                "layout": normalize_layout(rec["layout"]),
                "batch": int(rec["batch"]),
                "way": f"ours {rec['backend']}" + (f" ({rec['method']})" if rec.get("method") else ""),
                "side": "ours",
                "median_s": median,
                "min_s": float(rec["min_s"]) if rec.get("min_s") is not None else None,
                "max_s": float(rec["max_s"]) if rec.get("max_s") is not None else None,
            })
        except (TypeError, ValueError) as e:
            print(f"  [bin] unusable result line ({e}): {line}", file=sys.stderr)
    return rows


def our_results(binary: Path, backend: str, layout: str, batch: int, repeats: int, timeout: float,
                problems: list[str], extra: list[str]) -> list[dict]:
    cmd = [str(binary), "bench", "--backend", backend, "--batch", str(batch), "--layout", layout,
           "--repeats", str(repeats), "--json", *extra]
    print(f"  running {' '.join(cmd)}", file=sys.stderr)
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        problems.append(f"`{' '.join(cmd)}` timed out after {timeout:g} s")
        return []
    except OSError as e:
        problems.append(f"`{' '.join(cmd)}` could not start: {e}")
        return []
    rows = parse_ours(proc.stdout)
    if proc.returncode != 0:
        problems.append(f"`{' '.join(cmd)}` exited with status {proc.returncode}")
    elif not rows:
        problems.append(f"`{' '.join(cmd)}` printed no JSON result line")
    for r in rows:
        print(f"  {r['layout']:10s} batch {r['batch']:5d}  {r['way']:55s} median {r['median_s']:.4g} s",
              file=sys.stderr)
    return rows


# ---- report ---------------------------------------------------------------------------------

def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def proc_stat():
    """(total, idle) jiffies of all CPUs from /proc/stat, or None."""
    try:
        with open("/proc/stat") as f:
            v = [int(t) for t in f.readline().split()[1:]]
        return sum(v), v[3] + (v[4] if len(v) > 4 else 0)
    except (OSError, ValueError, IndexError):
        return None


def cpu_busy(seconds: float = 1.0):
    """Fraction of all CPU time that was busy (not idle or iowait) over `seconds`."""
    a = proc_stat()
    time.sleep(seconds)
    b = proc_stat()
    if a is None or b is None or b[0] <= a[0]:
        return None
    return 1.0 - (b[1] - a[1]) / (b[0] - a[0])


class OtherLoad:
    """Share of the machine's CPU time used by other processes between start() and stop().

    Busy time from /proc/stat minus this process's and its children's CPU time (os.times).
    """

    def start(self):
        self.stat, self.times = proc_stat(), os.times()
        return self

    def stop(self):
        stat, times = proc_stat(), os.times()
        if self.stat is None or stat is None or stat[0] <= self.stat[0]:
            return None
        hz = os.sysconf("SC_CLK_TCK")
        total = stat[0] - self.stat[0]
        busy = total - (stat[1] - self.stat[1])
        ours = sum(times[i] - self.times[i] for i in range(4)) * hz
        return max(0.0, min(1.0, (busy - ours) / total))


def nproc() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 0


def with_ratios(rows: list[dict], round_: int) -> list[dict]:
    """One round's rows of one layout and batch, each tagged with its round; ours also with its
    ratio to the round's fastest PyTorch way (None without one)."""
    torch_medians = [r["median_s"] for r in rows if r["side"] == "torch"]
    for r in rows:
        r["round"] = round_
        if r["side"] == "ours":
            r["ratio"] = r["median_s"] / min(torch_medians) if torch_medians else None
    return rows


def combine(rows: list[dict]) -> list[dict]:
    """One row per layout, batch and way over the rounds: the median of the rounds' medians, the
    smallest min, the largest max, and for ours the median of the rounds' ratios."""
    combined: dict[tuple, list[dict]] = {}
    for r in rows:
        combined.setdefault((r["layout"], r["batch"], r["way"]), []).append(r)
    out = []
    for (layout, batch, way), runs in combined.items():
        mins = [r["min_s"] for r in runs if r.get("min_s") is not None]
        maxs = [r["max_s"] for r in runs if r.get("max_s") is not None]
        ratios = [r["ratio"] for r in runs if r.get("ratio") is not None]
        out.append({"layout": layout, "batch": batch, "way": way, "side": runs[0]["side"],
                    "median_s": statistics.median(r["median_s"] for r in runs),
                    "min_s": min(mins) if mins else None, "max_s": max(maxs) if maxs else None,
                    "ratio": statistics.median(ratios) if ratios else None, "rounds": len(runs)})
    return out


def fmt(v) -> str:
    return "—" if v is None else f"{v:.4g}"


def report(rows: list[dict], args, variant: Variant, binary: Path, problems: list[str], busy, other,
           peak: float) -> str:
    busy_text = "unknown" if busy is None else f"{busy:.0%}"
    other_text = "unknown" if other is None else f"{other:.0%}"
    if (busy is not None and busy > 0.1) or (other is not None and other > 0.05):
        other_text += " (**other work was running: the figures are not reliable**)"
    lines = [
        "## LeNet5 input Jacobian: PyTorch vs lenet-jacobian",
        "",
        f"- variant: {variant.text()}",
        f"- CPU: {cpu_model()}",
        f"- nproc: {nproc()}; CPU busy in the second before the run: {busy_text}; "
        f"CPU share used by other processes during the run: {other_text}",
        f"- torch {torch.__version__} ({torch.get_num_threads()} threads), python {platform.python_version()}",
        f"- ours: `{binary}`, backends {', '.join(args.backends)}, methods {', '.join(args.methods)}"
        + (f", extra arguments `{args.ours_args}`" if args.ours_args else ""),
        f"- {N_CLASSES} classes, input torch.rand(N, {', '.join(map(str, variant.image))}) float32; "
        f"median / min / max of {args.repeats} timed runs after one warm-up"
        + (f"; {args.rounds} interleaved rounds: medians over rounds of each round's median, "
           "min and max over all runs, ratios the median of each round's ratio" if args.rounds > 1 else ""),
        f"- the machine in this run: PyTorch's float32 2048 x 2048 product, {peak:.0f} GFLOP/s"
        + (" (median over rounds)" if args.rounds > 1 else "") + "; "
        "GFLOP/s below is the arithmetic of one forward pass and the rows carried back (a multiply-add "
        "counted as two; the full layout's rows through every sample), over the median time, and its "
        "share of that product's speed",
        "",
    ]
    if problems:
        lines += [f"- **ours not measured:** {p}" for p in problems] + [""]
    lines += [
        "| layout | batch | way | median s | min s | max s | ratio ours/torch-best | GFLOP/s | of sgemm |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    rows = combine(rows)
    keys = []
    for r in rows:
        k = (r["layout"], r["batch"])
        if k not in keys:
            keys.append(k)
    keys.sort(key=lambda k: (LAYOUTS.index(k[0]) if k[0] in LAYOUTS else len(LAYOUTS), k[1]))
    for k in keys:
        group = [r for r in rows if (r["layout"], r["batch"]) == k]
        torch_rows = [r for r in group if r["side"] == "torch"]
        best = min(torch_rows, key=lambda r: r["median_s"]) if torch_rows else None
        for r in group:
            if r["side"] == "ours":
                ratio = f"{r['ratio']:.3g}" if r["ratio"] is not None else "—"
                way = f"**{r['way']}**"
            else:
                ratio = "torch best" if r is best else ""
                way = r["way"]
            gflops = jacobian_flop(variant, k[0], k[1]) / r["median_s"] / 1e9
            lines.append(f"| {k[0]} | {k[1]} | {way} | {fmt(r['median_s'])} | {fmt(r['min_s'])} "
                         f"| {fmt(r['max_s'])} | {ratio} | {gflops:.1f} | {gflops / peak:.0%} |")
    lines += ["", "Ratio below 1: ours is faster than the fastest PyTorch way for that layout and batch.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--bin", type=Path, default=REPO / "target" / "release" / "lenet-jacobian",
                   help="our binary (default: target/release/lenet-jacobian)")
    p.add_argument("--backends", type=str_list, default=["flex", "ndarray"],
                   help="our backends, comma-separated (default: flex,ndarray)")
    p.add_argument("--batches", type=int_list, default=[12, 128, 1024],
                   help="batch sizes, comma-separated (default: 12,128,1024)")
    p.add_argument("--full-max-batch", type=int, default=12,
                   help="run the full layout only for batches <= this (default: 12; "
                        f"PyTorch's full Jacobian is never run above {TORCH_FULL_MAX_BATCH})")
    p.add_argument("--repeats", type=int, default=7, help="timed runs per way, after one warm-up (default: 7)")
    p.add_argument("--rounds", type=int, default=1,
                   help="times the whole measurement is run, interleaved; figures are medians over rounds "
                        "(default: 1)")
    p.add_argument("--seed", type=int, default=0, help="torch.manual_seed for weights and input (default: 0)")
    p.add_argument("--activation", choices=sorted(ACTIVATIONS), default=DEFAULT_CONFIG["activation"],
                   help="the variant's activation, on both sides (default: %(default)s)")
    p.add_argument("--pooling", choices=sorted(POOLINGS), default=DEFAULT_CONFIG["pooling"],
                   help="the variant's 2 x 2 pooling, on both sides (default: %(default)s)")
    p.add_argument("--padding", type=padding_arg, default=DEFAULT_CONFIG["padding"], metavar="P",
                   help=f"the variant's conv1 zero padding, 0..{MAX_PADDING}; the input side is 32 - 2 x P "
                        "(default: %(default)s)")
    p.add_argument("--methods", type=str_list, default=["analytic", "autodiff"],
                   help="our methods (`bench --method M`), each run on every backend (default: analytic,autodiff)")
    p.add_argument("--ours-args", default="",
                   help="extra arguments appended to each `bench` run of our binary (after the variant's "
                        "flags), e.g. \"--chunk-size 64\"")
    p.add_argument("--timeout", type=float, default=3600, help="seconds allowed per run of our binary (default: 3600)")
    p.add_argument("--torch-threads", type=int,
                   help="torch.set_num_threads(N) (default: what torch picks)")
    p.add_argument("--no-ours", action="store_true", help="only measure PyTorch")
    p.add_argument("--markdown-out", type=Path, help="also write the report to this file")
    p.add_argument("--json-out", type=Path, help="also write every result row as JSON to this file")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    if args.rounds < 1:
        p.error("--rounds must be >= 1")
    variant = Variant(args.activation, args.pooling, args.padding)

    binary = args.bin
    if not binary.is_absolute() and not binary.exists() and shutil.which(str(binary)):
        binary = Path(shutil.which(str(binary)))
    problems: list[str] = []
    run_ours = not args.no_ours
    if args.no_ours:
        problems.append("--no-ours given")
    elif not binary.is_file() or not os.access(binary, os.X_OK):
        problems.append(f"binary `{binary}` not found or not executable "
                        "(build it with `cargo build --release`, or pass --bin)")
        run_ours = False
    for msg in problems:
        print(f"note: {msg}; PyTorch is measured alone", file=sys.stderr)

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    busy = cpu_busy()
    if busy is not None and busy > 0.1:
        print(f"warning: the CPU was {busy:.0%} busy before the run; timings will be noisy", file=sys.stderr)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, repeats {args.repeats}; "
          f"variant: {variant.text()}", file=sys.stderr)
    rows: list[dict] = []
    peaks: list[float] = []
    load = OtherLoad().start()
    for round_ in range(args.rounds):
        if args.rounds > 1:
            print(f"round {round_ + 1} of {args.rounds}", file=sys.stderr)
        peaks.append(sgemm_gflops())
        for layout in LAYOUTS:
            for batch in args.batches:
                if layout == "full" and batch > args.full_max_batch:
                    continue
                found = torch_results(variant, layout, batch, args.repeats, args.seed)
                if run_ours:
                    for backend in args.backends:
                        for method in args.methods:
                            extra = ["--method", method, *variant.flags(), *shlex.split(args.ours_args)]
                            found += our_results(binary, backend, layout, batch, args.repeats, args.timeout,
                                                 problems, extra)
                rows += with_ratios(found, round_)
    peak = statistics.median(peaks)

    other = load.stop()
    for r in rows:
        r["variant"] = variant.record()
    if other is not None and other > 0.05:
        print(f"warning: other processes used {other:.0%} of the CPU during the run", file=sys.stderr)
    for r in rows:
        r["gflop"] = jacobian_flop(variant, r["layout"], r["batch"]) / 1e9
    text = report(rows, args, variant, binary, problems, busy, other, peak)
    print(text)
    if args.markdown_out:
        args.markdown_out.write_text(text)
        print(f"wrote {args.markdown_out}", file=sys.stderr)
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=1) + "\n")
        print(f"wrote {args.json_out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
