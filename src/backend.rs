//! The backends the application runs on, chosen at run time.

use std::fmt;

use burn::backend::wgpu::graphics::{AutoGraphicsApi, GraphicsApi};
use burn::backend::{ndarray::NdArrayDevice, wgpu::WgpuDevice, Autodiff, Flex, NdArray, Wgpu};
use burn::tensor::backend::AutodiffBackend;
use lenet5::LeNet5Backend;

use crate::error::{Error, Result};

/// A Burn backend, each wrapped in the `Autodiff` decorator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// Burn's ndarray CPU backend.
    Ndarray,
    /// Burn's wgpu backend (a GPU, or Mesa's software Vulkan driver without one).
    Wgpu,
    /// Burn's flex CPU backend (faster than ndarray on CPU).
    Flex,
}

impl BackendKind {
    /// Every backend.
    pub const ALL: [BackendKind; 3] = [BackendKind::Ndarray, BackendKind::Wgpu, BackendKind::Flex];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Ndarray => "ndarray",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Flex => "flex",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Work generic over the backend, run on the backend chosen at run time by [`run_on`].
pub trait BackendJob {
    /// What the job returns.
    type Output;
    /// Runs the job on backend `B`, device `device`.
    fn run<B>(self, device: B::Device) -> Result<Self::Output>
    where
        B: AutodiffBackend,
        B::InnerBackend: LeNet5Backend;
}

/// The adapter wgpu would run on, described for the user: `Err` when there is none (no GPU
/// and no software Vulkan driver), checked before burn-wgpu starts because burn-wgpu panics
/// without an adapter.
pub fn wgpu_adapter() -> Result<String> {
    // burn-wgpu runs on one graphics API (Vulkan on Linux): an adapter of another (OpenGL)
    // would not do.
    let instance = wgpu::Instance::default();
    let backends = wgpu::Backends::from(AutoGraphicsApi::backend());
    let adapters = pollster::block_on(instance.enumerate_adapters(backends));
    adapters
        .first()
        .map(|adapter| {
            let info = adapter.get_info();
            let kind = match info.device_type {
                wgpu::DeviceType::Cpu => " (a CPU emulating a GPU: not GPU timings)",
                _ => "",
            };
            format!("{} via {:?}{kind}", info.name, info.backend)
        })
        .ok_or(Error::NoWgpuAdapter)
}

/// Runs `job` on backend `kind`.
pub fn run_on<J: BackendJob>(kind: BackendKind, job: J) -> Result<J::Output> {
    match kind {
        BackendKind::Ndarray => job.run::<Autodiff<NdArray>>(NdArrayDevice::Cpu),
        BackendKind::Flex => job.run::<Autodiff<Flex>>(Default::default()),
        BackendKind::Wgpu => {
            wgpu_adapter()?;
            job.run::<Autodiff<Wgpu>>(WgpuDevice::default())
        }
    }
}
