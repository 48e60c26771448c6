#!/usr/bin/env python3
"""Reference fixtures from PyTorch for LeNet-5 as people write it (tests/fixtures/family/).

Each case is one way LeNet-5 is written in the wild, built as its authors wrote
it (their own class or nn.Sequential, their own key names; not the canonical
``make_torch_fixtures.LeNet5``), after ``torch.manual_seed(seed)`` with a seed
of its own, in float32 on the CPU, eval mode. The input is ``torch.rand(2, C,
S, S)`` drawn right after building the model (same generator). Cases:

    tutorial_net         PyTorch's 60-minute blitz "Neural Networks" Net: relu, max pooling,
                         1x32x32; net.pt = torch.save(net.state_dict()); model.onnx (TorchScript
                         exporter) and model_dynamo.onnx + model_dynamo.onnx.data (dynamo exporter)
    d2l_sequential       d2l.ai's LeNet nn.Sequential: sigmoid, average pooling, conv1 padding 2,
                         1x28x28, xavier_uniform_ weights (d2l's init_weights); d2l.pt (keys
                         0., 3., 7., 9., 11.); model.onnx
    features_classifier  tanh and max pooling in self.features / self.classifier; lenet.pt
    checkpoint           make_torch_fixtures.LeNet5(10) (tanh, average pooling) after 3 Adam steps,
                         saved with PyTorch's "saving a general checkpoint" recipe: checkpoint.pt =
                         {"epoch", "model_state_dict", "optimizer_state_dict", "loss"}
    cifar_net            kuangliu/pytorch-cifar's LeNet: relu, max pooling, 3x32x32; ckpt.pth =
                         {"net": nn.DataParallel(net).state_dict(), "acc", "epoch"}; model.onnx
    conv_head            the "LeNet-5 in PyTorch" article's model with a third convolution
                         (Conv2d(16, 120, 5)), tanh, average pooling, 7 classes; it returns
                         (logits, probs), so the differentiated and exported function is a
                         subclass returning the logits only; lenet5.pt; model_dynamo.onnx + .data

Each case directory gets:

    <weights file>            as above (torch.save, zip format)
    input.npy                 float32 [2, C, S, S]
    logits.npy                float32 [2, classes], model(input)
    jacobian_full.npy         float32 [2, classes, 2, C, S, S]
                              torch.autograd.functional.jacobian(model, x, vectorize=True)
    jacobian_per_sample.npy   float32 [2, classes, C, S, S], its diagonal blocks
                              (per_sample_from_full); the off-diagonal blocks are asserted zero and
                              vmap(jacrev) is checked against it
    model.onnx                torch.onnx.export(model, x, f, dynamo=False, opset_version=17,
                              input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    model_dynamo.onnx         torch.onnx.export(model, (x,), f, dynamo=True, external_data=True,
                              input_names=["input"], output_names=["logits"],
                              dynamic_shapes=({0: Dim("batch")},)), with the nodes' recorded
                              Python stack traces emptied (see export_onnx); the initializers
                              above the exporter's size threshold are in model_dynamo.onnx.data
                              beside it, the smallest ones stay in the .onnx file
    case.json                 the case's description, its architecture in the canonical terms of
                              make_torch_fixtures.family_from_config (num_classes, activation,
                              pooling, in_channels, padding, conv3), input_shape, weights file,
                              weights_form, keys, the Rust tool's flags, the ONNX files and each
                              graph's op types in order (also printed)

bad/ gets ONNX files a LeNet-5 loader must refuse: mlp.onnx (Flatten, Linear(1024, 64),
ReLU, Linear(64, 10)) and softmax_head.onnx (tutorial_net's Net followed by a softmax:
probabilities, not logits), both with the TorchScript exporter as model.onnx above. The
output directory gets VERSIONS.txt (library versions and the command).

Every ONNX file is checked with onnx.checker.check_model(full_check=True), and its
initializers (onnx.load, external data included) are compared with the model's
state_dict, name by name and bit for bit. At the end every weights file is loaded again
with torch.load(weights_only=True) into the author's class and must give logits.npy
exactly; loaded into family_from_config(case.json) under the canonical key names it must
give the same logits and Jacobian.

Reruns with the versions of VERSIONS.txt give identical bytes on one machine (the
exporters' output included); another CPU may change the last bits of the float32
results.

Usage:
    python scripts/make_family_fixtures.py [--out tests/fixtures/family]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_torch_fixtures import (  # noqa: E402
    CONFIG_KEYS, DEFAULT_CONFIG, REPO, LeNet5, command_line, family_from_config, input_shape, jacobian_full,
    jacobian_per_sample, per_sample_from_full, save_npy, versions_text)

BATCH = 2
OPSET = 17  # TorchScript exporter (dynamo=False); the dynamo exporter uses its own default


# ---- The models as their authors wrote them. ----

class TutorialNet(nn.Module):
    """``Net`` of PyTorch's "Deep Learning with PyTorch: A 60 Minute Blitz", section "Neural Networks"."""

    def __init__(self):
        super().__init__()
        # 1 input image channel, 6 output channels, 5x5 square convolution kernel
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        # an affine operation: y = Wx + b
        self.fc1 = nn.Linear(16 * 5 * 5, 120)  # 5*5 from image dimension
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        # Max pooling over a (2, 2) window
        x = F.max_pool2d(F.relu(self.conv1(x)), (2, 2))
        # If the size is a square, you can specify with a single number
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)  # flatten all dimensions except the batch dimension
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        x = self.fc3(x)
        return x


