//! Which tensors of a state_dict are LeNet-5's five weighted layers, whatever the file calls
//! them: found by their shapes, which tell the layers apart (each has its own), within the
//! part of the file that holds a model (a checkpoint's `model_state_dict`, say) and under the
//! prefixes wrappers add.

use std::collections::BTreeMap;
use std::fmt;

use crate::model::config::{
    CONV1_CHANNELS, CONV2_CHANNELS, FC1_UNITS, FC2_UNITS, FLAT_FEATURES, KERNEL_SIZE, POOL2_SIZE,
};

/// LeNet-5's weighted layers, as [`LeNet5`](crate::LeNet5) names them, in the order data flows.
pub(crate) const LAYERS: [&str; 5] = ["conv1", "conv2", "fc1", "fc2", "fc3"];

/// Top-level keys under which training scripts save a model's state_dict, tried first (in
/// this order) when the file is not a state_dict itself.
pub const CHECKPOINT_KEYS: [&str; 6] = [
    "model_state_dict",
    "state_dict",
    "model",
    "net",
    "network",
    "weights",
];

/// Prefixes that wrappers add to every key of a `state_dict`, and who adds them.
pub const WRAPPER_PREFIXES: [(&str, &str); 2] = [
    (
        "module.",
        "torch.nn.DataParallel or DistributedDataParallel",
    ),
    ("_orig_mod.", "torch.compile"),
];

/// A tensor of the file: its key and shape as the file has them.
#[derive(Clone, Debug)]
pub(crate) struct FileTensor {
    pub key: String,
    pub shape: Vec<usize>,
}

/// Where LeNet-5's layers are in a state_dict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Layers {
    /// The top-level key the model is under (`model_state_dict.`, say), `""` for a state_dict.
    pub root: String,
    /// The wrappers' prefix every key of the model starts with, `""` when none.
    pub wrapper: String,
    /// Who adds that prefix.
    pub wrappers: String,
    /// Each layer's key prefix within the model (`features.0`, `conv1`, `0`...), in the
    /// order of [`LAYERS`].
    pub prefixes: [String; 5],
    /// Channels of the input, from conv1's weight.
    pub in_channels: usize,
    /// Classes, from the last layer's weight.
    pub num_classes: usize,
    /// fc1 is held as a `[120, 16, 5, 5]` convolution.
    pub conv3: bool,
    /// Other top-level entries of the file, left alone.
    pub ignored: Vec<String>,
}

impl Layers {
    /// The key in the file of a parameter path of [`LeNet5`](crate::LeNet5) (`fc1.weight`).
    pub fn file_key(&self, path: &str) -> String {
        let (layer, param) = path.split_once('.').unwrap_or((path, ""));
        let prefix = LAYERS
            .iter()
            .position(|&l| l == layer)
            .map_or(layer, |i| self.prefixes[i].as_str());
        let name = [prefix, param]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(".");
        format!("{}{}{}", self.root, self.wrapper, name)
    }

    /// Whether the layers' keys are the question's module's own (`feature_extractor.0`...,
    /// `classifier.4`) or the model's (`conv1`... `fc3`, as PyTorch's tutorial `Net` names
    /// them): then there is nothing to say of them. (A checkpoint or a wrapper around them has
    /// a note of its own.)
    pub fn are_the_usual(&self) -> bool {
        let seeds = [
            "feature_extractor.0",
            "feature_extractor.3",
            "classifier.0",
            "classifier.2",
            "classifier.4",
        ];
        !self.conv3 && (self.prefixes == seeds || self.prefixes == LAYERS)
    }
}

impl fmt::Display for Layers {
    /// `conv1 = features.0, conv2 = features.3, fc1 = classifier.0, ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pairs: Vec<String> = LAYERS
            .iter()
            .zip(&self.prefixes)
            .map(|(layer, prefix)| format!("{layer} = {}{}{prefix}", self.root, self.wrapper))
            .collect();
        f.write_str(&pairs.join(", "))
    }
}

