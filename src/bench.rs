//! `lenet-jacobian bench`: times the Jacobian computation alone, after a warm-up.

use std::time::Instant;

use burn::module::Module;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;
use jacobian::{Jacobian, JacobianConfig, Layout, Strategy};
use lenet5::{LeNet5, LeNet5Backend};

use crate::backend::{run_on, wgpu_adapter, BackendJob, BackendKind};
use crate::error::Result;
use crate::input::Batch;
use crate::model::{Model, Stated};
use crate::run::{differentiable, Method};

/// A benchmark: one backend, batch size and layout.
#[derive(Clone, Debug)]
pub struct Bench {
    /// Backend.
    pub backend: BackendKind,
    /// The variant of the (seeded) model.
    pub stated: Stated,
    /// Samples.
    pub batch: usize,
    /// Layout.
    pub layout: Layout,
    /// Timed runs after the warm-up.
    pub repeats: usize,
    /// Engine options.
    pub config: JacobianConfig,
    /// How reverse mode gathers rows.
    pub strategy: Strategy,
    /// Autodiff engine or LeNet-5's specialised path.
    pub method: Method,
    /// Time the plain Burn passes reverse mode needs instead of the engine (see [`plain_pass`]).
    pub plain_pass: bool,
    /// Print a JSON line rather than text.
    pub json: bool,
}

impl Bench {
    /// What is timed: the method, or the plain passes.
    fn way(&self) -> &'static str {
        match (self.plain_pass, self.method) {
            (true, _) => "plain-pass",
            (false, Method::Autodiff) => "autodiff",
            (false, Method::Analytic) => "analytic",
        }
    }
}

/// Seconds of each timed run, sorted.
#[derive(Clone, Debug)]
pub struct Timings {
    /// Sorted durations in seconds.
    pub seconds: Vec<f64>,
    /// The device the backend ran on.
    pub device: String,
    /// The variant timed, in words.
    pub architecture: String,
}

impl Timings {
    /// Fastest run.
    pub fn min(&self) -> f64 {
        self.seconds[0]
    }
    /// Median run.
    pub fn median(&self) -> f64 {
        let n = self.seconds.len();
        if n % 2 == 1 {
            self.seconds[n / 2]
        } else {
            (self.seconds[n / 2 - 1] + self.seconds[n / 2]) / 2.0
        }
    }
    /// Slowest run.
    pub fn max(&self) -> f64 {
        self.seconds[self.seconds.len() - 1]
    }
}

impl BackendJob for &Bench {
    type Output = Vec<f64>;

    fn run<B>(self, device: B::Device) -> Result<Vec<f64>>
    where
        B: AutodiffBackend,
        B::InnerBackend: LeNet5Backend,
    {
        let seeded = Model::load(None, 0, self.stated, false)?;
        let dims = seeded.config().input_dims();
        let model = seeded.on::<B>(&device)?.no_grad();
        let f = differentiable(&model, self.method, self.strategy);
        let x = Batch::random(self.batch, dims, 0).to_tensor::<B::InnerBackend>(&device);
        let once = || -> Result<f64> {
            let start = Instant::now();
            // Read back to the host, as a caller who writes or reports them gets them.
            let mut values = Vec::new();
            match self.layout {
                Layout::PerSample if self.plain_pass => {
                    let chunk = self.config.chunk_size.unwrap_or(self.batch);
                    for start in (0..self.batch).step_by(chunk) {
                        let n = chunk.min(self.batch - start);
                        let x = x.clone().narrow(0, start, n);
                        values.push(plain_pass(&model, x).into_data().to_vec::<f32>());
                    }
                }
                Layout::PerSample => {
                    jacobian::per_sample_chunks(f.as_ref(), x.clone(), &self.config, |chunk| {
                        values.push(Ok(Jacobian::from_chunk(chunk, &dims).values));
                        Ok(())
                    })?;
                }
                Layout::Full => {
                    jacobian::full_chunks(f.as_ref(), x.clone(), &self.config, |chunk| {
                        values.push(Ok(Jacobian::from_chunk(chunk, &dims).values));
                        Ok(())
                    })?;
                }
            };
            std::hint::black_box(values);
            Ok(start.elapsed().as_secs_f64())
        };
        once()?; // warm-up: kernels compiled, memory pools filled
        let mut seconds = (0..self.repeats.max(1))
            .map(|_| once())
            .collect::<Result<Vec<_>>>()?;
        seconds.sort_by(f64::total_cmp);
        Ok(seconds)
    }
}

/// One forward and one backward pass of `model` over `x` stacked once per class, copy `k`
/// carrying the cotangent of logit `k`: the passes Burn needs for the per-sample Jacobian of
/// `x` by reverse mode, without the engine around them. Timing it against the engine gives
/// what the engine adds.
///
/// # Shapes
///
/// - x: `[n, channels, size, size]`
/// - output: `[classes * n, channels, size, size]`, the gradient of the stacked input
pub fn plain_pass<B: AutodiffBackend>(
    model: &LeNet5<B>,
    x: Tensor<B::InnerBackend, 4>,
) -> Tensor<B::InnerBackend, 4> {
    let (n, classes, device) = (x.dims()[0], model.num_classes(), x.device());
    let stacked = Tensor::<B, 4>::from_inner(Tensor::cat(vec![x; classes], 0)).require_grad();
    let cotangents = Tensor::<B::InnerBackend, 2>::eye(classes, &device)
        .reshape([classes, 1, classes])
        .expand([classes, n, classes])
        .reshape([classes * n, classes]);
    let logits = model.forward(stacked.clone());
    let grads = (logits * Tensor::from_inner(cotangents)).sum().backward();
    stacked.grad(&grads).expect("the input is tracked")
}

/// Runs a benchmark and prints its result on stdout (text, or a JSON line).
pub fn run(bench: &Bench) -> Result<()> {
    let device = match bench.backend {
        BackendKind::Wgpu => wgpu_adapter()?,
        BackendKind::Flex | BackendKind::Ndarray => "CPU".to_string(),
    };
    let timings = Timings {
        seconds: run_on(bench.backend, bench)?,
        device,
        architecture: Model::load(None, 0, bench.stated, false)?
            .config()
            .summary(),
    };
    if bench.json {
        println!("{}", json_line(bench, &timings));
    } else {
        println!(
            "{} {} {} batch {} on {} ({}, {}): min {:.4} s, median {:.4} s, max {:.4} s over {} runs",
            bench.layout,
            bench.way(),
            format!("{:?}", bench.strategy).to_lowercase(),
            bench.batch,
            bench.backend,
            timings.device,
            timings.architecture,
            timings.min(),
            timings.median(),
            timings.max(),
            timings.seconds.len()
        );
    }
    Ok(())
}

/// One line of JSON describing a result.
fn json_line(bench: &Bench, timings: &Timings) -> String {
    serde_json::json!({
        "backend": bench.backend.name(),
        "architecture": timings.architecture,
        "device": timings.device,
        "batch": bench.batch,
        "layout": bench.layout.to_string(),
        "method": bench.way(),
        "strategy": format!("{:?}", bench.strategy),
        "chunk_size": bench.config.chunk_size,
        "repeats": timings.seconds.len(),
        "min_s": timings.min(),
        "median_s": timings.median(),
        "max_s": timings.max(),
    })
    .to_string()
}
