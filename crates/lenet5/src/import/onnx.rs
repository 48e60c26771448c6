//! ONNX exports (`torch.onnx.export`, either exporter): the graph states the architecture, so
//! it is read from the graph, not from the weights' names, which do not matter.
//!
//! The file is parsed by Burn's `onnx-ir` (external data in a `.onnx.data` file beside it
//! included), then walked from its one input to its one output along the chain LeNet-5 is:
//!
//! `Conv(channels -> 6, 5 x 5, symmetric pads p)`, activation, pooling, `Conv(6 -> 16, 5 x 5)`,
//! activation, pooling, optionally `Conv(16 -> 120, 5 x 5)` and activation (fc1 written as a
//! convolution), the flattening (`Flatten` or a `Reshape` to `[batch, features]`, its target
//! shape possibly computed from `Shape`), the linear layers (`Gemm`, or `MatMul` and `Add`)
//! with the activation between them, and the logits as the output.
//!
//! One activation (tanh, relu, sigmoid) throughout, and one 2 x 2, stride-2 pooling (max or
//! average, unpadded) throughout. Max pooling may come before the activation: it commutes with
//! every increasing activation, so the network is the same. `Identity` and inference `Dropout`
//! are skipped. Anything else is refused, naming the first node that does not fit; a softmax
//! at the end with the hint to export the logits, which is what is differentiated.
//!
//! What onnx-ir does that is undone here: it names nodes after their kind and count
//! (`conv2d1`, `linear2`) and drops the file's initializer names, so messages name onnx-ir's
//! nodes by the file's op types; it fuses a `Gemm` with alpha = beta = transB = 1 into a
//! `Linear` with the weight kept `[out, in]`, and `MatMul` + `Add` into a `Linear` with the
//! weight `[in, out]`, which is transposed here (as is a `Gemm` weight with transB = 0) to
//! PyTorch's `[out, in]`, the layout [`load`](super::load) expects of every format but Burn's.
//! It reads external data only when a tensor is first asked for, and panics when it cannot:
//! every call into it is guarded.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use burn::module::ParamId;
use burn::tensor::TensorData;
use burn_store::TensorSnapshot;
use onnx_ir::node::padding::{AutoPad, PaddingConfig2d};
use onnx_ir::node::reshape::ReshapeInput;
use onnx_ir::{Argument, Node, OnnxGraph, OnnxGraphBuilder, TensorDataExt};

use super::{catch_panic, Found, ImportError, ImportNote, Origin, WeightsFormat};
use crate::model::config::{
    CONV1_CHANNELS, CONV2_CHANNELS, FC1_UNITS, FC2_UNITS, FLAT_FEATURES, KERNEL_SIZE, MAX_PADDING,
    PADDED_SIZE, POOL_SIZE,
};
use crate::{Activation, LeNet5Config, Pooling};

/// Reads the LeNet-5 an ONNX file's graph is, with its weights in PyTorch's layout.
pub(super) fn read(path: &Path) -> Result<Found, ImportError> {
    let graph = parse(path)?;
    Walk::new(path, &graph)?.lenet5()
}

fn parse(path: &Path) -> Result<OnnxGraph, ImportError> {
    let message = match catch_panic(|| OnnxGraphBuilder::new().parse_file(path)) {
        Ok(Ok(graph)) => return Ok(graph),
        Ok(Err(onnx_ir::Error::InvalidFormat { error, .. })) => {
            format!("truncated or corrupt, or not an ONNX model ({error})")
        }
        Ok(Err(onnx_ir::Error::Io { error, .. })) => error.to_string(),
        Ok(Err(e)) => format!("onnx-ir cannot process its graph: {e}"),
        Err(panic) => explain_panic(path, &panic),
    };
    Err(read_error(path, &message))
}

fn read_error(path: &Path, message: &str) -> ImportError {
    ImportError::Read {
        path: path.to_path_buf(),
        format: WeightsFormat::Onnx,
        message: message.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

/// A panic of onnx-ir in the user's terms: mostly external data it could not open.
fn explain_panic(path: &Path, panic: &str) -> String {
    let data = panic
        .split_once("external data file '")
        .and_then(|(_, rest)| rest.split_once('\''))
        .map(|(data, _)| Path::new(data));
    match data {
        Some(data) if !data.exists() => {
            let dir = path.parent().unwrap_or(Path::new(""));
            format!(
                "its weights are in {} beside it, which is missing",
                data.strip_prefix(dir).unwrap_or(data).display()
            )
        }
        _ => format!("onnx-ir failed on it: {panic}"),
    }
}

/// The walk along the graph, from its input to its output, and what it has found.
struct Walk<'a> {
    path: &'a Path,
    graph: &'a OnnxGraph,
    input: &'a Argument,
    output: &'a Argument,
    /// The tensor reached, by onnx-ir's name of it.
    at: String,
    /// The node that computed it; `None` for the graph's input.
    last: Option<&'a Node>,
    activation: Option<Activation>,
    pooling: Option<Pooling>,
    snapshots: Vec<TensorSnapshot>,
    file_keys: BTreeMap<String, String>,
    notes: Vec<ImportNote>,
}

/// A dimension of a `Reshape`'s target shape, as far as it can be told without running it.
#[derive(Clone, Copy, PartialEq)]
enum Dim {
    Batch,
    Unknown,
    Value(i64),
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Batch => f.write_str("batch"),
            Dim::Unknown => f.write_str("?"),
            Dim::Value(v) => write!(f, "{v}"),
        }
    }
}

