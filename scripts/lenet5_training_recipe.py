"""How the recipe of models/lenet5-mnist.bpk was chosen, replayed in PyTorch.

data/mnist has no validation set besides the held-out test digits, and choosing a recipe by
its test accuracy would overstate that accuracy. So the candidates are compared here on a
validation split of the *training* digits only: the first 3500 train, the last 500 validate
(the files are already shuffled, see data/README.md). Three seeds per candidate.

    PY=$(scripts/setup_torch_venv.sh | tail -n 1)
    "$PY" scripts/lenet5_training_recipe.py select      # the candidates on the validation split
    "$PY" scripts/lenet5_training_recipe.py reference   # 10 epochs, no shifts, on the test digits

The model is the one of README.md (tanh, average pooling), Adam at 1e-3, batches of 64,
cross-entropy; digits padded from 28 x 28 to 32 x 32 with zeros and scaled to [0, 1], as
lenet5::mnist::digit_to_input does. "Shifts" move each training digit by a random whole
translation of -2..=2 pixels along each axis every time it is seen (inside the zero border, so
no ink is lost), as lenet5::train::MnistBatcher does.
"""

import gzip
import math
import pathlib
import sys

import numpy as np
import torch
import torch.nn as nn

DATA = pathlib.Path(__file__).resolve().parent.parent / "data" / "mnist"


def read_idx(name, header_len):
    return np.frombuffer(gzip.open(DATA / name).read(), np.uint8, offset=header_len)


def images(name):
    digits = torch.tensor(read_idx(name, 16).reshape(-1, 28, 28), dtype=torch.float32) / 255.0
    return nn.functional.pad(digits, (2, 2, 2, 2)).unsqueeze(1)


def labels(name):
    return torch.tensor(read_idx(name, 8), dtype=torch.long)


class LeNet5(nn.Module):
    def __init__(self, n_classes):
        super().__init__()
        self.feature_extractor = nn.Sequential(
            nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2),
            nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2))
        self.classifier = nn.Sequential(
            nn.Linear(400, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh(),
            nn.Linear(84, n_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.feature_extractor(x), 1))


def shifted(batch, generator):
    out = torch.empty_like(batch)
    for k in range(len(batch)):
        down, right = torch.randint(-2, 3, (2,), generator=generator).tolist()
        # Rolling by at most 2 only moves the zero border around: the digit stays whole.
        out[k] = torch.roll(batch[k], (down, right), (1, 2))
    return out


def accuracy_after_training(x, y, x_eval, y_eval, epochs, shifts, cosine, seed, batch=64):
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = LeNet5(10)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    loss = nn.CrossEntropyLoss()
    steps, step = epochs * math.ceil(len(x) / batch), 0
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for start in range(0, len(x), batch):
            if cosine:
                for group in optimizer.param_groups:
                    group["lr"] = 1e-3 * 0.5 * (1 + math.cos(math.pi * step / steps))
            index = order[start:start + batch]
            inputs = shifted(x[index], generator) if shifts else x[index]
            optimizer.zero_grad()
            loss(model(inputs), y[index]).backward()
            optimizer.step()
            step += 1
    with torch.no_grad():
        return (model(x_eval).argmax(1) == y_eval).float().mean().item()


def main():
    torch.set_num_threads(2)
    x, y = images("train-images-idx3-ubyte.gz"), labels("train-labels-idx1-ubyte.gz")
    mode = sys.argv[1] if len(sys.argv) > 1 else "select"
    if mode == "select":
        x_fit, y_fit, x_eval, y_eval = x[:3500], y[:3500], x[3500:], y[3500:]
        candidates = [
            ("10 epochs", 10, False, False),
            ("20 epochs", 20, False, False),
            ("20 epochs, cosine decay", 20, False, True),
            ("10 epochs, shifts", 10, True, False),
            ("20 epochs, shifts", 20, True, False),
            ("20 epochs, shifts, cosine decay", 20, True, True),
        ]
        seeds = [0, 1, 2]
        print("validation accuracy (500 training digits held back), seeds", seeds)
    elif mode == "reference":
        x_fit, y_fit = x, y
        x_eval, y_eval = images("t10k-images-idx3-ubyte.gz"), labels("t10k-labels-idx1-ubyte.gz")
        candidates = [("10 epochs", 10, False, False)]
        seeds = [0, 1, 2, 3]
        print("held-out test accuracy (1000 digits), seeds", seeds)
    else:
        sys.exit(f"unknown mode {mode!r}: select or reference")
    for name, epochs, shifts, cosine in candidates:
        accuracies = [
            accuracy_after_training(x_fit, y_fit, x_eval, y_eval, epochs, shifts, cosine, seed)
            for seed in seeds
        ]
        values = " ".join(f"{100 * a:.1f}" for a in accuracies)
        print(f"{name:32} {values}  mean {100 * np.mean(accuracies):.2f}", flush=True)


if __name__ == "__main__":
    main()
