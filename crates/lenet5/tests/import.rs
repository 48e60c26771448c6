//! Weight files as people have them: wrapper prefixes, half precision, the legacy pickle
//! format, a pickled whole module, non-finite weights. The files come from
//! `scripts/make_weight_variants.py` (tests/fixtures/variants/); all hold the weights of the
//! fixture case b3_c10.

use std::path::{Path, PathBuf};

use burn::backend::NdArray;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use lenet5::import::{self, ImportConfig, ImportError, ImportNote, NonFinite};
use lenet5::LeNet5;

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(path)
}

fn load(path: &str, config: &ImportConfig) -> Result<import::Imported<NdArray>, ImportError> {
    import::load::<NdArray>(&fixture(path), config, &Default::default())
}

/// Every parameter, flattened, in a fixed order.
fn parameters<B: Backend>(model: &LeNet5<B>) -> Vec<f32> {
    let host = |t: Tensor<B, 1>| t.into_data().to_vec::<f32>().unwrap();
    let mut values = Vec::new();
    values.extend(host(model.conv1.weight.val().flatten(0, 3)));
    values.extend(host(model.conv2.weight.val().flatten(0, 3)));
    for linear in [&model.fc1, &model.fc2, &model.fc3] {
        values.extend(host(linear.weight.val().flatten(0, 1)));
    }
    for bias in [
        &model.conv1.bias,
        &model.conv2.bias,
        &model.fc1.bias,
        &model.fc2.bias,
        &model.fc3.bias,
    ] {
        values.extend(host(bias.as_ref().unwrap().val()));
    }
    values
}

#[test]
fn wrapper_prefixes_are_stripped_with_a_note() {
    let reference = parameters(
        &load("b3_c10/lenet5.pt", &ImportConfig::new())
            .unwrap()
            .model,
    );
    for (file, prefix, wrapper) in [
        ("variants/dataparallel.pt", "module.", "DataParallel"),
        ("variants/compiled.pt", "_orig_mod.", "torch.compile"),
    ] {
        let imported = load(file, &ImportConfig::new()).unwrap();
        assert_eq!(
            parameters(&imported.model),
            reference,
            "{file}: the same weights"
        );
        match imported.notes.as_slice() {
            [ImportNote::StrippedPrefix {
                prefix: p,
                wrappers,
            }] => {
                assert_eq!(p, prefix);
                assert!(wrappers.contains(wrapper), "{wrappers}");
            }
            notes => panic!("{file}: {notes:?}"),
        }
        let note = imported.notes[0].to_string();
        assert!(note.contains(prefix) && note.contains("stripped"), "{note}");
    }
}

#[test]
fn the_legacy_pickle_format_loads_as_it_is() {
    let reference = parameters(
        &load("b3_c10/lenet5.pt", &ImportConfig::new())
            .unwrap()
            .model,
    );
    let imported = load("variants/legacy.pt", &ImportConfig::new()).unwrap();
    assert_eq!(parameters(&imported.model), reference);
    assert!(imported.notes.is_empty(), "{:?}", imported.notes);
}

#[test]
fn half_precision_is_converted_to_float32_with_a_note() {
    let full = parameters(
        &load("b3_c10/lenet5.pt", &ImportConfig::new())
            .unwrap()
            .model,
    );
    for (file, dtype, max_relative) in [
        ("variants/float16.safetensors", "float16", 2f32.powi(-11)),
        ("variants/float16.pt", "float16", 2f32.powi(-11)),
        ("variants/bfloat16.safetensors", "bfloat16", 2f32.powi(-8)),
    ] {
        let imported = load(file, &ImportConfig::new()).unwrap();
        assert_eq!(
            imported.notes,
            [ImportNote::Converted {
                dtype: dtype.into(),
                tensors: 10
            }],
            "{file}"
        );
        // The rounding of each weight, no more: half a unit in the last place of the format.
        let rounded = parameters(&imported.model);
        for (r, f) in rounded.iter().zip(&full) {
            assert!(
                (r - f).abs() <= max_relative * f.abs() + 1e-7,
                "{file}: {r} from {f}"
            );
        }
        assert_ne!(rounded, full, "{file}: rounded, not the float32 weights");
    }
}

#[test]
fn a_pickled_whole_module_is_refused_with_the_state_dict_hint() {
    let err = load("variants/whole_module.pt", &ImportConfig::new()).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("whole_module.pt"), "{message}");
    assert!(message.contains("model.state_dict()"), "{message}");
    assert!(!message.contains('\n'), "{message}");
}