class TutorialNetSoftmax(TutorialNet):
    """TutorialNet followed by a softmax: returns probabilities (bad/softmax_head.onnx)."""

    def forward(self, x):
        return F.softmax(super().forward(x), dim=1)


def d2l_lenet() -> nn.Sequential:
    """d2l.ai's LeNet (chapter "Convolutional Neural Networks (LeNet)"), for 28x28 Fashion-MNIST."""
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.Sigmoid(),
        nn.Linear(120, 84), nn.Sigmoid(),
        nn.Linear(84, 10))


def d2l_init_weights(m: nn.Module) -> None:
    """d2l's ``init_weights`` (train_ch6 runs ``net.apply(init_weights)``); biases keep PyTorch's init."""
    if type(m) == nn.Linear or type(m) == nn.Conv2d:  # noqa: E721 (d2l's test)
        nn.init.xavier_uniform_(m.weight)


class FeaturesLeNet5(nn.Module):
    """tanh LeNet-5 with max pooling, in torchvision's features / classifier naming."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, kernel_size=5), nn.Tanh(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5), nn.Tanh(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(
            nn.Linear(400, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, num_classes))

    def forward(self, x):
        x = self.features(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


class CifarLeNet(nn.Module):
    """``LeNet`` of kuangliu/pytorch-cifar (models/lenet.py), for 3x32x32 CIFAR-10."""

    def __init__(self):
        super(CifarLeNet, self).__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        out = F.relu(self.conv1(x))
        out = F.max_pool2d(out, 2)
        out = F.relu(self.conv2(out))
        out = F.max_pool2d(out, 2)
        out = out.view(out.size(0), -1)
        out = F.relu(self.fc1(out))
        out = F.relu(self.fc2(out))
        out = self.fc3(out)
        return out


class ArticleLeNet5(nn.Module):
    """``LeNet5`` of the "Implementing Yann LeCun's LeNet-5 in PyTorch" article: C5 as a convolution.

    Its forward returns ``(logits, probs)``.
    """

    def __init__(self, n_classes):
        super(ArticleLeNet5, self).__init__()
        self.feature_extractor = nn.Sequential(
            nn.Conv2d(in_channels=1, out_channels=6, kernel_size=5, stride=1),
            nn.Tanh(),
            nn.AvgPool2d(kernel_size=2),
            nn.Conv2d(in_channels=6, out_channels=16, kernel_size=5, stride=1),
            nn.Tanh(),
            nn.AvgPool2d(kernel_size=2),
            nn.Conv2d(in_channels=16, out_channels=120, kernel_size=5, stride=1),
            nn.Tanh())
        self.classifier = nn.Sequential(
            nn.Linear(in_features=120, out_features=84),
            nn.Tanh(),
            nn.Linear(in_features=84, out_features=n_classes))

    def forward(self, x):
        x = self.feature_extractor(x)
        x = torch.flatten(x, 1)
        logits = self.classifier(x)
        probs = F.softmax(logits, dim=1)
        return logits, probs


class ArticleLeNet5Logits(ArticleLeNet5):
    """ArticleLeNet5 returning the logits only (same modules, same keys, same initialisation)."""

    def forward(self, x):
        return super().forward(x)[0]


class MLP(nn.Module):
    """Not a LeNet-5: Flatten, Linear(1024, 64), ReLU, Linear(64, 10) (bad/mlp.onnx)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x):
        return self.net(x)


