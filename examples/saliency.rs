//! Per-class saliency maps `|d logit_k / d x|` of a small batch of hand-drawn 28 x 28 digits,
//! written as one PNG grid: a row per image, the (padded) input then one tile per class.
//!
//! ```sh
//! cargo run --release --example saliency             # writes saliency.png here
//! cargo run --release --example saliency -- out.png
//! ```
//!
//! The model's weights are seeded, not trained: the maps show what this network responds to,
//! not what a digit classifier has learnt. Pass real weights to the application instead:
//! `lenet-jacobian --weights model.pt --images DIR --saliency maps.png`.

use std::path::PathBuf;

use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use image::{DynamicImage, GrayImage, Luma};
use jacobian::{per_sample, Jacobian, JacobianConfig, Layout};
use lenet5::{LeNet5Config, IMAGE_DIMS};
use lenet_jacobian::{input::images, output, saliency};

type B = Flex;

/// A point in pixel coordinates.
type Point = (f32, f32);

/// A 28 x 28 digit drawn with thick strokes: `strokes` are segments from one point to another.
fn digit(strokes: &[(Point, Point)]) -> GrayImage {
    GrayImage::from_fn(28, 28, |x, y| {
        let p = (x as f32 + 0.5, y as f32 + 0.5);
        let distance = strokes
            .iter()
            .map(|&(a, b)| segment_distance(p, a, b))
            .fold(f32::INFINITY, f32::min);
        Luma([(255.0 * (2.5 - distance).clamp(0.0, 1.0)) as u8])
    })
}

fn segment_distance(p: Point, a: Point, b: Point) -> f32 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let t = (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / (dx * dx + dy * dy)).clamp(0.0, 1.0);
    ((p.0 - a.0 - t * dx).powi(2) + (p.1 - a.1 - t * dy).powi(2)).sqrt()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("saliency.png"));
    let drawn = [
        (
            "1",
            digit(&[((14.0, 5.0), (14.0, 23.0)), ((11.0, 8.0), (14.0, 5.0))]),
        ),
        (
            "7",
            digit(&[((7.0, 6.0), (21.0, 6.0)), ((21.0, 6.0), (12.0, 23.0))]),
        ),
        (
            "4",
            digit(&[
                ((17.0, 5.0), (7.0, 17.0)),
                ((7.0, 17.0), (22.0, 17.0)),
                ((17.0, 5.0), (17.0, 23.0)),
            ]),
        ),
    ];
    // The application's rule for --images: grayscale in [0, 1], 28 x 28 padded to 32 x 32.
    let values: Vec<f32> = drawn
        .iter()
        .flat_map(|(_, image)| images::to_sample(&DynamicImage::ImageLuma8(image.clone())))
        .collect();
    let batch = drawn.len();

    let device = Default::default();
    B::seed(&device, 1);
    let model = LeNet5Config::new().init::<B>(&device);
    let x = Tensor::<B, 4>::from_data(TensorData::new(values.clone(), [batch, 1, 32, 32]), &device);
    let config = JacobianConfig::new().with_with_outputs(true);
    let j = per_sample::<_, _, 4, 5>(&model, x, &config)?;
    let logits = j.outputs.expect("asked for").into_data().to_vec::<f32>()?;
    let j = Jacobian::from_tensor(Layout::PerSample, 0, j.jacobian, &IMAGE_DIMS);

    for (b, (name, _)) in drawn.iter().enumerate() {
        let row = &logits[b * 10..(b + 1) * 10];
        let top = (0..10).max_by(|&p, &q| row[p].total_cmp(&row[q])).unwrap();
        let matrix = j.sample_matrix(b);
        let largest = matrix.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        println!(
            "row {b}: a drawn \"{name}\", largest logit: class {top} (untrained), largest |J| {largest:.3e}"
        );
    }
    let grid = saliency::render(&values, &j);
    output::write_png(output::AtomicFile::create(&path)?, &grid)?;
    println!(
        "saliency maps of {batch} images x 10 classes ({} x {} pixels, each row scaled by its largest |J|) written to {}",
        grid.width(),
        grid.height(),
        path.display()
    );
    Ok(())
}
