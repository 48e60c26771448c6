//! The host kernels alone (what Flex runs for [`LeNet5Backend`] with the `host` feature),
//! timed without the application around them, and their Jacobians kept for comparing two
//! versions of the kernels.
//!
//! ```text
//! cargo bench -p lenet5 --features host --bench host_kernels -- [--repeats R]
//! cargo bench -p lenet5 --features host --bench host_kernels -- --write FILE
//! cargo bench -p lenet5 --features host --bench host_kernels -- --compare FILE
//! ```
//!
//! Timings: the seed's variant per-sample at batch 12 and 1024 and in the full layout at batch
//! 12, and the ReLU / max-pooling variant per-sample at batch 1024; each the median (min, max)
//! of `R` calls after one warm-up. Building this links only this crate and Burn's Flex, so a
//! kernel change is measured minutes sooner than through the application; alternate the old and
//! new binaries (`target/release/deps/host_kernels-*`) for an A/B.
//!
//! `--write` keeps the Jacobians of seeded models on a seeded batch of 7, both layouts, for four
//! variants (tanh / avg, ReLU / max, sigmoid with padding 2, three input channels);
//! `--compare` computes them again and prints each one's largest difference relative to its
//! largest entry, failing (exit 1) above 1e-6.

use std::time::Instant;

use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor, TensorData};
use lenet5::{Activation, LeNet5, LeNet5Backend, LeNet5Config, Pooling};

/// The largest difference from the kept Jacobians, relative to their largest entry, that
/// `--compare` accepts: reassociated sums in f32, not a change of what is computed.
const TOLERANCE: f32 = 1e-6;
/// The batch of the kept Jacobians.
const KEPT_BATCH: usize = 7;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1).cloned())
    };
    if let Some(path) = value("--write") {
        let kept = kept_jacobians();
        let values: Vec<u8> = kept
            .iter()
            .flat_map(|(_, j)| j.iter().flat_map(|v| v.to_le_bytes()))
            .collect();
        std::fs::write(&path, values).unwrap_or_else(|e| fail(&format!("{path}: {e}")));
        println!("wrote the Jacobians of {} cases to {path}", kept.len());
        return;
    }
    if let Some(path) = value("--compare") {
        return compare(&path);
    }
    let repeats = value("--repeats").map_or(15, |r| {
        r.parse()
            .unwrap_or_else(|_| fail(&format!("--repeats {r}: expected a count")))
    });
    let seed = LeNet5Config::new();
    let relu_max = LeNet5Config::new()
        .with_activation(Activation::Relu)
        .with_pooling(Pooling::Max);
    println!("case                              median ms    min ms    max ms");
    time("seed, per-sample, batch 12", &seed, 12, false, repeats);
    time("seed, per-sample, batch 1024", &seed, 1024, false, repeats);
    time("seed, full, batch 12", &seed, 12, true, repeats);
    time(
        "relu/max, per-sample, batch 1024",
        &relu_max,
        1024,
        false,
        repeats,
    );
}

fn fail(message: &str) -> ! {
    eprintln!("host_kernels: {message}");
    std::process::exit(2)
}

/// A model of `config` and a batch of `batch` images, both seeded.
fn seeded(config: &LeNet5Config, batch: usize) -> (LeNet5<Flex>, Tensor<Flex, 4>) {
    let device = Default::default();
    Flex::seed(&device, 0);
    let model = config.init::<Flex>(&device);
    let [c, h, w] = config.input_dims();
    let images = Tensor::random([batch, c, h, w], Distribution::Default, &device);
    (model, images)
}

/// The Jacobian of one call (the full layout's rows of every sample, or the per-sample
/// layout), as the backend hands it to a caller on the host: read, not copied.
fn jacobian(model: &LeNet5<Flex>, images: Tensor<Flex, 4>, full: bool) -> TensorData {
    let n = images.dims()[0];
    if full {
        Flex::lenet5_full_rows(model, images, 0..n)
            .jacobian
            .into_data()
    } else {
        Flex::lenet5_per_sample(model, images).jacobian.into_data()
    }
}

fn time(name: &str, config: &LeNet5Config, batch: usize, full: bool, repeats: usize) {
    let (model, images) = seeded(config, batch);
    let call = || jacobian(&model, images.clone(), full);
    call(); // warm-up: threads, scratch buffers, pages
    let mut seconds: Vec<f64> = (0..repeats.max(1))
        .map(|_| {
            let start = Instant::now();
            call();
            start.elapsed().as_secs_f64()
        })
        .collect();
    seconds.sort_by(f64::total_cmp);
    let ms = |s: f64| s * 1e3;
    println!(
        "{name:<32} {:>9.2} {:>9.2} {:>9.2}",
        ms(seconds[seconds.len() / 2]),
        ms(seconds[0]),
        ms(seconds[seconds.len() - 1])
    );
}

/// The Jacobians `--write` keeps, with their cases' names.
fn kept_jacobians() -> Vec<(String, Vec<f32>)> {
    let variants = [
        ("tanh/avg", LeNet5Config::new()),
        (
            "relu/max",
            LeNet5Config::new()
                .with_activation(Activation::Relu)
                .with_pooling(Pooling::Max),
        ),
        (
            "sigmoid, padding 2",
            LeNet5Config::new()
                .with_activation(Activation::Sigmoid)
                .with_padding(2),
        ),
        ("3 channels", LeNet5Config::new().with_in_channels(3)),
    ];
    let mut kept = Vec::new();
    for (name, config) in variants {
        let (model, images) = seeded(&config, KEPT_BATCH);
        for full in [false, true] {
            let layout = if full { "full" } else { "per-sample" };
            let values = jacobian(&model, images.clone(), full).to_vec::<f32>();
            kept.push((
                format!("{name}, {layout}"),
                values.expect("an f32 Jacobian"),
            ));
        }
    }
    kept
}

fn compare(path: &str) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| fail(&format!("{path}: {e}")));
    let mut old = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let mut worst = 0.0f32;
    let kept = kept_jacobians();
    let expected: usize = kept.iter().map(|(_, j)| j.len()).sum();
    if bytes.len() != 4 * expected {
        fail(&format!(
            "{path}: {} values, expected {expected}",
            bytes.len() / 4
        ));
    }
    for (name, new) in kept {
        let largest = new.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let difference = new
            .iter()
            .zip(old.by_ref())
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        let relative = difference / largest;
        println!("{name:<32} max |new - old| / max |J| = {relative:.2e}");
        worst = worst.max(if relative.is_nan() {
            f32::INFINITY
        } else {
            relative
        });
    }
    if worst > TOLERANCE {
        eprintln!(
            "host_kernels: the Jacobians moved by {worst:.2e} x max |J|, above {TOLERANCE:.0e}"
        );
        std::process::exit(1);
    }
}
