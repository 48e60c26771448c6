//! Saliency maps of the shipped LeNet-5 (trained in Burn on real MNIST digits, see
//! models/README.md) for the first held-out test digits, from a program of its own: the
//! model crate loads the weights and reads the digits, the engine computes the per-sample
//! Jacobian on the device, the application's saliency module draws it.
//!
//! ```sh
//! cargo run --release --example saliency                   # writes saliency.png here
//! cargo run --release --example saliency -- out.png 8      # 8 digits
//! ```
//!
//! The application does the same from the command line:
//! `lenet-jacobian --weights models/lenet5-mnist.bpk --images data/digits --layout per-sample
//! --saliency saliency.png`.

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use burn::tensor::activation::softmax;
use jacobian::{per_sample, Jacobian, JacobianConfig, Layout};
use lenet5::import::{self, ImportConfig};
use lenet5::mnist::{DigitFrame, Mnist, Split};
use lenet_jacobian::output::{self, AtomicFile};
use lenet_jacobian::saliency::{self, Sample, Target};

type B = Flex;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let path = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("saliency.png"));
    let digits: usize = match args.next() {
        Some(n) => n.to_string_lossy().parse()?,
        None => 6,
    };
    let repository = Path::new(env!("CARGO_MANIFEST_DIR"));
    let device = Default::default();
    let model = import::load::<B>(
        &repository.join("models/lenet5-mnist.bpk"),
        &ImportConfig::new(),
        &device,
    )?
    .model;
    let test = Mnist::load(repository.join("data/mnist"), Split::Test)?.first(digits);
    let dims = model.config().input_dims();
    let images = DigitFrame::for_input(dims)?
        .images::<B>((0..test.len()).filter_map(|i| test.digit(i)), &device);

    let config = JacobianConfig::new().with_with_outputs(true);
    let j = per_sample::<_, _, 4, 5>(&model, images.clone(), &config)?;
    let probabilities = softmax(j.outputs.expect("asked for"), 1)
        .into_data()
        .to_vec::<f32>()?;
    let j = Jacobian::from_tensor(Layout::PerSample, 0, j.jacobian, &dims);
    let sample_len: usize = dims.iter().product();

    let inputs = images.into_data().to_vec::<f32>()?;
    let samples: Vec<Sample> = probabilities
        .chunks_exact(model.num_classes())
        .enumerate()
        .map(|(b, p)| {
            let (predicted, &probability) = p
                .iter()
                .enumerate()
                .max_by(|x, y| x.1.total_cmp(y.1))
                .expect("ten classes");
            println!(
                "digit {b}: label {}, predicted {predicted} with probability {probability:.3}",
                test.label(b).expect("as many labels as digits")
            );
            Sample {
                input: &inputs[b * sample_len..(b + 1) * sample_len],
                label: test.label(b).map(usize::from),
                predicted,
                probability,
            }
        })
        .collect();
    let grid = saliency::render(&samples, &j, Target::All, false);
    output::write_png(AtomicFile::create(&path)?, &grid)?;
    println!(
        "saliency maps of {} digits x 10 classes written to {}",
        samples.len(),
        path.display()
    );
    Ok(())
}