#[test]
fn non_finite_weights_are_refused_naming_the_tensor_unless_allowed() {
    for (file, key, first, index) in [
        (
            "variants/nan_weight.safetensors",
            "classifier.2.weight",
            "NaN",
            vec![3, 5],
        ),
        (
            "variants/nan_weight.pt",
            "classifier.2.weight",
            "NaN",
            vec![3, 5],
        ),
        (
            "variants/inf_bias.pt",
            "feature_extractor.3.bias",
            "inf",
            vec![2],
        ),
    ] {
        let expected = NonFinite {
            key: key.into(),
            count: 1,
            first: first.into(),
            index,
        };
        match load(file, &ImportConfig::new()) {
            Err(ImportError::NonFinite { non_finite, .. }) => {
                assert_eq!(non_finite, expected, "{file}")
            }
            other => panic!("{file}: {other:?}"),
        }
        let allowed = load(file, &ImportConfig::new().with_allow_non_finite(true)).unwrap();
        assert_eq!(allowed.notes, [ImportNote::NonFinite(expected)], "{file}");
        assert!(parameters(&allowed.model).iter().any(|v| !v.is_finite()));
    }
}

// -------------------------------------------------------------------------------------------
// The LeNet-5s people have (tests/fixtures/family/, made by scripts/make_family_fixtures.py)

use lenet5::import::{Architecture, Origin};
use lenet5::{Activation, LeNet5Config, Pooling};

fn family(case: &str, file: &str) -> String {
    format!("family/{case}/{file}")
}

/// Loads with the architecture stated as the case's flags say.
fn stated(
    activation: Option<Activation>,
    pooling: Option<Pooling>,
    padding: Option<usize>,
) -> ImportConfig {
    ImportConfig::new()
        .with_activation(activation)
        .with_pooling(pooling)
        .with_padding(padding)
}

#[test]
fn state_dicts_are_read_whatever_their_key_names_and_containers() {
    let relu_max = stated(Some(Activation::Relu), Some(Pooling::Max), None);
    for (file, config, expected, notes) in [
        (
            family("tutorial_net", "net.pt"),
            relu_max.clone(),
            LeNet5Config::new().with_activation(Activation::Relu).with_pooling(Pooling::Max),
            vec![],
        ),
        (
            family("d2l_sequential", "d2l.pt"),
            stated(Some(Activation::Sigmoid), None, Some(2)),
            LeNet5Config::new().with_activation(Activation::Sigmoid).with_padding(2),
            vec!["conv1 = 0, conv2 = 3, fc1 = 7, fc2 = 9, fc3 = 11"],
        ),
        (
            family("checkpoint", "checkpoint.pt"),
            ImportConfig::new(),
            LeNet5Config::new(),
            vec!["the model's weights are under 'model_state_dict' (a training checkpoint); 'optimizer_state_dict' left alone"],
        ),
        (
            family("cifar_net", "ckpt.pth"),
            relu_max,
            LeNet5Config::new()
                .with_activation(Activation::Relu)
                .with_pooling(Pooling::Max)
                .with_in_channels(3),
            vec!["under 'net'", "every key starts with 'module.'"],
        ),
        (
            family("conv_head", "lenet5.pt"),
            ImportConfig::new(),
            LeNet5Config::new().with_num_classes(7).with_conv3(true),
            vec!["fc1 = feature_extractor.6, fc2 = classifier.0, fc3 = classifier.2"],
        ),
    ] {
        let imported = load(&file, &config).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(imported.architecture.config, expected, "{file}");
        assert_eq!(imported.model.config(), expected, "{file}");
        let text: Vec<String> = imported.notes.iter().map(ToString::to_string).collect();
        let all = text.join(" | ");
        for needle in notes {
            assert!(all.contains(needle), "{file}: {needle} not in {all}");
        }
    }
}

#[test]
fn the_architecture_says_where_each_choice_came_from() {
    // A state_dict says nothing of the activation, pooling or padding: unstated, defaulted.
    let plain = load("b3_c10/lenet5.pt", &ImportConfig::new()).unwrap();
    assert_eq!(
        plain.architecture,
        Architecture::of(LeNet5Config::new(), Origin::Default)
    );
    assert_eq!(
        plain.architecture.assumed(),
        ["activation", "pooling", "padding"]
    );
    let relu = load(
        &family("tutorial_net", "net.pt"),
        &stated(Some(Activation::Relu), None, None),
    )
    .unwrap();
    assert_eq!(
        (relu.architecture.activation, relu.architecture.pooling),
        (Origin::Stated, Origin::Default)
    );
    // An ONNX graph says all of it; a statement that agrees is fine, one that does not is an
    // error naming both.
    for file in ["model.onnx", "model_dynamo.onnx"] {
        let file = family("tutorial_net", file);
        let onnx = load(&file, &ImportConfig::new()).unwrap();
        assert_eq!(onnx.architecture.activation, Origin::Graph, "{file}");
        assert!(onnx.architecture.assumed().is_empty(), "{file}");
        assert!(load(
            &file,
            &stated(Some(Activation::Relu), Some(Pooling::Max), Some(0))
        )
        .is_ok());
        match load(&file, &stated(Some(Activation::Tanh), None, None)) {
            Err(e @ ImportError::Contradiction { .. }) => {
                let message = e.to_string();
                assert!(message.contains("activation tanh was stated"), "{message}");
                assert!(
                    message.contains("the file says relu (from the ONNX graph)"),
                    "{message}"
                );
            }
            other => panic!("{file}: {other:?}"),
        }
    }
}

