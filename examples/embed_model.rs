//! The `lenet5` crate inside another Burn program, generic over its backend: the same
//! `classify` function runs on NdArray and on Flex, with the same weights, and the two agree.
//!
//! ```sh
//! cargo run --release --example embed_model
//! ```

use burn::backend::{Flex, NdArray};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use lenet5::model::config::PADDED_SIZE as SIZE;
use lenet5::{import, LeNet5, LeNet5Config};

/// A class and its probability for each image.
#[derive(Debug, PartialEq)]
struct Prediction {
    class: usize,
    probability: f32,
}

/// The program's own code, written once for any backend: the most probable class of each
/// image of a `[batch, 1, 32, 32]` batch, and every probability.
fn classify<B: Backend>(model: &LeNet5<B>, images: Tensor<B, 4>) -> (Vec<Prediction>, Vec<f32>) {
    let probabilities = model.probabilities(images); // [batch, classes]
    let classes = model.num_classes();
    let values = probabilities
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("f32 values");
    let predictions = values
        .chunks_exact(classes)
        .map(|row| {
            let (class, &probability) = row
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .expect("at least one class");
            Prediction { class, probability }
        })
        .collect();
    (predictions, values)
}

/// Three images: a vertical bar, a horizontal bar and a square ring, in [0, 1].
fn images() -> (Vec<f32>, usize) {
    let n = SIZE;
    let mut values = vec![0.0f32; 3 * n * n];
    for (b, image) in values.chunks_exact_mut(n * n).enumerate() {
        for row in 4..28 {
            for col in 4..28 {
                let on = match b {
                    0 => (14..18).contains(&col),
                    1 => (14..18).contains(&row),
                    _ => !(8..24).contains(&row) || !(8..24).contains(&col),
                };
                image[row * n + col] = if on { 1.0 } else { 0.0 };
            }
        }
    }
    (values, 3)
}

/// Runs the program on backend `B`: the model from burnpack bytes (any backend's weights),
/// the images from host values.
fn run<B: Backend>(name: &str, weights: &[u8], device: &B::Device) -> Vec<f32> {
    let model: LeNet5<B> =
        import::from_burnpack_bytes(weights.to_vec(), device).expect("valid weights");
    let (values, batch) = images();
    let x = Tensor::<B, 4>::from_data(TensorData::new(values, [batch, 1, SIZE, SIZE]), device);
    let (predictions, probabilities) = classify(&model, x);
    println!("{name}:");
    for (b, p) in predictions.iter().enumerate() {
        println!(
            "  image {b}: class {} with probability {:.4}",
            p.class, p.probability
        );
    }
    probabilities
}

fn main() {
    // Weights drawn once (seeded, on NdArray), then given to both backends.
    let device = Default::default();
    NdArray::<f32>::seed(&device, 7);
    let model = LeNet5Config::new().init::<NdArray>(&device);
    let weights = import::to_burnpack_bytes(&model).expect("encodable");
    println!("LeNet-5 with seeded (untrained) weights, the same on both backends");

    let on_ndarray = run::<NdArray>("NdArray", &weights, &device);
    let on_flex = run::<Flex>("Flex", &weights, &Default::default());

    let largest_difference = on_ndarray
        .iter()
        .zip(&on_flex)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    println!("largest difference between the backends' probabilities: {largest_difference:.2e}");
    assert!(largest_difference < 1e-5, "the backends disagree");
}