# ---- Cases. ----

@dataclass
class Case:
    name: str
    seed: int
    description: str
    config: dict                        # family_from_config dict
    weights: str                        # file name
    weights_form: str
    build: Callable[[], nn.Module]      # the author's module (returning logits), float32, eval
    save: Callable[[nn.Module, Path], None]
    load: Callable[[Path], nn.Module]   # the weights file back into the author's class
    state_dict_at: str | None = None    # key of the state_dict inside the saved dict
    train: Callable[[nn.Module], dict] | None = None  # run after drawing the input
    onnx: list[str] = field(default_factory=list)

    @property
    def image(self) -> tuple[int, int, int]:
        return input_shape(self.config)


def cfg(num_classes=10, **kw) -> dict:
    out = {"num_classes": num_classes, **DEFAULT_CONFIG, **kw}
    assert tuple(out) == CONFIG_KEYS, out
    return out


def torch_load(path: Path):
    return torch.load(path, map_location="cpu", weights_only=True)


def loaded(module: nn.Module, state) -> nn.Module:
    module.load_state_dict(state, strict=True)
    return module.float().eval()


def save_state_dict(model: nn.Module, path: Path) -> None:
    torch.save(model.state_dict(), path)


def build_d2l() -> nn.Module:
    net = d2l_lenet()
    net.apply(d2l_init_weights)
    return net


CHECKPOINT_TRAIN = {"steps": 3, "batch": 8, "lr": 1e-3}
checkpoint_extra: dict = {}  # epoch, loss and optimizer of the training run, set by train_checkpoint


def train_checkpoint(model: nn.Module) -> dict:
    """3 Adam steps (lr 1e-3) of cross-entropy on random images and labels, drawn after the input."""
    n, lr = CHECKPOINT_TRAIN["batch"], CHECKPOINT_TRAIN["lr"]
    images = torch.rand(n, 1, 32, 32)
    labels = torch.randint(0, 10, (n,))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(CHECKPOINT_TRAIN["steps"]):
        optimizer.zero_grad()
        loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()
    model.eval()
    checkpoint_extra.update(epoch=CHECKPOINT_TRAIN["steps"], loss=float(loss.item()), optimizer=optimizer)
    return checkpoint_extra


def save_checkpoint(model: nn.Module, path: Path) -> None:
    # PyTorch's recipe "Saving and loading a general checkpoint in PyTorch".
    torch.save({
        "epoch": checkpoint_extra["epoch"],
        "model_state_dict": model.state_dict(),
        "optimizer_state_dict": checkpoint_extra["optimizer"].state_dict(),
        "loss": checkpoint_extra["loss"],
    }, path)


def save_cifar(model: nn.Module, path: Path) -> None:
    # kuangliu/pytorch-cifar main.py: net = torch.nn.DataParallel(net); state = {'net': net.state_dict(), ...}
    torch.save({"net": nn.DataParallel(model).state_dict(), "acc": 61.2, "epoch": 3}, path)


def strip_module(state: dict) -> dict:
    assert all(k.startswith("module.") for k in state), list(state)
    return {k[len("module."):]: v for k, v in state.items()}