/// The layer a weight of this shape (PyTorch's layout) is, and what it says of the network:
/// `(index in LAYERS, in_channels or classes, conv3)`.
fn layer_of(shape: &[usize]) -> Option<(usize, Option<usize>, bool)> {
    let k = KERNEL_SIZE;
    match *shape {
        [CONV1_CHANNELS, c, kh, kw] if [kh, kw] == [k, k] && c > 0 => Some((0, Some(c), false)),
        [CONV2_CHANNELS, CONV1_CHANNELS, kh, kw] if [kh, kw] == [k, k] => Some((1, None, false)),
        [FC1_UNITS, CONV2_CHANNELS, kh, kw] if [kh, kw] == [POOL2_SIZE, POOL2_SIZE] => {
            Some((2, None, true))
        }
        [FC1_UNITS, FLAT_FEATURES] => Some((2, None, false)),
        [FC2_UNITS, FC1_UNITS] => Some((3, None, false)),
        [classes, FC2_UNITS] if classes > 0 => Some((4, Some(classes), false)),
        _ => None,
    }
}

/// What each layer's weight looks like, for messages.
const EXPECTED: [&str; 5] = [
    "[6, channels, 5, 5]",
    "[16, 6, 5, 5]",
    "[120, 400] (or [120, 16, 5, 5] as a convolution)",
    "[84, 120]",
    "[classes, 84]",
];

/// Finds LeNet-5's layers among `tensors`, the whole file: under the one top-level key all
/// of them share (a checkpoint saved as `{"net": state_dict}`), in the file itself, else under
/// one top-level key ([`CHECKPOINT_KEYS`] first, then the others in order). The error names
/// what does not fit, for the file as a whole.
pub(crate) fn find(tensors: &[FileTensor]) -> Result<Layers, String> {
    let tops = top_level(tensors);
    let is_wrapper = |top: &str| {
        WRAPPER_PREFIXES
            .iter()
            .any(|(prefix, _)| prefix.trim_end_matches('.') == top)
    };
    if let [only] = tops.as_slice() {
        if !is_wrapper(only) {
            if let Ok(layers) = under(tensors, only) {
                return Ok(layers);
            }
        }
    }
    let whole = recognise(tensors, "");
    if whole.is_ok() {
        return whole;
    }
    let mut roots = tops.clone();
    roots.sort_by_key(|root| {
        let known = CHECKPOINT_KEYS.iter().position(|k| k == root);
        (known.unwrap_or(CHECKPOINT_KEYS.len()), *root)
    });
    for root in roots {
        if let Ok(mut layers) = under(tensors, root) {
            layers.ignored = tops
                .iter()
                .filter(|key| **key != root)
                .map(|key| key.to_string())
                .collect();
            return Ok(layers);
        }
    }
    whole
}

/// The layers among the tensors under the top-level key `root`.
fn under(tensors: &[FileTensor], root: &str) -> Result<Layers, String> {
    let prefix = format!("{root}.");
    let inside: Vec<FileTensor> = tensors
        .iter()
        .filter_map(|t| {
            let key = t.key.strip_prefix(&prefix)?;
            Some(FileTensor {
                key: key.to_string(),
                shape: t.shape.clone(),
            })
        })
        .collect();
    recognise(&inside, &prefix)
}

/// The distinct first components of the keys.
fn top_level(tensors: &[FileTensor]) -> Vec<&str> {
    let mut keys: Vec<&str> = tensors
        .iter()
        .map(|t| {
            t.key
                .split_once('.')
                .map_or(t.key.as_str(), |(root, _)| root)
        })
        .collect();
    keys.dedup();
    keys.sort();
    keys.dedup();
    keys
}

/// The prefix every key starts with that wrappers add (several may follow each other, e.g.
/// `module._orig_mod.`), and the wrappers; `None` when there is none.
fn wrapper_prefix(keys: &[&str]) -> Option<(String, String)> {
    let first = keys.first()?;
    let (mut prefix, mut wrappers) = (String::new(), Vec::new());
    'outer: loop {
        for (wrapper_prefix, wrapper) in WRAPPER_PREFIXES {
            let candidate = format!("{prefix}{wrapper_prefix}");
            if first.starts_with(&candidate) && keys.iter().all(|k| k.starts_with(&candidate)) {
                prefix = candidate;
                wrappers.push(wrapper);
                continue 'outer;
            }
        }
        break;
    }
    (!prefix.is_empty()).then(|| (prefix, wrappers.join(" and ")))
}

