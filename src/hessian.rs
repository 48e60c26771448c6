//! `lenet-jacobian hessian`: the input Hessian of one logit, per sample, by differentiating the
//! Jacobian's row once more ([`lenet5::differentiable::hessian`]): what
//! `torch.autograd.functional.hessian(lambda x: model(x)[b, k], x)` gives, sample by sample.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use burn::tensor::backend::AutodiffBackend;
use jacobian::python_shape;
use lenet5::differentiable::hessian;
use lenet5::LeNet5Backend;

use crate::backend::{run_on, BackendJob, BackendKind};
use crate::error::{Error, Result};
use crate::input::{self, Batch, Source};
use crate::model::{Model, Stated};
use crate::output::npy::NpyFile;
use crate::progress::Progress;

/// What `lenet-jacobian hessian` is asked.
#[derive(Clone, Debug)]
pub struct HessianRequest {
    /// Backend to run on.
    pub backend: BackendKind,
    /// The weights; `None` for seeded ones.
    pub weights: Option<PathBuf>,
    /// Seed of seeded weights and of a random input.
    pub seed: u64,
    /// The architecture, where the file does not say it.
    pub stated: Stated,
    /// The input batch.
    pub input: Source,
    /// The logit differentiated twice.
    pub class: usize,
    /// Where to write the Hessians, `[N, C, H, W, C, H, W]` float32.
    pub output: Option<PathBuf>,
    /// Rows of a Hessian computed by one backward pass.
    pub chunk_size: usize,
}

/// What the Hessians were found to be.
struct Found {
    largest: f32,
    asymmetry: f32,
    elapsed: Duration,
}

/// Computes, writes and reports the Hessians.
pub fn run(request: &HessianRequest) -> Result<()> {
    let model = Model::load(
        request.weights.as_deref(),
        request.seed,
        request.stated,
        false,
    )?;
    let config = model.config();
    if request.class >= config.num_classes {
        return Err(Error::Usage(format!(
            "--class {}: the model has {} classes (0 to {})",
            request.class,
            config.num_classes,
            config.num_classes - 1
        )));
    }
    let dims = config.input_dims();
    let (batch, notes) = input::load(&request.input, dims, false)?;
    let shape = [
        batch.len, dims[0], dims[1], dims[2], dims[0], dims[1], dims[2],
    ];
    let output = match &request.output {
        Some(path) => Some(NpyFile::create(path, &shape)?),
        None => None,
    };
    for note in notes.iter().chain(&model.notes) {
        eprintln!("note: {note}");
    }
    let job = Job {
        request,
        model: &model,
        batch: &batch,
        output,
    };
    let found = run_on(request.backend, job)?;
    print!("{}", report(request, &model, &shape, &found));
    Ok(())
}

struct Job<'a> {
    request: &'a HessianRequest,
    model: &'a Model,
    batch: &'a Batch,
    output: Option<NpyFile>,
}

impl BackendJob for Job<'_> {
    type Output = Found;

    fn run<B>(self, device: B::Device) -> Result<Found>
    where
        B: AutodiffBackend,
        B::InnerBackend: LeNet5Backend,
    {
        let start = Instant::now();
        let model = self.model.on::<B>(&device)?;
        let x = self.batch.to_tensor::<B::InnerBackend>(&device);
        let len = self.batch.sample_len();
        let mut output = self.output;
        let mut progress = Progress::new(self.batch.len as u64, "samples");
        let (mut largest, mut asymmetry) = (0.0f32, 0.0f32);
        for b in 0..self.batch.len {
            let sample = x.clone().narrow(0, b, 1);
            let h = hessian(&model, sample, self.request.class, self.request.chunk_size);
            let values = h
                .into_data()
                .convert::<f32>()
                .into_vec::<f32>()
                .expect("converted to f32");
            for i in 0..len {
                for j in 0..i {
                    let (a, t) = (values[i * len + j], values[j * len + i]);
                    asymmetry = asymmetry.max((a - t).abs());
                }
            }
            largest = values.iter().fold(largest, |m, v| m.max(v.abs()));
            if let Some(output) = output.as_mut() {
                output.write(&values)?;
            }
            progress.advance(1);
        }
        progress.finish();
        if let Some(output) = output {
            output.commit()?;
        }
        Ok(Found {
            largest,
            asymmetry,
            elapsed: start.elapsed(),
        })
    }
}

fn report(request: &HessianRequest, model: &Model, shape: &[usize; 7], found: &Found) -> String {
    let config = model.config();
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        "Input Hessian of logit {} of LeNet-5, per sample, on {}",
        request.class, request.backend
    );
    let _ = match &model.weights {
        Some(path) => writeln!(w, "weights: {}", path.display()),
        None => writeln!(w, "weights: seeded (--seed {}), untrained", model.seed),
    };
    let _ = writeln!(w, "architecture: {}", model.architecture);
    let _ = writeln!(w, "shape: {}", python_shape(shape));
    let _ = writeln!(
        w,
        "  H[b, c, h, w, c', h', w'] = d^2 logits[b, {}] / d x[b, c, h, w] d x[b, c', h', w']: \
         axis 0 the sample, axes 1-3 and 4-6 the two input pixels",
        request.class
    );
    let _ = writeln!(w, "largest |H|: {:e}", found.largest);
    let _ = writeln!(
        w,
        "largest |H - H^T|: {:e} (a Hessian is symmetric; float32 rounding apart)",
        found.asymmetry
    );
    if config.activation.is_piecewise_linear() {
        let _ = writeln!(
            w,
            "  {} activation: the network is piecewise linear in its input (max pooling too), \
             so its Hessian is zero almost everywhere",
            config.activation
        );
    }
    if let Some(path) = &request.output {
        let _ = writeln!(w, "written to {} (float32, C order)", path.display());
    }
    let _ = writeln!(w, "computed in {:.3} s", found.elapsed.as_secs_f64());
    out
}