CASES = [
    Case("tutorial_net", 101,
         "PyTorch's 60-minute blitz (\"Deep Learning with PyTorch: A 60 Minute Blitz\", section \"Neural "
         "Networks\") Net: conv1/conv2/fc1/fc2/fc3 attributes, F.relu and F.max_pool2d in forward, "
         "torch.flatten; saved as the blitz's CIFAR-10 tutorial does, torch.save(net.state_dict(), PATH).",
         cfg(activation="relu", pooling="max"), "net.pt", "state_dict",
         build=TutorialNet, save=save_state_dict, load=lambda p: loaded(TutorialNet(), torch_load(p)),
         onnx=["model.onnx", "model_dynamo.onnx"]),
    Case("d2l_sequential", 102,
         "d2l.ai (Dive into Deep Learning, chapter \"Convolutional Neural Networks (LeNet)\") LeNet: one "
         "nn.Sequential with sigmoid, average pooling and conv1 padding 2 for 28x28 Fashion-MNIST; "
         "Conv2d/Linear weights re-initialised with d2l's init_weights (nn.init.xavier_uniform_), biases "
         "PyTorch's default; keys are the Sequential's layer indices.",
         cfg(activation="sigmoid", padding=2), "d2l.pt", "state_dict",
         build=build_d2l, save=save_state_dict, load=lambda p: loaded(d2l_lenet(), torch_load(p)),
         onnx=["model.onnx"]),
    Case("features_classifier", 103,
         "tanh LeNet-5 with max pooling in torchvision's naming (as AlexNet/VGG): self.features = "
         "nn.Sequential(conv, tanh, max pool, conv, tanh, max pool), self.classifier = nn.Sequential of the "
         "three linear layers; a common shape in blog posts and course notebooks.",
         cfg(pooling="max"), "lenet.pt", "state_dict",
         build=FeaturesLeNet5, save=save_state_dict, load=lambda p: loaded(FeaturesLeNet5(), torch_load(p))),
    Case("checkpoint", 104,
         "The canonical LeNet5(10) of make_torch_fixtures.py (tanh, average pooling) after 3 Adam steps "
         "(lr 1e-3, cross-entropy, 8 random images and labels drawn after the input), saved with PyTorch's "
         "recipe \"Saving and loading a general checkpoint\": {epoch, model_state_dict, optimizer_state_dict, "
         "loss}; optimizer_state_dict holds Adam's exp_avg and exp_avg_sq, tensors of the weights' shapes. "
         "The references are of the model after the steps.",
         cfg(), "checkpoint.pt", "checkpoint model_state_dict",
         build=lambda: LeNet5(10), save=save_checkpoint, state_dict_at="model_state_dict",
         load=lambda p: loaded(LeNet5(10), torch_load(p)["model_state_dict"]), train=train_checkpoint),
    Case("cifar_net", 105,
         "kuangliu/pytorch-cifar's LeNet (models/lenet.py) for 3x32x32 CIFAR-10: F.relu, F.max_pool2d, "
         "out.view(out.size(0), -1); saved as that repository's main.py does, torch.save({'net': "
         "nn.DataParallel(net).state_dict(), 'acc': acc, 'epoch': epoch}, 'ckpt.pth'), so the keys are "
         "net -> module.conv1.weight, ...",
         cfg(activation="relu", pooling="max", in_channels=3), "ckpt.pth",
         "nested {'net': DataParallel state_dict}",
         build=CifarLeNet, save=save_cifar, state_dict_at="net",
         load=lambda p: loaded(CifarLeNet(), strip_module(torch_load(p)["net"])), onnx=["model.onnx"]),
    Case("conv_head", 106,
         "The widely copied \"Implementing Yann LeCun's LeNet-5 in PyTorch\" article's LeNet5: C5 as a third "
         "convolution Conv2d(16, 120, 5) in feature_extractor, tanh, average pooling, classifier Linear(120, "
         "84), Linear(84, n_classes), here n_classes = 7. Its forward returns (logits, softmax probs); the "
         "differentiated and exported module is a subclass whose forward returns the logits only (same "
         "modules and keys). Weights torch.save(model.state_dict()).",
         cfg(num_classes=7, conv3=True), "lenet5.pt", "state_dict",
         build=lambda: ArticleLeNet5Logits(7), save=save_state_dict,
         load=lambda p: loaded(ArticleLeNet5(7), torch_load(p)), onnx=["model_dynamo.onnx"]),
]

