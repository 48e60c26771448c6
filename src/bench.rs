//! `lenet-jacobian bench`: times the Jacobian computation alone, after a warm-up.

use std::time::Instant;

use burn::module::Module;
use burn::tensor::backend::AutodiffBackend;
use jacobian::{Jacobian, JacobianConfig, Layout, Strategy};
use lenet5::{LeNet5Backend, IMAGE_DIMS};

use crate::backend::{run_on, wgpu_adapter, BackendJob, BackendKind};
use crate::compute::{differentiable, Method};
use crate::error::Result;
use crate::model::{load_model, Batch};

/// A benchmark: one backend, batch size and layout.
#[derive(Clone, Debug)]
pub struct Bench {
    /// Backend.
    pub backend: BackendKind,
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
}

/// Seconds of each timed run, sorted.
#[derive(Clone, Debug)]
pub struct Timings {
    /// Sorted durations in seconds.
    pub seconds: Vec<f64>,
    /// The device the backend ran on.
    pub device: String,
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
        let model = load_model::<B>(None, 0, &device)?.no_grad();
        let f = differentiable(&model, self.method, self.strategy);
        let x = Batch::random(self.batch, 0).to_tensor::<B::InnerBackend>(&device);
        let once = || -> Result<f64> {
            let start = Instant::now();
            // Read back to the host, as a caller who writes or reports them gets them.
            let mut values = Vec::new();
            match self.layout {
                Layout::PerSample => {
                    jacobian::per_sample_chunks(f.as_ref(), x.clone(), &self.config, |chunk| {
                        values.push(Jacobian::from_chunk(chunk, &IMAGE_DIMS));
                        Ok(())
                    })?
                }
                Layout::Full => {
                    jacobian::full_chunks(f.as_ref(), x.clone(), &self.config, |chunk| {
                        values.push(Jacobian::from_chunk(chunk, &IMAGE_DIMS));
                        Ok(())
                    })?
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

/// Runs a benchmark.
pub fn run(bench: &Bench) -> Result<Timings> {
    let device = match bench.backend {
        BackendKind::Wgpu => wgpu_adapter()?,
        BackendKind::Flex | BackendKind::Ndarray => "CPU".to_string(),
    };
    let seconds = run_on(bench.backend, bench)?;
    Ok(Timings { seconds, device })
}

/// One line of JSON describing a result.
pub fn json_line(bench: &Bench, timings: &Timings) -> String {
    serde_json::json!({
        "backend": bench.backend.name(),
        "device": timings.device,
        "batch": bench.batch,
        "layout": bench.layout.to_string(),
        "method": format!("{:?}", bench.method).to_lowercase(),
        "strategy": format!("{:?}", bench.strategy),
        "chunk_size": bench.config.chunk_size,
        "repeats": timings.seconds.len(),
        "min_s": timings.min(),
        "median_s": timings.median(),
        "max_s": timings.max(),
    })
    .to_string()
}