impl<'a> Walk<'a> {
    fn new(path: &'a Path, graph: &'a OnnxGraph) -> Result<Self, ImportError> {
        let ([input], [output]) = (graph.inputs.as_slice(), graph.outputs.as_slice()) else {
            return Err(ImportError::NotLeNet5 {
                path: path.to_path_buf(),
                details: format!(
                    "the graph has {} input(s) and {} output(s), expected one of each (the \
                     images, the logits)",
                    graph.inputs.len(),
                    graph.outputs.len()
                ),
            });
        };
        Ok(Walk {
            path,
            graph,
            input,
            output,
            at: input.name.clone(),
            last: None,
            activation: None,
            pooling: None,
            snapshots: Vec::new(),
            file_keys: BTreeMap::new(),
            notes: Vec::new(),
        })
    }

    fn lenet5(mut self) -> Result<Found, ImportError> {
        let (in_channels, padding) = self.conv("conv1", None, CONV1_CHANNELS, true)?;
        self.check_input(in_channels, padding)?;
        let (activation, pooling) = self.activation_and_pooling("conv1")?;
        self.conv("conv2", Some(CONV1_CHANNELS), CONV2_CHANNELS, false)?;
        self.activation_and_pooling("conv2")?;
        let conv3 = matches!(self.peek()?, Some((Node::Conv2d(_), _)));
        if conv3 {
            self.conv("fc1", Some(CONV2_CHANNELS), FC1_UNITS, false)?;
            self.activation("fc1")?;
            self.flatten(FC1_UNITS)?;
        } else {
            self.flatten(FLAT_FEATURES)?;
            self.linear("fc1", FLAT_FEATURES, Some(FC1_UNITS))?;
            self.activation("fc1")?;
        }
        self.linear("fc2", FC1_UNITS, Some(FC2_UNITS))?;
        self.activation("fc2")?;
        let num_classes = self.linear("fc3", FC2_UNITS, None)?;
        self.end()?;
        Ok(Found {
            snapshots: self.snapshots,
            file_keys: self.file_keys,
            config: LeNet5Config::new()
                .with_num_classes(num_classes)
                .with_in_channels(in_channels)
                .with_activation(activation)
                .with_pooling(pooling)
                .with_padding(padding)
                .with_conv3(conv3),
            recorded: Some(Origin::Graph),
            notes: self.notes,
        })
    }

    /// The next node along the chain (`Identity` and inference `Dropout` skipped) and the
    /// tensor reached after it; `None` at the graph's output.
    fn peek(&self) -> Result<Option<(&'a Node, String)>, ImportError> {
        let mut at = self.at.clone();
        let mut last = self.last;
        loop {
            if at == self.output.name {
                return Ok(None);
            }
            // The Shape nodes reading a tensor feed a Reshape's target shape, which
            // `flatten` follows.
            let consumers: Vec<&Node> = self
                .graph
                .nodes
                .iter()
                .filter(|n| !matches!(n, Node::Shape(_)))
                .filter(|n| n.inputs().iter().any(|a| a.is_dynamic() && a.name == at))
                .collect();
            let from = last.map_or(format!("the input '{}'", self.input.name), describe);
            let node = match consumers[..] {
                [node] => node,
                [] => return Err(self.refuse(format!("nothing uses the output of {from}"))),
                _ => {
                    let names: Vec<String> = consumers.iter().map(|n| describe(n)).collect();
                    return Err(self.refuse(format!(
                        "the output of {from} feeds {} nodes ({}): LeNet-5 is one chain of layers",
                        consumers.len(),
                        names.join(", ")
                    )));
                }
            };
            let reshape = matches!(node, Node::Reshape(_));
            let other = node
                .inputs()
                .iter()
                .enumerate()
                .find(|&(i, a)| a.is_dynamic() && a.name != at && !(reshape && i == 1));
            if let Some((_, other)) = other {
                return Err(self.misfit(
                    Some(node),
                    &format!(
                        "it also takes '{}', computed elsewhere in the graph: LeNet-5 is one \
                         chain of layers",
                        other.name
                    ),
                ));
            }
            let Some(out) = node.outputs().first() else {
                return Err(self.misfit(Some(node), "it has no output"));
            };
            at = out.name.clone();
            last = Some(node);
            if !skipped(node) {
                return Ok(Some((node, at)));
            }
        }
    }