#[test]
fn an_onnx_export_and_its_state_dict_hold_the_same_model() {
    for (case, state_dict, config) in [
        (
            "tutorial_net",
            "net.pt",
            stated(Some(Activation::Relu), Some(Pooling::Max), None),
        ),
        (
            "d2l_sequential",
            "d2l.pt",
            stated(Some(Activation::Sigmoid), None, Some(2)),
        ),
        (
            "cifar_net",
            "ckpt.pth",
            stated(Some(Activation::Relu), Some(Pooling::Max), None),
        ),
        ("conv_head", "lenet5.pt", ImportConfig::new()),
    ] {
        let from_pt = load(&family(case, state_dict), &config).unwrap();
        for onnx in ["model.onnx", "model_dynamo.onnx"] {
            let path = family(case, onnx);
            if !fixture(&path).exists() {
                continue;
            }
            let from_onnx = load(&path, &ImportConfig::new()).unwrap();
            assert_eq!(
                from_onnx.architecture.config, from_pt.architecture.config,
                "{path}"
            );
            assert_eq!(
                parameters(&from_onnx.model),
                parameters(&from_pt.model),
                "{path}"
            );
        }
    }
}

#[test]
fn records_written_here_keep_the_architecture() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            family("cifar_net", "ckpt.pth"),
            stated(Some(Activation::Relu), Some(Pooling::Max), None),
        ),
        (
            family("d2l_sequential", "d2l.pt"),
            stated(Some(Activation::Sigmoid), None, Some(2)),
        ),
        (family("conv_head", "lenet5.pt"), ImportConfig::new()),
    ];
    for (file, config) in cases {
        let original = load(&file, &config).unwrap();
        let expected = original.architecture.config.clone();
        let written = [
            (
                "model.bpk",
                import::to_burnpack_bytes(&original.model).unwrap(),
            ),
            (
                "model.safetensors",
                import::to_pytorch_safetensors_bytes(&original.model).unwrap(),
            ),
        ];
        for (name, bytes) in written {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let back = import::load::<NdArray>(&path, &ImportConfig::new(), &Default::default())
                .unwrap_or_else(|e| panic!("{file} as {name}: {e}"));
            assert_eq!(
                back.architecture,
                Architecture::of(expected.clone(), Origin::Record),
                "{file} as {name}"
            );
            assert_eq!(
                parameters(&back.model),
                parameters(&original.model),
                "{file} as {name}"
            );
            assert!(back.notes.is_empty(), "{file} as {name}: {:?}", back.notes);
        }
        // In PyTorch's layout, under the question's module's keys, fc1 as it was read.
        let bytes = std::fs::read(dir.path().join("model.safetensors")).unwrap();
        let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let fc1 = if expected.conv3 {
            ("feature_extractor.6.weight", vec![120, 16, 5, 5])
        } else {
            ("classifier.0.weight", vec![120, 400])
        };
        assert_eq!(tensors.tensor(fc1.0).unwrap().shape(), fc1.1, "{file}");
        let conv1 = tensors.tensor("feature_extractor.0.weight").unwrap();
        assert_eq!(conv1.shape(), [6, expected.in_channels, 5, 5], "{file}");
    }
}

#[test]
fn onnx_files_that_are_not_lenet5_or_cannot_be_read_are_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let whole = std::fs::read(fixture(&family("tutorial_net", "model.onnx"))).unwrap();
    let truncated = dir.path().join("truncated.onnx");
    std::fs::write(&truncated, &whole[..whole.len() / 2]).unwrap();
    let without_data = dir.path().join("model_dynamo.onnx");
    std::fs::copy(
        fixture(&family("tutorial_net", "model_dynamo.onnx")),
        &without_data,
    )
    .unwrap();
    for (path, needle) in [
        (fixture("family/bad/mlp.onnx"), "not a LeNet-5"),
        (fixture("family/bad/softmax_head.onnx"), "Softmax"),
        (truncated, "cannot read ONNX weights"),
        (without_data, "model_dynamo.onnx.data"),
    ] {
        let message = import::load::<NdArray>(&path, &ImportConfig::new(), &Default::default())
            .unwrap_err()
            .to_string();
        assert!(message.contains(needle), "{}: {message}", path.display());
        assert!(!message.contains('\n'), "{message}");
    }
}