/// LeNet-5's layers when `tensors` are exactly a LeNet-5's: every one a layer's weight or
/// bias, each layer once.
fn recognise(tensors: &[FileTensor], root: &str) -> Result<Layers, String> {
    let keys: Vec<&str> = tensors.iter().map(|t| t.key.as_str()).collect();
    let (wrapper, wrappers) = wrapper_prefix(&keys).unwrap_or_default();
    let full = |key: &str| format!("{root}{wrapper}{key}");
    // prefix -> (weight shape, bias shape), in the model's own keys.
    let mut groups: BTreeMap<&str, [Option<&[usize]>; 2]> = BTreeMap::new();
    let mut strays = Vec::new();
    for t in tensors {
        let key = &t.key[wrapper.len()..];
        match key.rsplit_once('.') {
            Some((prefix, "weight")) => groups.entry(prefix).or_default()[0] = Some(&t.shape),
            Some((prefix, "bias")) => groups.entry(prefix).or_default()[1] = Some(&t.shape),
            _ => strays.push(format!("{} {:?}", full(key), t.shape)),
        }
    }
    let mut found: [Option<(&str, Option<usize>, bool)>; 5] = Default::default();
    let mut problems = Vec::new();
    for (&prefix, [weight, bias]) in &groups {
        let Some(weight) = weight else {
            strays.push(format!(
                "{}.bias {:?}",
                full(prefix),
                bias.unwrap_or_default()
            ));
            continue;
        };
        let Some((layer, size, conv3)) = layer_of(weight) else {
            strays.push(format!("{}.weight {weight:?}", full(prefix)));
            if let Some(bias) = bias {
                strays.push(format!("{}.bias {bias:?}", full(prefix)));
            }
            continue;
        };
        if let Some((other, _, _)) = found[layer] {
            problems.push(format!(
                "two tensors of {}'s shape: {}.weight and {}.weight",
                LAYERS[layer],
                full(other),
                full(prefix)
            ));
            continue;
        }
        match bias {
            Some(&[out]) if out == weight[0] => {}
            Some(bias) => problems.push(format!(
                "{}.bias has shape {bias:?}, expected [{}] for its weight {weight:?}",
                full(prefix),
                weight[0]
            )),
            None => problems.push(format!(
                "{}.bias is missing: {} ({}.weight {weight:?}) has a bias in LeNet-5",
                full(prefix),
                LAYERS[layer],
                full(prefix)
            )),
        }
        found[layer] = Some((prefix, size, conv3));
    }
    let missing: Vec<String> = found
        .iter()
        .zip(LAYERS.iter().zip(EXPECTED))
        .filter(|(f, _)| f.is_none())
        .map(|(_, (layer, shape))| format!("{layer} {shape}"))
        .collect();
    if !missing.is_empty() {
        problems.push(format!(
            "no tensor of the shape of {}",
            missing.join(", nor of ")
        ));
    }
    if !strays.is_empty() {
        problems.push(format!("{} fit no LeNet-5 layer", strays.join(", ")));
    }
    if !problems.is_empty() {
        let recognised: Vec<String> = found
            .iter()
            .zip(LAYERS)
            .filter_map(|(f, layer)| f.map(|(prefix, _, _)| format!("{layer} = {}", full(prefix))))
            .collect();
        if !recognised.is_empty() {
            problems.push(format!("recognised by shape: {}", recognised.join(", ")));
        }
        return Err(problems.join("; "));
    }
    let found = found.map(|f| f.expect("every layer found"));
    Ok(Layers {
        root: root.to_string(),
        wrapper,
        wrappers,
        prefixes: found.map(|(prefix, _, _)| prefix.to_string()),
        in_channels: found[0].1.expect("conv1 says its channels"),
        num_classes: found[4].1.expect("fc3 says its classes"),
        conv3: found[2].2,
        ignored: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensors(layers: &[(&str, &[usize])]) -> Vec<FileTensor> {
        layers
            .iter()
            .flat_map(|(prefix, weight)| {
                [
                    FileTensor {
                        key: format!("{prefix}.weight"),
                        shape: weight.to_vec(),
                    },
                    FileTensor {
                        key: format!("{prefix}.bias"),
                        shape: vec![weight[0]],
                    },
                ]
            })
            .collect()
    }

    fn lenet(names: [&str; 5], channels: usize, classes: usize) -> Vec<FileTensor> {
        tensors(&[
            (names[0], &[6, channels, 5, 5]),
            (names[1], &[16, 6, 5, 5]),
            (names[2], &[120, 400]),
            (names[3], &[84, 120]),
            (names[4], &[classes, 84]),
        ])
    }

    #[test]
    fn layers_are_found_by_shape_whatever_their_names() {
        for names in [
            ["conv1", "conv2", "fc1", "fc2", "fc3"],
            ["0", "3", "7", "9", "11"],
            ["c1.c1.c1", "c3.c3", "f5.f5", "f6", "f7"],
            [
                "features.0",
                "features.3",
                "classifier.0",
                "classifier.2",
                "classifier.4",
            ],
        ] {
            // Listed backwards: the shapes decide, not the order.
            let mut file = lenet(names, 3, 7);
            file.reverse();
            let layers = find(&file).unwrap();
            assert_eq!(layers.prefixes, names.map(String::from));
            assert_eq!((layers.in_channels, layers.num_classes), (3, 7));
            assert!(!layers.conv3 && layers.root.is_empty() && layers.wrapper.is_empty());
            assert_eq!(layers.file_key("fc2.bias"), format!("{}.bias", names[3]));
        }
    }

    #[test]
    fn a_checkpoint_and_wrappers_are_seen_through() {
        let mut file: Vec<FileTensor> = lenet(["conv1", "conv2", "fc1", "fc2", "fc3"], 1, 10)
            .into_iter()
            .map(|t| FileTensor {
                key: format!("net.module.{}", t.key),
                ..t
            })
            .collect();
        // An optimizer's state holds tensors of the same shapes.
        file.extend(
            lenet(
                ["state.0", "state.1", "state.2", "state.3", "state.4"],
                1,
                10,
            )
            .into_iter()
            .map(|t| FileTensor {
                key: format!("optimizer.{}", t.key),
                ..t
            }),
        );
        let layers = find(&file).unwrap();
        assert_eq!(
            (layers.root.as_str(), layers.wrapper.as_str()),
            ("net.", "module.")
        );
        assert_eq!(layers.ignored, ["optimizer"]);
        assert_eq!(layers.file_key("conv1.weight"), "net.module.conv1.weight");
    }

    #[test]
    fn a_third_convolution_is_fc1() {
        let file = tensors(&[
            ("f.0", &[6, 1, 5, 5]),
            ("f.3", &[16, 6, 5, 5]),
            ("f.6", &[120, 16, 5, 5]),
            ("c.0", &[84, 120]),
            ("c.2", &[10, 84]),
        ]);
        let layers = find(&file).unwrap();
        assert!(layers.conv3);
        assert_eq!(layers.prefixes[2], "f.6");
    }

    #[test]
    fn what_does_not_fit_is_named() {
        let file = lenet(["a", "b", "c", "d", "e"], 1, 10)
            .into_iter()
            .map(|t| match t.key.as_str() {
                "a.weight" => FileTensor {
                    shape: vec![8, 1, 5, 5],
                    ..t
                },
                _ => t,
            })
            .collect::<Vec<_>>();
        let message = find(&file).unwrap_err();
        assert!(
            message.contains("no tensor of the shape of conv1 [6, channels, 5, 5]"),
            "{message}"
        );
        assert!(message.contains("a.weight [8, 1, 5, 5]"), "{message}");
        assert!(message.contains("conv2 = b"), "{message}");

        let mut file = lenet(["a", "b", "c", "d", "e"], 1, 10);
        file.retain(|t| t.key != "e.bias");
        let message = find(&file).unwrap_err();
        assert!(message.contains("e.bias is missing"), "{message}");
    }
}