    fn next(&mut self) -> Result<Option<&'a Node>, ImportError> {
        let next = self.peek()?;
        if let Some((node, at)) = &next {
            self.at.clone_from(at);
            self.last = Some(node);
        }
        Ok(next.map(|(node, _)| node))
    }

    fn refuse(&self, details: String) -> ImportError {
        ImportError::NotLeNet5 {
            path: self.path.to_path_buf(),
            details,
        }
    }

    /// `node` (or the graph's end, when `None`) is not what LeNet-5 has there.
    fn misfit(&self, node: Option<&Node>, what: &str) -> ImportError {
        self.refuse(match node {
            Some(node) => format!("{}: {what}", describe(node)),
            // onnx-ir renames the output: its name in the file is gone.
            None => format!("the graph ends: {what}"),
        })
    }

    /// A node's input stored in the file (an initializer or a constant); `None` when it is
    /// absent or computed.
    fn stored(&self, node: &Node, index: usize) -> Result<Option<TensorData>, ImportError> {
        let Some(arg) = node.inputs().get(index) else {
            return Ok(None);
        };
        if arg.is_dynamic() || arg.is_optional() {
            return Ok(None);
        }
        let data = catch_panic(|| arg.value())
            .map_err(|panic| read_error(self.path, &explain_panic(self.path, &panic)))?;
        if let Some(data) = &data {
            // Transposing and reshaping go by bytes: a corrupt tensor must not reach them.
            let needed = data.num_elements() * data.dtype.size();
            if data.as_bytes().len() != needed {
                return Err(read_error(
                    self.path,
                    &format!(
                        "input {index} of {} holds {} bytes, its shape {:?} needs {needed}",
                        describe(node),
                        data.as_bytes().len(),
                        data.shape.to_vec()
                    ),
                ));
            }
        }
        Ok(data)
    }

    /// Keeps `data` as the model's parameter `param` (`conv1.weight`, ...).
    fn keep(&mut self, param: &str, data: TensorData, node: &Node, index: usize) {
        let stack = param.split('.').map(str::to_string).collect();
        self.snapshots.push(TensorSnapshot::from_data(
            data,
            stack,
            Vec::new(),
            ParamId::new(),
        ));
        // onnx-ir drops the initializers' names: the node and input say where it is.
        self.file_keys.insert(
            param.to_string(),
            format!("{} input {index}", describe(node)),
        );
    }

    /// A convolution of LeNet-5: returns its input channels and its padding. Stored as
    /// `layer`; fc1 written as a convolution is kept as the linear layer it is.
    fn conv(
        &mut self,
        layer: &str,
        in_channels: Option<usize>,
        out: usize,
        padded: bool,
    ) -> Result<(usize, usize), ImportError> {
        let k = KERNEL_SIZE;
        let expected = format!(
            "expected {layer}, a Conv({} -> {out}, {k} x {k}, stride 1, {})",
            in_channels.map_or("channels".into(), |c| c.to_string()),
            if padded { "symmetric pads" } else { "no pads" }
        );
        let node = self.next()?;
        let Some(node @ Node::Conv2d(conv)) = node else {
            return Err(self.misfit(node, &expected));
        };
        let c = &conv.config;
        let weight = self.stored(node, 1)?;
        let bias = self.stored(node, 2)?;
        let (top, left, bottom, right) = c.padding.as_tuple();
        let channels = match weight.as_ref().map(|w| w.shape.to_vec()).as_deref() {
            Some(&[o, i, kh, kw])
                if o == out && in_channels.is_none_or(|e| e == i) && [kh, kw] == [k, k] =>
            {
                Some(i)
            }
            _ => None,
        };
        let fits = c.kernel_size == [k, k]
            && c.stride == [1, 1]
            && c.dilation == [1, 1]
            && c.groups == 1
            && matches!(c.auto_pad, AutoPad::NotSet | AutoPad::Valid)
            && [left, bottom, right].iter().all(|&p| p == top)
            && top <= if padded { MAX_PADDING } else { 0 }
            && bias.as_ref().is_some_and(|b| b.shape.to_vec() == [out]);
        let (Some(channels), Some(weight), Some(bias), true) = (channels, &weight, &bias, fits)
        else {
            let auto_pad = match c.auto_pad {
                AutoPad::NotSet => String::new(),
                ref other => format!(", auto_pad {other}"),
            };
            return Err(self.misfit(
                Some(node),
                &format!(
                    "{expected}; it has weight {}, bias {}, stride {:?}, pads {:?}, dilation \
                     {:?}, group {}{auto_pad}",
                    shape_text(&weight),
                    shape_text(&bias),
                    c.stride,
                    [top, left, bottom, right],
                    c.dilation,
                    c.groups
                ),
            ));
        };
        let weight = if layer == "fc1" {
            reshaped(weight, vec![FC1_UNITS, FLAT_FEATURES])
        } else {
            weight.clone()
        };
        self.keep(&format!("{layer}.weight"), weight, node, 1);
        self.keep(&format!("{layer}.bias"), bias.clone(), node, 2);
        Ok((channels, top))
    }

    /// The graph's input must be what conv1 takes, as far as its shape is stated.
    fn check_input(&self, in_channels: usize, padding: usize) -> Result<(), ImportError> {
        let side = PADDED_SIZE - 2 * padding;
        let fits = match self.input.ty.static_shape() {
            Some(dims) => {
                dims.len() == 4
                    && dims[1].is_none_or(|c| c == in_channels)
                    && dims[2..].iter().all(|s| s.is_none_or(|s| s == side))
            }
            None => true,
        };
        if fits {
            return Ok(());
        }
        Err(self.refuse(format!(
            "the input '{}' is {}, but conv1 (padding {padding}) takes {in_channels} x {side} x \
             {side} images (the side is 32 - 2 x padding)",
            self.input.name, self.input.ty
        )))
    }

    /// The activation and the pooling after a convolution, the pooling possibly first when
    /// it is max pooling.
    fn activation_and_pooling(
        &mut self,
        after: &str,
    ) -> Result<(Activation, Pooling), ImportError> {
        let node = self.next()?;
        if !matches!(node, Some(Node::MaxPool2d(_) | Node::AveragePool2d(_))) {
            let activation = self.check_activation(node, after)?;
            let node = self.next()?;
            return Ok((activation, self.check_pooling(node, after)?));
        }
        if matches!(node, Some(Node::AveragePool2d(_))) {
            return Err(self.misfit(
                node,
                &format!(
                    "expected the activation after {after}: LeNet-5 averages the activation's \
                     output; averaging before the activation is another network (only max \
                     pooling commutes with it)"
                ),
            ));
        }
        let pooling = self.check_pooling(node, after)?;
        let activation = self.activation(after)?;
        if !self.notes.iter().any(|n| matches!(n, ImportNote::Graph(_))) {
            self.notes.push(ImportNote::Graph(format!(
                "the graph max-pools before the activation (after {after}): the same network as \
                 activation then pooling, which the model computes (max pooling commutes with \
                 every increasing activation)"
            )));
        }
        Ok((activation, pooling))
    }

    fn activation(&mut self, after: &str) -> Result<Activation, ImportError> {
        let node = self.next()?;
        self.check_activation(node, after)
    }

    fn check_activation(
        &mut self,
        node: Option<&Node>,
        after: &str,
    ) -> Result<Activation, ImportError> {
        let found = match node {
            Some(Node::Tanh(_)) => Some(Activation::Tanh),
            Some(Node::Relu(_)) => Some(Activation::Relu),
            Some(Node::Sigmoid(_)) => Some(Activation::Sigmoid),
            _ => None,
        };
        match (found, self.activation) {
            (Some(found), None) => {
                self.activation = Some(found);
                Ok(found)
            }
            (Some(found), Some(before)) if found == before => Ok(found),
            (_, Some(before)) => Err(self.misfit(
                node,
                &format!(
                    "expected the {before} activation after {after}, as after the layers before \
                     it (LeNet-5 has one activation throughout)"
                ),
            )),
            (None, None) => Err(self.misfit(
                node,
                &format!("expected the activation after {after} (Tanh, Relu or Sigmoid)"),
            )),
        }
    }

    fn check_pooling(&mut self, node: Option<&Node>, after: &str) -> Result<Pooling, ImportError> {
        let expected = format!(
            "expected the pooling after {after}, a {POOL_SIZE} x {POOL_SIZE} MaxPool or \
             AveragePool of stride {POOL_SIZE}, without pads or ceil_mode"
        );
        let (found, window) = match node {
            Some(Node::MaxPool2d(p)) => {
                let c = &p.config;
                let window = window(
                    c.kernel_size,
                    c.strides,
                    &c.padding,
                    c.dilation,
                    c.ceil_mode,
                    &c.auto_pad,
                );
                (Pooling::Max, window)
            }
            Some(Node::AveragePool2d(p)) => {
                let c = &p.config;
                // Without pads, count_include_pad changes nothing.
                let window = window(
                    c.kernel_size,
                    c.strides,
                    &c.padding,
                    c.dilation,
                    c.ceil_mode,
                    &c.auto_pad,
                );
                (Pooling::Avg, window)
            }
            _ => return Err(self.misfit(node, &expected)),
        };
        if let Err(window) = window {
            return Err(self.misfit(node, &format!("{expected}; it has {window}")));
        }
        match self.pooling {
            Some(before) if before != found => Err(self.misfit(
                node,
                &format!(
                    "expected {before} pooling after {after}, as after conv1 (LeNet-5 has one \
                     pooling throughout)"
                ),
            )),
            _ => {
                self.pooling = Some(found);
                Ok(found)
            }
        }
    }

    /// The flattening of each sample to `features` values.
    fn flatten(&mut self, features: usize) -> Result<(), ImportError> {
        let expected = format!(
            "expected the flattening to [batch, {features}] (Flatten with axis 1, or Reshape)"
        );
        let node = self.next()?;
        match node {
            Some(Node::Flatten(f)) if f.config.axis == 1 => Ok(()),
            Some(reshape @ Node::Reshape(r)) => {
                let target = match &r.config.shape {
                    ReshapeInput::Static(shape) => {
                        Some(shape.iter().map(|&d| Dim::Value(d)).collect())
                    }
                    ReshapeInput::Runtime(input) => reshape
                        .inputs()
                        .get(input.input_index)
                        .and_then(|a| self.dims(a)),
                };
                let Some(target) = target else {
                    return Err(self.misfit(
                        node,
                        &format!(
                            "{expected}; its target shape is computed in a way not followed here"
                        ),
                    ));
                };
                if self.per_sample(&target, features) {
                    return Ok(());
                }
                let target: Vec<String> = target.iter().map(Dim::to_string).collect();
                Err(self.misfit(
                    node,
                    &format!("{expected}; it reshapes to [{}]", target.join(", ")),
                ))
            }
            _ => Err(self.misfit(node, &expected)),
        }
    }

    /// Whether a `Reshape` to `target` keeps the batch and flattens each sample.
    fn per_sample(&self, target: &[Dim], features: usize) -> bool {
        // An export of a fixed batch states it (`view(x.size(0), -1)` folded to `[2, -1]`).
        let batch = self
            .input
            .ty
            .static_shape()
            .and_then(|dims| dims.first().copied().flatten());
        let is_batch = |d: Dim| {
            d == Dim::Batch || matches!(d, Dim::Value(n) if n > 0 && Some(n as usize) == batch)
        };
        let features = Dim::Value(features as i64);
        match *target {
            [first, second] => {
                (is_batch(first) && (second == features || second == Dim::Value(-1)))
                    || (first == Dim::Value(-1) && second == features)
            }
            _ => false,
        }
    }

    /// The values of a shape computed in the graph (from `Shape`, `Gather`, `Unsqueeze`,
    /// `Concat` and constants, as `view(x.size(0), -1)` exports), or `None`.
    fn dims(&self, arg: &Argument) -> Option<Vec<Dim>> {
        if !arg.is_dynamic() {
            let values = catch_panic(|| arg.value()).ok()??.to_i64_vec().ok()?;
            return Some(values.into_iter().map(Dim::Value).collect());
        }
        let node = self
            .graph
            .nodes
            .iter()
            .find(|n| n.outputs().iter().any(|o| o.name == arg.name))?;
        match node {
            // Every tensor of the chain has the batch first.
            Node::Shape(s) => Some(
                (s.config.start..s.config.end)
                    .map(|i| if i == 0 { Dim::Batch } else { Dim::Unknown })
                    .collect(),
            ),
            Node::Gather(g) if g.config.axis == 0 => {
                let data = self.dims(g.inputs.first()?)?;
                let indices = self.dims(g.inputs.get(1)?)?;
                indices
                    .into_iter()
                    .map(|i| match i {
                        Dim::Value(i) => {
                            let i = if i < 0 { i + data.len() as i64 } else { i };
                            data.get(usize::try_from(i).ok()?).copied()
                        }
                        _ => None,
                    })
                    .collect()
            }
            Node::Unsqueeze(u) => self.dims(u.inputs.first()?),
            Node::Concat(c) if c.config.axis == 0 => {
                let parts: Option<Vec<Vec<Dim>>> = c.inputs.iter().map(|a| self.dims(a)).collect();
                Some(parts?.concat())
            }
            _ => None,
        }
    }

    /// A linear layer `inputs -> outputs` (any number of classes when `None`): returns its
    /// outputs.
    fn linear(
        &mut self,
        layer: &str,
        inputs: usize,
        outputs: Option<usize>,
    ) -> Result<usize, ImportError> {
        let expected = format!(
            "expected {layer}, a linear layer {inputs} -> {} (Gemm, or MatMul and Add)",
            outputs.map_or("classes".into(), |o| o.to_string())
        );
        let node = self.next()?;
        // The weight's node, the bias's node and input, and whether the weight is [in, out].
        let (weight_node, bias_node, bias_index, in_out) = match node {
            Some(n @ Node::Linear(l)) => (n, n, 2, !l.config.transpose_weight),
            Some(n @ Node::Gemm(g)) => {
                let c = &g.config;
                if c.alpha != 1.0 || c.beta != 1.0 || c.trans_a != 0 {
                    return Err(self.misfit(
                        node,
                        &format!(
                            "{expected}; it has alpha {}, beta {}, transA {} (a linear layer has \
                             1, 1, 0)",
                            c.alpha, c.beta, c.trans_a
                        ),
                    ));
                }
                (n, n, 2, c.trans_b == 0)
            }
            Some(n @ Node::MatMul(_)) => {
                let add = self.next()?;
                let Some(add @ Node::Add(_)) = add else {
                    return Err(self.misfit(
                        add,
                        &format!("expected the Add of {layer}'s bias after its MatMul"),
                    ));
                };
                let index = if self.stored(add, 1)?.is_some() { 1 } else { 0 };
                (n, add, index, true)
            }
            _ => return Err(self.misfit(node, &expected)),
        };
        let weight = self.stored(weight_node, 1)?;
        let bias = self.stored(bias_node, bias_index)?;
        let weight = match weight {
            Some(w) if in_out && w.shape.to_vec().len() == 2 => Some(transposed(&w)),
            w => w,
        };
        let out = match weight.as_ref().map(|w| w.shape.to_vec()).as_deref() {
            Some(&[o, i]) if i == inputs && outputs.is_none_or(|e| e == o) && o > 0 => Some(o),
            _ => None,
        };
        // A Gemm's bias may be [1, out]; as many values either way.
        let bias_fits = |b: &TensorData| {
            let shape = b.shape.to_vec();
            shape.iter().product::<usize>() == out.unwrap_or(0)
                && shape.iter().rev().skip(1).all(|&d| d == 1)
        };
        let (Some(out), Some(weight), Some(bias)) =
            (out, &weight, bias.as_ref().filter(|b| bias_fits(b)))
        else {
            return Err(self.misfit(
                Some(weight_node),
                &format!(
                    "{expected}; it has weight {} (as [out, in]), bias {}",
                    shape_text(&weight),
                    shape_text(&bias)
                ),
            ));
        };
        self.keep(&format!("{layer}.weight"), weight.clone(), weight_node, 1);
        self.keep(
            &format!("{layer}.bias"),
            reshaped(bias, vec![out]),
            bias_node,
            bias_index,
        );
        Ok(out)
    }

    /// The logits must be the graph's output.
    fn end(&mut self) -> Result<(), ImportError> {
        let node = self.next()?;
        match node {
            None => Ok(()),
            Some(Node::Softmax(_) | Node::LogSoftmax(_)) => Err(self.misfit(
                node,
                "the graph returns probabilities, not logits: this tool differentiates the \
                 logits, export the model without its softmax",
            )),
            Some(_) => Err(self.misfit(node, "expected the graph's output, the logits of fc3")),
        }
    }
}