# name -> (seed, builder, why a LeNet-5 loader must refuse it)
BAD = {
    "mlp": (201, MLP, "no convolution at all: Flatten, Gemm, Relu, Gemm on a 1x32x32 input"),
    "softmax_head": (202, TutorialNetSoftmax,
                     "tutorial_net's Net followed by Softmax: it returns probabilities, not logits"),
}


# ---- Helpers. ----

def flags(config: dict) -> list[str]:
    """The Rust tool's flags for a config: only those differing from tanh / avg / padding 0.

    The class count, conv1's input channels and the third convolution come from the weights' shapes.
    """
    out = []
    for key in ("activation", "pooling", "padding"):
        if config[key] != DEFAULT_CONFIG[key]:
            out += [f"--{key}", str(config[key])]
    return out


def canonical_state(author: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """An author's state_dict under the canonical LeNet5's key names (same tensors, same order)."""
    keys = list(LeNet5(config["num_classes"], conv3=config["conv3"]).state_dict())
    values = list(author.values())
    assert len(keys) == len(values), (keys, list(author))
    return dict(zip(keys, values))


STACK_TRACE = "pkg.torch.onnx.stack_trace"


def export_onnx(model: nn.Module, x: torch.Tensor, path: Path) -> None:
    """model.onnx: TorchScript exporter, opset 17; model_dynamo.onnx: dynamo exporter, external data.

    The dynamo exporter records in every node's metadata "pkg.torch.onnx.stack_trace"
    the Python stack of the traced call, with absolute paths (this checkout, the venv)
    and line numbers of this script. Those values are emptied (the exporter's own value
    when a node has no stack trace) before saving, so the files do not depend on where
    the repository and the venv are. ``torch.onnx.export(model, (x,), f, dynamo=True,
    external_data=True)`` is exactly ``ONNXProgram.save(f, external_data=True)`` of the
    program that export returns without ``f``, which is what is done here.
    """
    for old in (path, path.with_name(path.name + ".data")):
        old.unlink(missing_ok=True)
    if path.stem.endswith("_dynamo"):
        batch = torch.export.Dim("batch")
        program = torch.onnx.export(model, (x,), dynamo=True, external_data=True, verbose=False,
                                    input_names=["input"], output_names=["logits"], dynamic_shapes=({0: batch},))
        for node in program.model.graph.all_nodes():
            if STACK_TRACE in node.metadata_props:
                node.metadata_props[STACK_TRACE] = ""
        program.save(str(path), external_data=True)
    else:
        torch.onnx.export(model, x, str(path), dynamo=False, opset_version=OPSET,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})


def check_onnx(path: Path, model: nn.Module) -> dict:
    """check_model, the graph's ops, the dynamic batch, the initializers against the state_dict."""
    import onnx
    from onnx import numpy_helper

    onnx.checker.check_model(str(path), full_check=True)
    for local in {str(REPO), sys.prefix, str(Path.home())}:
        assert local.encode() not in path.read_bytes(), f"{path} mentions the local path {local}"
    proto = onnx.load(str(path), load_external_data=False)
    external = {i.name for i in proto.graph.initializer if i.data_location == onnx.TensorProto.EXTERNAL}
    files = sorted({e.value for i in proto.graph.initializer for e in i.external_data if e.key == "location"})
    proto = onnx.load(str(path))  # with the external data
    ops = [n.op_type for n in proto.graph.node]
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))

    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert (inp.name, out.name) == ("input", "logits"), (inp.name, out.name)
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert isinstance(dims[0], str) and dims[0], f"{path}: input batch dimension is not symbolic: {dims}"

    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    for k, v in state.items():
        assert k in inits, f"{path}: no initializer {k!r} (initializers: {sorted(inits)})"
        a = inits[k]
        assert a.dtype == np.float32 and a.shape == v.shape and np.array_equal(a.view(np.uint32), v.view(np.uint32)), \
            f"{path}: initializer {k!r} differs from the state_dict"
    others = {k: (str(a.dtype), list(a.shape)) for k, a in inits.items() if k not in state}
    return {"ops": ops, "opset": opset, "external": sorted(external), "files": files, "others": others,
            "input": dims}


