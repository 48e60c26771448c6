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