/// Whether a node does nothing at inference.
fn skipped(node: &Node) -> bool {
    match node {
        Node::Identity(_) => true,
        // Its third input is training_mode: absent, or stored false, at inference.
        Node::Dropout(_) => match node.inputs().get(2).filter(|a| !a.is_optional()) {
            None => true,
            Some(mode) => {
                !mode.is_dynamic()
                    && catch_panic(|| mode.value())
                        .ok()
                        .flatten()
                        .is_some_and(|m| m.as_bytes().iter().all(|&b| b == 0))
            }
        },
        _ => false,
    }
}

/// Whether a pooling window is LeNet-5's; else what it is instead.
fn window(
    kernel: [usize; 2],
    strides: [usize; 2],
    padding: &PaddingConfig2d,
    dilation: [usize; 2],
    ceil_mode: bool,
    auto_pad: &AutoPad,
) -> Result<(), String> {
    let p = [POOL_SIZE, POOL_SIZE];
    if kernel == p
        && strides == p
        && *padding == PaddingConfig2d::Valid
        && dilation == [1, 1]
        && !ceil_mode
        && matches!(auto_pad, AutoPad::NotSet | AutoPad::Valid)
    {
        return Ok(());
    }
    Err(format!(
        "kernel {kernel:?}, strides {strides:?}, pads {padding}, dilation {dilation:?}, ceil_mode \
         {}, auto_pad {auto_pad}",
        u8::from(ceil_mode)
    ))
}