def check_jacobian(name: str, model: nn.Module, x: torch.Tensor, n_classes: int, image) -> tuple:
    full = jacobian_full(model, x)
    per_sample = per_sample_from_full(full)
    assert full.shape == (BATCH, n_classes, BATCH, *image), full.shape
    assert per_sample.shape == (BATCH, n_classes, *image), per_sample.shape
    blocks = full.reshape(BATCH, n_classes, BATCH, -1)
    for i in range(BATCH):
        for j in range(BATCH):
            if i != j:
                nz = torch.count_nonzero(blocks[i, :, j]).item()
                assert nz == 0, f"{name}: block ({i},{j}) of the full Jacobian has {nz} non-zeros"
    vj = jacobian_per_sample(model, x)
    scale = per_sample.abs().max().item()
    err = (vj - per_sample).abs().max().item()
    assert err <= 1e-5 * scale, f"{name}: vmap(jacrev) differs from the full Jacobian by {err} (max |J| {scale})"
    return full, per_sample, scale, err


def tensor_keys(obj, prefix="") -> list[str]:
    """Paths ("a/b/c") of every tensor in a nested dict / list."""
    if isinstance(obj, torch.Tensor):
        return [prefix]
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in tensor_keys(v, f"{prefix}/{k}" if prefix else str(k))]
    if isinstance(obj, (list, tuple)):
        return [p for i, v in enumerate(obj) for p in tensor_keys(v, f"{prefix}/{i}" if prefix else str(i))]
    return []