/// A node as messages name it: the file's op type and onnx-ir's name (`Gemm 'linear1'`).
fn describe(node: &Node) -> String {
    let op = match node {
        Node::Conv2d(_) => "Conv".to_string(),
        Node::MaxPool2d(_) => "MaxPool".to_string(),
        Node::AveragePool2d(_) => "AveragePool".to_string(),
        Node::Linear(l) if l.config.transpose_weight => "Gemm".to_string(),
        Node::Linear(_) => "MatMul+Add".to_string(),
        // Elsewhere onnx-ir's variant is the op type, and its Debug starts with it.
        other => format!("{other:?}")
            .split('(')
            .next()
            .unwrap_or_default()
            .to_string(),
    };
    format!("{op} '{}'", node.name())
}

fn shape_text(data: &Option<TensorData>) -> String {
    data.as_ref()
        .map_or("none stored".into(), |d| format!("{:?}", d.shape.to_vec()))
}

/// The same values, row-major, in another shape of as many.
fn reshaped(data: &TensorData, shape: Vec<usize>) -> TensorData {
    let dtype = data.dtype;
    TensorData::from_bytes_vec(data.as_bytes().to_vec(), shape, dtype)
}

/// A matrix transposed, element by element whatever its dtype.
fn transposed(data: &TensorData) -> TensorData {
    let (dims, size) = (data.shape.to_vec(), data.dtype.size());
    let (rows, cols) = (dims[0], dims[1]);
    let bytes = data.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    for c in 0..cols {
        for r in 0..rows {
            let at = (r * cols + c) * size;
            out.extend_from_slice(&bytes[at..at + size]);
        }
    }
    TensorData::from_bytes_vec(out, [cols, rows], data.dtype)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use burn::backend::NdArray;
    use burn::config::Config;
    use burn::module::Param;
    use burn::tensor::backend::Backend;
    use burn::tensor::Tensor;

    use super::*;
    use crate::import::{load, ImportConfig};
    use crate::LeNet5;

    /// Each ONNX fixture, with the PyTorch weights file of its case (the same weights).
    const CASES: [(&str, &str, &str); 5] = [
        ("tutorial_net", "model.onnx", "net.pt"),
        ("tutorial_net", "model_dynamo.onnx", "net.pt"),
        ("d2l_sequential", "model.onnx", "d2l.pt"),
        ("cifar_net", "model.onnx", "ckpt.pth"),
        ("conv_head", "model_dynamo.onnx", "lenet5.pt"),
    ];

    fn family(path: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/family")
            .join(path)
    }

    /// A float32 `.npy` file (format version 1, C order): its shape and values.
    fn npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
        let bytes = std::fs::read(path).unwrap();
        assert_eq!((&bytes[..6], bytes[6]), (&b"\x93NUMPY"[..], 1));
        let end = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        let header = std::str::from_utf8(&bytes[10..end]).unwrap();
        assert!(header.contains("'<f4'") && header.contains("'fortran_order': False"));
        let shape = header
            .split_once("'shape': (")
            .unwrap()
            .1
            .split_once(')')
            .unwrap()
            .0;
        let shape = shape
            .split(',')
            .filter_map(|d| d.trim().parse().ok())
            .collect();
        let values = bytes[end..]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        (shape, values)
    }

    fn params<B: Backend>(model: &LeNet5<B>) -> Vec<TensorData> {
        let bias = |b: &Option<Param<Tensor<B, 1>>>| b.as_ref().unwrap().val().into_data();
        vec![
            model.conv1.weight.val().into_data(),
            bias(&model.conv1.bias),
            model.conv2.weight.val().into_data(),
            bias(&model.conv2.bias),
            model.fc1.weight.val().into_data(),
            bias(&model.fc1.bias),
            model.fc2.weight.val().into_data(),
            bias(&model.fc2.bias),
            model.fc3.weight.val().into_data(),
            bias(&model.fc3.bias),
        ]
    }

    fn shapes(found: &Found) -> BTreeMap<String, Vec<usize>> {
        found
            .snapshots
            .iter()
            .map(|s| (s.full_path(), s.shape.to_vec()))
            .collect()
    }

    #[test]
    fn each_fixture_is_its_case() {
        for (case, onnx, _) in CASES {
            let found = read(&family(&format!("{case}/{onnx}"))).unwrap();
            let expected = LeNet5Config::load(family(&format!("{case}/case.json"))).unwrap();
            assert_eq!(found.config, expected, "{case}/{onnx}");
            assert_eq!(found.recorded, Some(Origin::Graph));
            assert!(found.notes.is_empty(), "{case}/{onnx}: {:?}", found.notes);
            let (c, classes) = (expected.in_channels, expected.num_classes);
            let expected: BTreeMap<String, Vec<usize>> = [
                ("conv1.weight", vec![6, c, 5, 5]),
                ("conv1.bias", vec![6]),
                ("conv2.weight", vec![16, 6, 5, 5]),
                ("conv2.bias", vec![16]),
                ("fc1.weight", vec![120, 400]),
                ("fc1.bias", vec![120]),
                ("fc2.weight", vec![84, 120]),
                ("fc2.bias", vec![84]),
                ("fc3.weight", vec![classes, 84]),
                ("fc3.bias", vec![classes]),
            ]
            .into_iter()
            .map(|(path, shape)| (path.to_string(), shape))
            .collect();
            assert_eq!(shapes(&found), expected, "{case}/{onnx}");
            assert_eq!(found.file_keys.len(), 10);
        }
    }

    fn load_fixture(path: &str, stated: &ImportConfig) -> crate::import::Imported<NdArray> {
        load::<NdArray>(&family(path), stated, &Default::default()).unwrap()
    }

    #[test]
    fn each_fixture_loads_as_its_pytorch_weights() {
        for (case, onnx, pt) in CASES {
            let onnx = load_fixture(&format!("{case}/{onnx}"), &ImportConfig::new());
            let c = &onnx.architecture.config;
            assert_eq!(onnx.architecture.activation, Origin::Graph);
            let stated = ImportConfig::new()
                .with_activation(Some(c.activation))
                .with_pooling(Some(c.pooling))
                .with_padding(Some(c.padding));
            let pt = load_fixture(&format!("{case}/{pt}"), &stated);
            assert_eq!(pt.architecture.config, *c, "{case}");
            assert_eq!(params(&onnx.model), params(&pt.model), "{case}");
        }
    }

    #[test]
    fn each_fixture_gives_its_logits() {
        for (case, onnx, _) in CASES {
            let model = load_fixture(&format!("{case}/{onnx}"), &ImportConfig::new()).model;
            let (shape, input) = npy(&family(&format!("{case}/input.npy")));
            let input = TensorData::new(input, shape);
            let logits = model
                .forward(Tensor::from_data(input, &Default::default()))
                .into_data();
            let (shape, expected) = npy(&family(&format!("{case}/logits.npy")));
            assert_eq!(logits.shape.to_vec(), shape);
            let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (got, want) in logits.to_vec::<f32>().unwrap().iter().zip(&expected) {
                assert!(
                    (got - want).abs() <= 1e-5 * scale,
                    "{case}/{onnx}: {got} vs {want}"
                );
            }
        }
    }

    fn refusal(path: &Path) -> String {
        match read(path) {
            Err(ImportError::NotLeNet5 { details, .. }) => details,
            Err(e) => panic!("{}: refused otherwise: {e}", path.display()),
            Ok(found) => panic!("{}: read as {}", path.display(), found.config.summary()),
        }
    }

    #[test]
    fn graphs_other_than_lenet5_are_refused_naming_the_node() {
        let mlp = refusal(&family("bad/mlp.onnx"));
        assert!(
            mlp.starts_with("Flatten 'flatten1': expected conv1"),
            "{mlp}"
        );
        let softmax = refusal(&family("bad/softmax_head.onnx"));
        assert!(softmax.starts_with("Softmax 'softmax1':"), "{softmax}");
        assert!(softmax.contains("without its softmax"), "{softmax}");
    }

    fn read_error_message(path: &Path) -> String {
        match read(path) {
            Err(ImportError::Read {
                message, format, ..
            }) => {
                assert_eq!(format, WeightsFormat::Onnx);
                assert!(!message.contains('\n'), "{message}");
                message
            }
            Err(e) => panic!("{}: refused otherwise: {e}", path.display()),
            Ok(_) => panic!("{}: read", path.display()),
        }
    }

    #[test]
    fn truncated_files_and_missing_external_data_are_read_errors() {
        let dir = tempfile::tempdir().unwrap();
        let whole = std::fs::read(family("tutorial_net/model.onnx")).unwrap();
        let truncated = dir.path().join("model.onnx");
        std::fs::write(&truncated, &whole[..whole.len() / 2]).unwrap();
        let message = read_error_message(&truncated);
        assert!(message.starts_with("truncated or corrupt"), "{message}");

        let alone = dir.path().join("model_dynamo.onnx");
        std::fs::copy(family("conv_head/model_dynamo.onnx"), &alone).unwrap();
        let message = read_error_message(&alone);
        assert_eq!(
            message,
            "its weights are in model_dynamo.onnx.data beside it, which is missing"
        );
    }

    /// Protobuf's wire format, as much of it as an ONNX model needs.
    #[derive(Default)]
    struct Message(Vec<u8>);

    impl Message {
        fn varint(mut self, mut v: u64) -> Self {
            while v >= 0x80 {
                self.0.push(v as u8 | 0x80);
                v >>= 7;
            }
            self.0.push(v as u8);
            self
        }
        fn int(self, field: u64, v: i64) -> Self {
            self.varint(field << 3).varint(v as u64)
        }
        fn bytes(self, field: u64, bytes: &[u8]) -> Self {
            let mut m = self.varint(field << 3 | 2).varint(bytes.len() as u64);
            m.0.extend_from_slice(bytes);
            m
        }
        fn text(self, field: u64, text: &str) -> Self {
            self.bytes(field, text.as_bytes())
        }
        fn message(self, field: u64, m: Message) -> Self {
            self.bytes(field, &m.0)
        }
    }

    /// ONNX's AttributeProto of ints (type 7) or of an int (type 2).
    fn ints(name: &str, values: &[i64]) -> Message {
        let m = Message::default().text(1, name).int(20, 7);
        values.iter().fold(m, |m, &v| m.int(8, v))
    }
    fn int(name: &str, value: i64) -> Message {
        Message::default().text(1, name).int(3, value).int(20, 2)
    }

    /// How a synthetic graph writes its linear layers.
    #[derive(Clone, Copy, Debug)]
    enum Form {
        /// Gemm of the weight `[out, in]` with transB = 1 (and no alpha or beta: kept a Gemm).
        Gemm,
        /// Gemm of the weight `[in, out]`, transB left 0.
        GemmInOut,
        /// MatMul by the weight `[in, out]`, then Add of the bias (fused by onnx-ir).
        MatMulAdd,
    }

    /// A LeNet-5 graph, built node by node from the input.
    struct Net {
        graph: Message,
        tensors: usize,
        last: String,
    }

    impl Net {
        fn stored(&mut self, dims: &[usize], values: &[f32]) -> String {
            self.tensors += 1;
            let name = format!("w{}", self.tensors);
            let mut tensor = dims
                .iter()
                .fold(Message::default(), |m, &d| m.int(1, d as i64))
                .int(2, 1)
                .text(8, &name);
            tensor = tensor.bytes(
                9,
                &values
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect::<Vec<_>>(),
            );
            self.graph = std::mem::take(&mut self.graph).message(5, tensor);
            name
        }

        fn op(&mut self, op: &str, stored: &[String], attributes: Vec<Message>) {
            self.tensors += 1;
            let output = format!("t{}", self.tensors);
            let node = [self.last.as_str()]
                .into_iter()
                .chain(stored.iter().map(String::as_str))
                .fold(Message::default(), |m, input| m.text(1, input))
                .text(2, &output)
                .text(4, op);
            let node = attributes.into_iter().fold(node, |m, a| m.message(5, a));
            self.graph = std::mem::take(&mut self.graph).message(1, node);
            self.last = output;
        }

        fn conv(&mut self, out: usize, channels: usize) {
            let w = self.stored(&[out, channels, 5, 5], &values(out * channels * 25, out));
            let b = self.stored(&[out], &values(out, out + 1));
            self.op("Conv", &[w, b], vec![ints("kernel_shape", &[5, 5])]);
        }

        fn linear(&mut self, out: usize, inputs: usize, form: Form) {
            let w = values(out * inputs, out);
            let w_in_out = transposed(&TensorData::new(w.clone(), [out, inputs]));
            let b = self.stored(&[out], &values(out, out + 1));
            match form {
                Form::Gemm => {
                    let w = self.stored(&[out, inputs], &w);
                    self.op("Gemm", &[w, b], vec![int("transB", 1)]);
                }
                Form::GemmInOut => {
                    let w = self.stored(&[inputs, out], &w_in_out.to_vec::<f32>().unwrap());
                    self.op("Gemm", &[w, b], vec![]);
                }
                Form::MatMulAdd => {
                    let w = self.stored(&[inputs, out], &w_in_out.to_vec::<f32>().unwrap());
                    self.op("MatMul", &[w], vec![]);
                    self.op("Add", &[b], vec![]);
                }
            }
        }
    }

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 37 + seed * 11) % 101) as f32 / 505.0 - 0.1)
            .collect()
    }

    fn value_info(name: &str, dims: &[Option<i64>]) -> Message {
        let shape = dims.iter().fold(Message::default(), |m, d| {
            m.message(
                1,
                match d {
                    Some(d) => Message::default().int(1, *d),
                    None => Message::default().text(2, "batch"),
                },
            )
        });
        let tensor = Message::default().int(1, 1).message(2, shape);
        Message::default()
            .text(1, name)
            .message(2, Message::default().message(1, tensor))
    }

    /// LeNet-5 on 1 x 32 x 32 with 10 classes, its activations (after conv1, conv2, fc1, fc2)
    /// and pooling as given, the pooling before the activation when `pool_first`.
    fn synthetic(activations: [&str; 4], pooling: &str, pool_first: bool, form: Form) -> Vec<u8> {
        let mut net = Net {
            graph: Message::default(),
            tensors: 0,
            last: "input".into(),
        };
        let pool = || vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2])];
        for (stage, (out, channels)) in [(6, 1), (16, 6)].into_iter().enumerate() {
            net.conv(out, channels);
            if pool_first {
                net.op(pooling, &[], pool());
                net.op(activations[stage], &[], vec![]);
            } else {
                net.op(activations[stage], &[], vec![]);
                net.op(pooling, &[], pool());
            }
        }
        net.op("Flatten", &[], vec![int("axis", 1)]);
        net.linear(120, 400, form);
        net.op(activations[2], &[], vec![]);
        net.linear(84, 120, form);
        net.op(activations[3], &[], vec![]);
        net.linear(10, 84, form);
        let graph = std::mem::take(&mut net.graph)
            .text(2, "lenet5")
            .message(
                11,
                value_info("input", &[None, Some(1), Some(32), Some(32)]),
            )
            .message(12, value_info(&net.last, &[None, Some(10)]));
        let opset = Message::default().text(1, "").int(2, 17);
        Message::default()
            .int(1, 8)
            .message(8, opset)
            .message(7, graph)
            .0
    }

    fn read_synthetic(bytes: &[u8]) -> Result<Found, ImportError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("synthetic.onnx");
        std::fs::write(&path, bytes).unwrap();
        read(&path)
    }

    fn data(found: &Found) -> BTreeMap<String, TensorData> {
        found
            .snapshots
            .iter()
            .map(|s| (s.full_path(), s.to_data().unwrap()))
            .collect()
    }

    #[test]
    fn linear_weights_come_out_out_by_in_whatever_their_layout_in_the_file() {
        let relu = ["Relu"; 4];
        let gemm = read_synthetic(&synthetic(relu, "MaxPool", false, Form::Gemm)).unwrap();
        let expected = LeNet5Config::new()
            .with_activation(Activation::Relu)
            .with_pooling(Pooling::Max);
        assert_eq!(gemm.config, expected);
        let fc1 = &data(&gemm)["fc1.weight"];
        assert_eq!(*fc1, TensorData::new(values(120 * 400, 120), [120, 400]));
        for form in [Form::GemmInOut, Form::MatMulAdd] {
            let found = read_synthetic(&synthetic(relu, "MaxPool", false, form)).unwrap();
            assert_eq!(found.config, expected, "{form:?}");
            assert_eq!(data(&found), data(&gemm), "{form:?}");
        }
    }

    #[test]
    fn max_pooling_may_come_before_the_activation_average_pooling_may_not() {
        let max = read_synthetic(&synthetic(["Tanh"; 4], "MaxPool", true, Form::Gemm)).unwrap();
        assert_eq!(max.config.pooling, Pooling::Max);
        assert!(matches!(&max.notes[..], [ImportNote::Graph(note)] if note.contains("commutes")));
        let avg = read_synthetic(&synthetic(["Tanh"; 4], "AveragePool", true, Form::Gemm));
        let Err(ImportError::NotLeNet5 { details, .. }) = avg else {
            panic!("average pooling before the activation read");
        };
        assert!(
            details.starts_with("AveragePool 'averagepool2d1': expected the activation"),
            "{details}"
        );
    }

    #[test]
    fn one_activation_throughout() {
        let mixed = ["Relu", "Relu", "Tanh", "Relu"];
        let Err(ImportError::NotLeNet5 { details, .. }) =
            read_synthetic(&synthetic(mixed, "MaxPool", false, Form::Gemm))
        else {
            panic!("mixed activations read");
        };
        assert!(
            details.starts_with("Tanh 'tanh1': expected the relu activation after fc1"),
            "{details}"
        );
    }
}