def case_json(data: dict) -> str:
    """JSON with one top-level key a line and short values (lists, small dicts) kept on it."""
    lines = []
    for k, v in data.items():
        if isinstance(v, dict) and v and any(isinstance(x, (list, dict)) for x in v.values()):
            inner = [f"    {json.dumps(a)}: {json.dumps(b)}" for a, b in v.items()]
            lines.append(f"  {json.dumps(k)}: {{\n" + ",\n".join(inner) + "\n  }")
        else:
            lines.append(f"  {json.dumps(k)}: {json.dumps(v)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def summarize_onnx(path: Path, info: dict) -> None:
    data = f", external data {info['files']} ({len(info['external'])} initializers)" if info["files"] else \
        ", no external data"
    print(f"  {path.name}: opset {info['opset']}, input {info['input']}{data}")
    print(f"    ops: {', '.join(info['ops'])}")
    if info["others"]:
        print(f"    initializers besides the weights: {info['others']}")


# ---- Writing. ----

def write_case(out: Path, case: Case) -> dict:
    d = out / case.name
    d.mkdir(parents=True, exist_ok=True)
    n_classes, image = case.config["num_classes"], case.image

    torch.manual_seed(case.seed)
    model = case.build().float().eval()
    x = torch.rand(BATCH, *image, dtype=torch.float32)
    if case.train is not None:
        case.train(model)
    model = model.float().eval()

    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (BATCH, n_classes), logits.shape
    full, per_sample, scale, err = check_jacobian(case.name, model, x, n_classes, image)

    case.save(model, d / case.weights)
    save_npy(d / "input.npy", x)
    save_npy(d / "logits.npy", logits)
    save_npy(d / "jacobian_full.npy", full)
    save_npy(d / "jacobian_per_sample.npy", per_sample)
    print(f"{case.name}: seed {case.seed}, input {list(x.shape)}, classes {n_classes}: "
          f"max |J| {scale:.6g}, max |logit| {logits.abs().max().item():.6g}, "
          f"off-diagonal blocks zero, vmap(jacrev) max diff {err:.3g}")

    onnx_info = {}
    for f in case.onnx:
        export_onnx(model, x, d / f)
        onnx_info[f] = check_onnx(d / f, model)
        summarize_onnx(d / f, onnx_info[f])

    saved = torch_load(d / case.weights)
    state = saved[case.state_dict_at] if case.state_dict_at else saved
    data = {
        "description": case.description,
        **case.config,
        "input_shape": [BATCH, *image],
        "seed": case.seed,
        "weights": case.weights,
        "weights_form": case.weights_form,
        "state_dict_at": case.state_dict_at,
        "top_level_keys": list(saved) if case.state_dict_at else None,
        "keys": list(state),
        "other_tensors": [k for k in tensor_keys(saved) if not k.startswith(f"{case.state_dict_at}/")]
        if case.state_dict_at else [],
        "flags": flags(case.config),
        "onnx": case.onnx,
        "onnx_ops": {f: i["ops"] for f, i in onnx_info.items()},
        "onnx_opset": {f: i["opset"] for f, i in onnx_info.items()},
        "onnx_external_data": {f: (i["files"] or [None])[0] for f, i in onnx_info.items()},
    }
    (d / "case.json").write_text(case_json(data))
    return data


def write_bad(out: Path) -> dict:
    d = out / "bad"
    d.mkdir(parents=True, exist_ok=True)
    infos = {}
    for name, (seed, build, why) in BAD.items():
        torch.manual_seed(seed)
        model = build().float().eval()
        x = torch.rand(BATCH, 1, 32, 32, dtype=torch.float32)
        path = d / f"{name}.onnx"
        export_onnx(model, x, path)
        infos[name] = check_onnx(path, model)
        print(f"bad/{name}.onnx: seed {seed}; refuse: {why}")
        summarize_onnx(path, infos[name])
    return infos


# ---- Reading back. ----

def check_case(out: Path, case: Case) -> None:
    d = out / case.name
    data = json.loads((d / "case.json").read_text())
    config = {k: data[k] for k in CONFIG_KEYS}
    assert config == case.config, (config, case.config)
    x = torch.from_numpy(np.load(d / "input.npy"))
    logits = np.load(d / "logits.npy")
    full = np.load(d / "jacobian_full.npy")
    per_sample = np.load(d / "jacobian_per_sample.npy")
    for a, shape in [(x.numpy(), data["input_shape"]), (logits, [BATCH, config["num_classes"]]),
                     (full, [BATCH, config["num_classes"], *data["input_shape"]]),
                     (per_sample, [BATCH, config["num_classes"], *data["input_shape"][1:]])]:
        assert a.dtype == np.float32 and list(a.shape) == shape and a.flags.c_contiguous, (a.dtype, a.shape, shape)
    assert np.array_equal(per_sample, per_sample_from_full(torch.from_numpy(full)).numpy())

    # The author's class, weights_only=True.
    author = case.load(d / data["weights"])
    with torch.no_grad():
        out_author = author(x)
    if isinstance(out_author, tuple):  # the article's (logits, probs)
        out_author = out_author[0]
    assert np.array_equal(out_author.numpy(), logits), f"{case.name}: reloaded logits differ"

    # The canonical module of the case's config.
    canonical = family_from_config(config)
    canonical.load_state_dict(canonical_state(author.state_dict(), config), strict=True)
    canonical = canonical.float().eval()
    with torch.no_grad():
        out_canonical = canonical(x).numpy()
    dl = float(np.abs(out_canonical - logits).max())
    jc = jacobian_full(canonical, x).numpy()
    dj = float(np.abs(jc - full).max())
    assert dl <= 1e-6 * np.abs(logits).max() and dj <= 1e-6 * np.abs(full).max(), (case.name, dl, dj)
    print(f"{case.name}: {data['weights']} (weights_only=True) into {type(author).__name__}: logits.npy exactly; "
          f"family_from_config: logits max diff {dl:.3g}, Jacobian max diff {dj:.3g}; flags {data['flags']}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "family",
                   help="output directory (default: tests/fixtures/family)")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
    warnings.filterwarnings("ignore", message="The feature will be removed.*")
    # The dynamo exporter logs a warning for each torchvision operator it cannot register.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)

    import onnx
    import onnx_ir
    import onnxscript

    torch.set_default_dtype(torch.float32)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    for case in CASES:
        write_case(out, case)
    write_bad(out)
    for case in CASES:
        check_case(out, case)

    (out / "VERSIONS.txt").write_text(
        versions_text(command_line())
        + f"onnx {onnx.__version__}\nonnxscript {onnxscript.__version__}\nonnx_ir {onnx_ir.__version__}\n")
    total = 0
    for f in sorted(out.rglob("*")):
        if f.is_file():
            total += f.stat().st_size
            print(f"  {str(f.relative_to(out)):42s} {f.stat().st_size:>8d} B")
    print(f"wrote {out} ({total / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
