//! Training LeNet-5 on MNIST with burn-train's `Learner`.
//!
//! What the learner needs, for any autodiff backend: the training and validation steps of
//! [`LeNet5`] (logits and cross-entropy loss, as a [`ClassificationOutput`]) and of
//! [`Regularized`] (the same with a Jacobian penalty added to the loss, and each sample's
//! `||J||_F` reported), a [`Dataset`] over [`Mnist`] and the [`MnistBatcher`] making
//! `[batch, 1, 32, 32]` images of its digits (for training, each moved by a random translation
//! of up to 2 pixels); and [`train`], which runs it all with Adam and prints each epoch's loss,
//! accuracy and mean Jacobian norm.
//!
//! The Jacobian penalty `lambda / 2 * mean_b ||J_b||_F^2` (Drucker and LeCun's double
//! backpropagation; Hoffman, Roberts and Yaida's Jacobian regularisation) needs the gradient of
//! a gradient, which Burn does not have; LeNet-5's Jacobian written in tensor ops
//! ([`differentiable`](crate::differentiable)) gives it.
//!
//! ```no_run
//! use burn::backend::{Autodiff, Flex};
//! use lenet5::train::{train, TrainingConfig};
//!
//! let config = TrainingConfig::new(); // 20 epochs, Adam 1e-3, batches of 64, shifts of 2
//! let device = Default::default();
//! let model = train::<Autodiff<Flex>>(&config, "data/mnist", "/tmp/lenet5-train", &device)?;
//! let bytes = lenet5::import::to_burnpack_bytes(&model)?; // with the `import` feature
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! burn-train is used without its default features: its terminal UI (`tui`) would need
//! ratatui, so progress is printed by [`EpochRenderer`] instead.

use std::collections::HashMap;
use std::io::{self, IsTerminal, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::backend::Flex;
use burn::config::Config;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoaderBuilder, Progress};
use burn::data::dataset::transform::{PartialDataset, ShuffledDataset};
use burn::data::dataset::Dataset;
use burn::module::{AutodiffModule, Module, ModuleMapper, Param, ParamId};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::AdamConfig;
use burn::prelude::ToElement;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use burn_train::metric::state::{FormatOptions, NumericMetricState};
use burn_train::metric::{
    AccuracyInput, AccuracyMetric, Adaptor, ItemLazy, LossInput, LossMetric, Metric,
    MetricAttributes, MetricDefinition, MetricId, MetricMetadata, MetricName, Numeric,
    NumericAttributes, NumericEntry, SerializedEntry,
};
use burn_train::renderer::{
    EvaluationName, EvaluationProgress, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining, ProgressType, TrainingProgress,
};
use burn_train::{
    ClassificationOutput, InferenceStep, Learner, LearnerSummary, SupervisedTraining, TrainOutput,
    TrainStep,
};

use crate::differentiable::{jacobian_penalty, NormEstimator};
use crate::mnist::{DigitFrame, Mnist, MnistError, Split, MNIST_CLASSES, MNIST_PIXELS};
use crate::{LeNet5, LeNet5Backend, LeNet5Config};

/// The frame training digits are put in: the 32 x 32 of the LeNet-5 trained.
const FRAME: DigitFrame = DigitFrame::LENET5;

/// Hyper-parameters of [`train`]. `TrainingConfig::new()` has the defaults, the recipe of the
/// weights shipped in `models/lenet5-mnist.bpk`; it is saved as `config.json` in the artifact
/// directory.
#[derive(Config, Debug)]
pub struct TrainingConfig {
    /// Passes over the training digits.
    #[config(default = 20)]
    pub num_epochs: usize,
    /// Digits per optimisation step.
    #[config(default = 64)]
    pub batch_size: usize,
    /// Adam's learning rate, constant over the training.
    #[config(default = 1e-3)]
    pub learning_rate: f64,
    /// Seed of the initial weights and of the order the training digits are visited in.
    #[config(default = 42)]
    pub seed: u64,
    /// Threads making batches. With more than one, batches come in the order the threads
    /// finish them, which varies from run to run: training is then not reproducible.
    #[config(default = 1)]
    pub num_workers: usize,
    /// Largest random translation of a training digit, in whole pixels along each axis (0:
    /// none); at most 2, the zero border LeNet-5's input has around an MNIST digit, so no ink
    /// is cut. Validation digits are never moved.
    #[config(default = 2)]
    pub max_shift: usize,
    /// Weight `lambda` of the Jacobian penalty `lambda / 2 * mean_b ||J_b||_F^2` added to the
    /// cross-entropy (0: plain training).
    #[config(default = 0.0)]
    pub jacobian_penalty: f64,
    /// How the penalty's norms are computed: 0 for every row of the Jacobian (exact, ten rows
    /// per digit), `n` for Hoffman et al.'s unbiased estimate from `n` random projections (`n`
    /// rows per digit).
    #[config(default = 0)]
    pub penalty_projections: usize,
    /// Training digits held back to validate on instead of the held-out test digits (a random
    /// choice drawn from the seed): what a hyper-parameter such as `jacobian_penalty` is chosen
    /// on. 0: every training digit is trained on, and the test digits are evaluated after
    /// each epoch (for the record; nothing is chosen on them).
    #[config(default = 0)]
    pub validation_digits: usize,
}

impl TrainingConfig {
    /// The penalty the training step adds to the loss.
    pub fn penalty(&self) -> Penalty {
        Penalty {
            lambda: self.jacobian_penalty,
            estimator: match self.penalty_projections {
                0 => NormEstimator::Exact,
                n => NormEstimator::Projections(n),
            },
        }
    }

    fn check(&self) -> Result<(), TrainError> {
        let problem = if self.num_epochs == 0 {
            "num_epochs is 0, expected at least 1".to_string()
        } else if self.batch_size == 0 {
            "batch_size is 0, expected at least 1".to_string()
        } else if self.max_shift > FRAME.border() {
            format!(
                "max_shift is {}, at most {} keeps the digit inside the image",
                self.max_shift,
                FRAME.border()
            )
        } else if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            format!(
                "learning_rate is {}, expected a positive number",
                self.learning_rate
            )
        } else if !(self.jacobian_penalty.is_finite() && self.jacobian_penalty >= 0.0) {
            format!(
                "jacobian_penalty is {}, expected a number >= 0",
                self.jacobian_penalty
            )
        } else {
            return Ok(());
        };
        Err(TrainError::Config(problem))
    }
}

/// Why [`train`] could not run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The MNIST files are missing or corrupt.
    #[error(transparent)]
    Data(#[from] MnistError),
    /// A hyper-parameter out of range.
    #[error("invalid training configuration: {0}")]
    Config(String),
    /// The artifact directory cannot be written.
    #[error("{}: {source}", path.display())]
    Artifacts {
        /// The directory or file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
}

/// One MNIST digit and its label, as [`Mnist`]'s [`Dataset`] hands them out.
#[derive(Clone, Debug)]
pub struct MnistItem {
    /// 28 x 28 pixels, row-major.
    pub digit: [u8; MNIST_PIXELS],
    /// The digit it shows, 0 to 9.
    pub label: u8,
}

impl Dataset<MnistItem> for Mnist {
    fn get(&self, index: usize) -> Option<MnistItem> {
        Some(MnistItem {
            digit: *self.digit(index)?,
            label: self.label(index)?,
        })
    }

    fn len(&self) -> usize {
        Mnist::len(self)
    }
}

/// A batch of digits for the training and validation steps.
///
/// # Shapes
///
/// - images: `[batch, 1, 32, 32]`, made by [`DigitFrame::input`]
/// - targets: `[batch]`, the labels
#[derive(Clone, Debug)]
pub struct MnistBatch<B: Backend> {
    /// The digits, padded to 32 x 32 and scaled to [0, 1].
    pub images: Tensor<B, 4>,
    /// Their labels.
    pub targets: Tensor<B, 1, Int>,
}

/// Makes [`MnistBatch`]es of [`MnistItem`]s, the digits as they are or, for training, each
/// moved by a random translation.
#[derive(Debug, Default)]
pub struct MnistBatcher {
    /// Largest translation along each axis, and the generator drawing them.
    shifts: Option<(usize, Mutex<SplitMix64>)>,
}

impl MnistBatcher {
    /// Batches of the digits as they are (validation, test).
    pub fn new() -> Self {
        Self { shifts: None }
    }

    /// Batches of digits each moved by a translation drawn uniformly from `-max_shift..=max_shift`
    /// pixels along each axis (`max_shift` at most 2, LeNet-5's zero border around an MNIST
    /// digit), from a generator seeded with `seed`. With one thread making the batches, the
    /// same seed gives the same translations.
    ///
    /// # Panics
    ///
    /// When `max_shift` is more than 2.
    pub fn with_random_shifts(max_shift: usize, seed: u64) -> Self {
        assert!(
            max_shift <= FRAME.border(),
            "a shift of {max_shift} pixels would cut MNIST digits"
        );
        Self {
            shifts: Some((max_shift, Mutex::new(SplitMix64(seed)))),
        }
    }
}

impl<B: Backend> Batcher<B, MnistItem, MnistBatch<B>> for MnistBatcher {
    fn batch(&self, items: Vec<MnistItem>, device: &B::Device) -> MnistBatch<B> {
        let images = match &self.shifts {
            None => FRAME.images(items.iter().map(|item| &item.digit), device),
            Some((max_shift, generator)) => {
                let mut generator = generator.lock().unwrap_or_else(|e| e.into_inner());
                let span = 2 * *max_shift as u64 + 1;
                let mut shift = || (generator.next() % span) as isize - *max_shift as isize;
                let values = items
                    .iter()
                    .flat_map(|item| {
                        let (down, right) = (shift(), shift());
                        FRAME.shifted_input(&item.digit, down, right)
                    })
                    .collect();
                FRAME.to_images(values, device)
            }
        };
        let labels: Vec<i64> = items.iter().map(|item| i64::from(item.label)).collect();
        let targets = Tensor::from_data(TensorData::new(labels, [items.len()]), device);
        MnistBatch { images, targets }
    }
}

/// SplitMix64 (Steele, Lea and Flood, 2014): a small seeded generator for the translations,
/// the same numbers on every platform and version.
#[derive(Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl<B: Backend> LeNet5<B> {
    /// Logits and mean cross-entropy loss of a batch (softmax over the logits, as PyTorch's
    /// `nn.CrossEntropyLoss`): what the training and validation steps report.
    ///
    /// # Shapes
    ///
    /// - images: `[batch, 1, 32, 32]`
    /// - targets: `[batch]`, class indices
    /// - output: loss `[1]`, logits `[batch, num_classes]`, targets `[batch]`
    pub fn forward_classification(
        &self,
        images: Tensor<B, 4>,
        targets: Tensor<B, 1, Int>,
    ) -> ClassificationOutput<B> {
        let logits = self.forward(images);
        let loss = CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits.clone(), targets.clone());
        ClassificationOutput::new(loss, logits, targets)
    }
}

impl<B: AutodiffBackend> TrainStep for LeNet5<B> {
    type Input = MnistBatch<B>;
    type Output = ClassificationOutput<B>;

    fn step(&self, batch: MnistBatch<B>) -> TrainOutput<ClassificationOutput<B>> {
        let output = self.forward_classification(batch.images, batch.targets);
        TrainOutput::new(self, output.loss.backward(), output)
    }
}

impl<B: Backend> InferenceStep for LeNet5<B> {
    type Input = MnistBatch<B>;
    type Output = ClassificationOutput<B>;

    fn step(&self, batch: MnistBatch<B>) -> ClassificationOutput<B> {
        self.forward_classification(batch.images, batch.targets)
    }
}

/// The Jacobian penalty of a training step: `lambda / 2 * mean_b ||J_b||_F^2`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Penalty {
    /// Its weight (0: none).
    pub lambda: f64,
    /// How `||J_b||_F^2` is computed.
    pub estimator: NormEstimator,
}

/// LeNet-5 as [`train`] trains it: its training step adds the [`Penalty`] to the
/// cross-entropy, and both steps report each sample's `||J||_F`.
#[derive(Module, Debug)]
pub struct Regularized<B: Backend> {
    /// The network.
    pub model: LeNet5<B>,
    /// What the training step adds to the loss.
    pub penalty: Penalty,
}

/// What [`Regularized`]'s steps report: the cross-entropy (without the penalty, to compare
/// with plain training), the logits and targets, and each sample's Jacobian norm.
pub struct RegularizedOutput<B: Backend> {
    /// Loss (the cross-entropy), logits and targets.
    pub classification: ClassificationOutput<B>,
    /// `||J_b||_F` of each sample, `[batch]`, every row of the Jacobian.
    pub jacobian_norms: Tensor<B, 1>,
}

/// `||J_b||_F` of each sample, exact, out of the graph, by the backend's fastest way (the host
/// kernels on the CPU backends), and the logits.
fn jacobian_norms<B: LeNet5Backend>(
    model: &LeNet5<B>,
    images: Tensor<B, 4>,
) -> (Tensor<B, 1>, Tensor<B, 2>) {
    let per_sample = B::lenet5_per_sample(model, images);
    let [n, _, _] = per_sample.jacobian.dims();
    let norms = per_sample
        .jacobian
        .powi_scalar(2)
        .sum_dim(2)
        .sum_dim(1)
        .reshape([n])
        .sqrt();
    (norms, per_sample.outputs)
}

impl<B> TrainStep for Regularized<B>
where
    B: AutodiffBackend,
    B::InnerBackend: LeNet5Backend,
{
    type Input = MnistBatch<B>;
    type Output = RegularizedOutput<B>;

    fn step(&self, batch: MnistBatch<B>) -> TrainOutput<RegularizedOutput<B>> {
        let Penalty { lambda, estimator } = self.penalty;
        let inner_norms = || {
            let images = batch.images.clone().inner();
            Tensor::from_inner(jacobian_norms(&self.model.valid(), images).0)
        };
        if lambda == 0.0 {
            // Plain training, the very step of LeNet5's own TrainStep.
            let output = TrainStep::step(&self.model, batch.clone());
            let jacobian_norms = inner_norms();
            return TrainOutput {
                grads: output.grads,
                item: RegularizedOutput {
                    classification: output.item,
                    jacobian_norms,
                },
            };
        }
        let penalized = jacobian_penalty(&self.model, batch.images.clone(), lambda, estimator);
        let loss = CrossEntropyLossConfig::new()
            .init(&penalized.logits.device())
            .forward(penalized.logits.clone(), batch.targets.clone());
        let grads = (loss.clone() + penalized.penalty).backward();
        let jacobian_norms = match estimator {
            NormEstimator::Exact => penalized.squared_norms.detach().sqrt(),
            // The estimate is the penalty's; the report is of the exact norms.
            NormEstimator::Projections(_) => inner_norms(),
        };
        let classification = ClassificationOutput::new(loss, penalized.logits, batch.targets);
        TrainOutput::new(
            self,
            grads,
            RegularizedOutput {
                classification,
                jacobian_norms,
            },
        )
    }
}

impl<B: LeNet5Backend> InferenceStep for Regularized<B> {
    type Input = MnistBatch<B>;
    type Output = RegularizedOutput<B>;

    fn step(&self, batch: MnistBatch<B>) -> RegularizedOutput<B> {
        let (jacobian_norms, logits) = jacobian_norms(&self.model, batch.images);
        let loss = CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits.clone(), batch.targets.clone());
        RegularizedOutput {
            classification: ClassificationOutput::new(loss, logits, batch.targets),
            jacobian_norms,
        }
    }
}

impl<B: Backend> ItemLazy for RegularizedOutput<B> {
    type ItemSync = RegularizedOutput<Flex>;

    fn sync(self) -> RegularizedOutput<Flex> {
        let norms = self.jacobian_norms.into_data();
        RegularizedOutput {
            classification: self.classification.sync(),
            jacobian_norms: Tensor::from_data(norms, &Default::default()),
        }
    }
}

impl<B: Backend> Adaptor<LossInput<B>> for RegularizedOutput<B> {
    fn adapt(&self) -> LossInput<B> {
        self.classification.adapt()
    }
}

impl<B: Backend> Adaptor<AccuracyInput<B>> for RegularizedOutput<B> {
    fn adapt(&self) -> AccuracyInput<B> {
        self.classification.adapt()
    }
}

impl<B: Backend> Adaptor<JacobianNormInput<B>> for RegularizedOutput<B> {
    fn adapt(&self) -> JacobianNormInput<B> {
        JacobianNormInput {
            norms: self.jacobian_norms.clone(),
        }
    }
}

/// The input of [`JacobianNormMetric`]: each sample's `||J||_F`.
pub struct JacobianNormInput<B: Backend> {
    norms: Tensor<B, 1>,
}

/// The mean Frobenius norm of the samples' input Jacobians, `mean_b ||J_b||_F`: what the
/// penalty lowers.
#[derive(Clone)]
pub struct JacobianNormMetric<B: Backend> {
    name: Arc<String>,
    state: NumericMetricState,
    _backend: PhantomData<B>,
}

impl<B: Backend> JacobianNormMetric<B> {
    /// The metric, named `Jacobian norm`.
    pub fn new() -> Self {
        Self {
            name: Arc::new("Jacobian norm".to_string()),
            state: NumericMetricState::default(),
            _backend: PhantomData,
        }
    }
}

impl<B: Backend> Default for JacobianNormMetric<B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B: Backend> Metric for JacobianNormMetric<B> {
    type Input = JacobianNormInput<B>;

    fn update(
        &mut self,
        input: &JacobianNormInput<B>,
        _metadata: &MetricMetadata,
    ) -> SerializedEntry {
        let [batch] = input.norms.dims();
        let mean = input.norms.clone().mean().into_scalar().to_f64();
        self.state
            .update(mean, batch, FormatOptions::new(self.name()).precision(4))
    }

    fn clear(&mut self) {
        self.state.reset()
    }

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes {
            unit: None,
            higher_is_better: false,
        }
        .into()
    }
}

impl<B: Backend> Numeric for JacobianNormMetric<B> {
    fn value(&self) -> NumericEntry {
        self.state.current_value()
    }

    fn running_value(&self) -> NumericEntry {
        self.state.running_value()
    }
}

/// Trains a LeNet-5 (10 classes, weights drawn from `config.seed`) on the training digits of
/// `data_dir` ([`Mnist::load`], [`Split::Train`]) with Adam, each digit moved by a random
/// translation of up to `config.max_shift` pixels every time it is seen, the loss the
/// cross-entropy plus `config`'s Jacobian [`Penalty`] ([`Regularized`]); validating after each
/// epoch on the held-out test digits ([`Split::Test`]) or, with `config.validation_digits`, on
/// that many training digits held back. Returns the trained model, without autodiff, its
/// parameter ids numbered 0, 1, 2... so that its record is reproducible.
///
/// Prints each epoch's mean loss (the cross-entropy), accuracy and `||J||_F` on both sets
/// ([`EpochRenderer`]). Writes into `artifact_dir` the configuration (`config.json`) and
/// burn-train's per-epoch metric logs (`train/`, `valid/`). It installs no global logger:
/// burn-train's `log` messages go to the logger the program installs, if any.
///
/// With `num_workers <= 1` and a deterministic backend, two runs with the same configuration
/// give the same weights.
pub fn train<B>(
    config: &TrainingConfig,
    data_dir: impl AsRef<Path>,
    artifact_dir: impl AsRef<Path>,
    device: &B::Device,
) -> Result<LeNet5<B::InnerBackend>, TrainError>
where
    B: AutodiffBackend,
    B::InnerBackend: LeNet5Backend,
{
    config.check()?;
    let (data_dir, artifact_dir) = (data_dir.as_ref(), artifact_dir.as_ref());
    let (train_set, valid_set) = datasets(config, data_dir)?;

    let artifacts_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TrainError::Artifacts { path, source }
    };
    std::fs::create_dir_all(artifact_dir).map_err(artifacts_error(artifact_dir))?;
    let config_path = artifact_dir.join("config.json");
    config
        .save(&config_path)
        .map_err(artifacts_error(&config_path))?;

    B::seed(device, config.seed);
    let model = Regularized {
        model: LeNet5Config::new()
            .with_num_classes(MNIST_CLASSES)
            .init::<B>(device),
        penalty: config.penalty(),
    };

    let train_batcher = match config.max_shift {
        0 => MnistBatcher::new(),
        max_shift => MnistBatcher::with_random_shifts(max_shift, config.seed),
    };
    let train_loader = DataLoaderBuilder::new(train_batcher)
        .batch_size(config.batch_size)
        .shuffle(config.seed)
        .num_workers(config.num_workers)
        .set_device(device.clone())
        .build(train_set);
    let valid_loader = DataLoaderBuilder::new(MnistBatcher::new())
        .batch_size(config.batch_size)
        .num_workers(config.num_workers)
        .set_device(device.clone())
        .build(valid_set);

    let training = SupervisedTraining::new(artifact_dir, train_loader, valid_loader)
        .metrics((
            LossMetric::new(),
            AccuracyMetric::new(),
            JacobianNormMetric::new(),
        ))
        .num_epochs(config.num_epochs)
        .renderer(EpochRenderer::new())
        // burn-train's default installs a global tracing subscriber and a panic hook: the
        // program's business, not a library function's.
        .with_application_logger(None);
    let learner = Learner::new(model, AdamConfig::new().init(), config.learning_rate);
    let model = training.launch(learner).model.model;
    Ok(model.map(&mut NumberParams { next: 0 }))
}

/// The digits trained on and those validated on: all training digits and the test digits, or,
/// with `config.validation_digits`, a seeded random choice of the training digits held back.
fn datasets(config: &TrainingConfig, data_dir: &Path) -> Result<(DigitSet, DigitSet), TrainError> {
    let train_set = Mnist::load(data_dir, Split::Train)?;
    let held_back = config.validation_digits;
    if held_back == 0 {
        return Ok((
            Arc::new(train_set),
            Arc::new(Mnist::load(data_dir, Split::Test)?),
        ));
    }
    let len = train_set.len();
    if held_back >= len {
        return Err(TrainError::Config(format!(
            "validation_digits is {held_back}, and there are {len} training digits"
        )));
    }
    let shuffled = Arc::new(ShuffledDataset::new(train_set, config.seed));
    Ok((
        Arc::new(PartialDataset::new(shuffled.clone(), held_back, len)),
        Arc::new(PartialDataset::new(shuffled, 0, held_back)),
    ))
}

/// Digits as the data loaders take them.
type DigitSet = Arc<dyn Dataset<MnistItem>>;

/// Gives a model's parameters the ids 0, 1, 2... in module order. Burn draws them at random,
/// and records hold them: renumbered, the same weights make the same bytes, run after run.
struct NumberParams {
    next: u64,
}

impl<B: Backend> ModuleMapper<B> for NumberParams {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (_, tensor, mapper) = param.consume();
        let id = ParamId::from(self.next);
        self.next += 1;
        Param::from_mapped_value(id, tensor, mapper)
    }
}

/// Prints burn-train's progress as plain lines, for burn-train without its `tui` feature
/// (whose own fallback, `CliMetricsRenderer`, prints a debug dump of every iteration and no
/// metric).
///
/// At the end of each epoch, one line per split with the mean of each numeric metric over the
/// epoch's items (every batch weighted by its number of items):
///
/// ```text
/// epoch 20/20  train  accuracy 97.20%  loss 0.0877  (4000 items, 1.6 s)
/// epoch 20/20  valid  accuracy 96.50%  loss 0.1156  (1000 items, 0.1 s)
/// ```
///
/// While an epoch runs and stdout is a terminal, the same line updates in place after every
/// batch.
pub struct EpochRenderer {
    metrics: Vec<MetricColumn>,
    train: SplitTotals,
    valid: SplitTotals,
    test: SplitTotals,
    test_name: Option<String>,
    live: bool,
}

/// A metric as the renderer prints it.
struct MetricColumn {
    id: MetricId,
    name: String,
    unit: Option<String>,
}

/// Sums of one split's metrics over the epoch so far.
#[derive(Default)]
struct SplitTotals {
    epoch: usize,
    items: usize,
    /// The current batch's values, weighted once its number of items is known.
    pending: Vec<(MetricId, f64)>,
    sums: HashMap<MetricId, f64>,
    started: Option<Instant>,
    /// A live line is on the terminal, not yet ended by a newline.
    live_line: bool,
}

impl EpochRenderer {
    /// A renderer printing to stdout; a live line only when stdout is a terminal.
    pub fn new() -> Self {
        Self {
            metrics: Vec::new(),
            train: SplitTotals::default(),
            valid: SplitTotals::default(),
            test: SplitTotals::default(),
            test_name: None,
            live: io::stdout().is_terminal(),
        }
    }

    fn line(&self, totals: &SplitTotals, label: &str, epoch: &Progress, items: usize) -> String {
        let width = epoch.items_total.to_string().len();
        let mut line = if epoch.items_total > 0 {
            format!(
                "epoch {:>width$}/{}  {label}",
                epoch.items_processed, epoch.items_total
            )
        } else {
            label.to_string()
        };
        for metric in &self.metrics {
            let Some(sum) = totals.sums.get(&metric.id) else {
                continue;
            };
            let mean = sum / items.max(1) as f64;
            match metric.unit.as_deref() {
                Some("%") => line += &format!("  {} {mean:.2}%", metric.name),
                Some(unit) => line += &format!("  {} {mean:.4} {unit}", metric.name),
                None => line += &format!("  {} {mean:.4}", metric.name),
            }
        }
        line
    }
}

impl Default for EpochRenderer {
    fn default() -> Self {
        Self::new()
    }
}

impl SplitTotals {
    fn update(&mut self, state: MetricState) {
        if let MetricState::Numeric(entry, value) = state {
            let value = match value {
                NumericEntry::Value(value) => value,
                NumericEntry::Aggregated {
                    aggregated_value, ..
                } => aggregated_value,
            };
            self.pending.push((entry.metric_id, value));
        }
    }

    /// Adds the pending batch, `progress` being the split's progress after it; returns whether
    /// the split's epoch is complete.
    fn record(&mut self, epoch: usize, progress: &Progress) -> bool {
        if epoch != self.epoch || progress.items_processed < self.items {
            self.epoch = epoch;
            self.items = 0;
            self.sums.clear();
            self.started = None;
        }
        self.started.get_or_insert_with(Instant::now);
        let batch_items = (progress.items_processed - self.items) as f64;
        self.items = progress.items_processed;
        for (id, value) in self.pending.drain(..) {
            *self.sums.entry(id).or_default() += value * batch_items;
        }
        progress.items_processed >= progress.items_total
    }
}

/// Which of the renderer's splits.
#[derive(Clone, Copy)]
enum Which {
    Train,
    Valid,
    Test,
}

impl EpochRenderer {
    fn totals(&self, which: Which) -> &SplitTotals {
        match which {
            Which::Train => &self.train,
            Which::Valid => &self.valid,
            Which::Test => &self.test,
        }
    }

    fn totals_mut(&mut self, which: Which) -> &mut SplitTotals {
        match which {
            Which::Train => &mut self.train,
            Which::Valid => &mut self.valid,
            Which::Test => &mut self.test,
        }
    }

    fn render(&mut self, which: Which, label: &str, epoch: Progress, progress: Progress) {
        let complete = self
            .totals_mut(which)
            .record(epoch.items_processed, &progress);
        let totals = self.totals(which);
        let line = self.line(totals, label, &epoch, progress.items_processed);
        let elapsed = totals.started.map_or(0.0, |t| t.elapsed().as_secs_f64());
        let mut stdout = io::stdout().lock();
        // Terminal output only: a failed write must not stop the training.
        if complete {
            let clear = if self.live { "\r\x1b[K" } else { "" };
            writeln!(
                stdout,
                "{clear}{line}  ({} items, {elapsed:.1} s)",
                progress.items_total
            )
            .ok();
        } else if self.live {
            write!(
                stdout,
                "\r\x1b[K{line}  [{}/{}]",
                progress.items_processed, progress.items_total
            )
            .ok();
        }
        stdout.flush().ok();
        let live_line = self.live && !complete;
        self.totals_mut(which).live_line = live_line;
    }

    /// At the end of training or testing: the live lines ended, then burn-train's summary.
    fn finish(&mut self, summary: Option<LearnerSummary>) {
        self.end_live_lines();
        if let Some(summary) = summary {
            println!("{summary}");
        }
    }

    /// Ends a live line left by an interrupted epoch.
    fn end_live_lines(&mut self) {
        for which in [Which::Train, Which::Valid, Which::Test] {
            if std::mem::take(&mut self.totals_mut(which).live_line) {
                println!();
            }
        }
    }
}

impl MetricsRendererTraining for EpochRenderer {
    fn update_train(&mut self, state: MetricState) {
        self.train.update(state);
    }

    fn update_valid(&mut self, state: MetricState) {
        self.valid.update(state);
    }

    fn render_train(&mut self, item: TrainingProgress, _indicators: Vec<ProgressType>) {
        let progress = item.progress.unwrap_or(item.global_progress.clone());
        self.render(Which::Train, "train", item.global_progress, progress);
    }

    fn render_valid(&mut self, item: TrainingProgress, _indicators: Vec<ProgressType>) {
        let progress = item.progress.unwrap_or(item.global_progress.clone());
        self.render(Which::Valid, "valid", item.global_progress, progress);
    }

    fn on_train_end(
        &mut self,
        summary: Option<LearnerSummary>,
    ) -> Result<(), Box<dyn core::error::Error>> {
        self.finish(summary);
        Ok(())
    }
}

impl MetricsRendererEvaluation for EpochRenderer {
    fn update_test(&mut self, name: EvaluationName, state: MetricState) {
        self.test_name = Some(name.as_str().to_string());
        self.test.update(state);
    }

    fn render_test(&mut self, item: EvaluationProgress, _indicators: Vec<ProgressType>) {
        let label = match &self.test_name {
            Some(name) => format!("test {name}"),
            None => "test".to_string(),
        };
        let no_epochs = Progress::new(0, 0);
        self.render(Which::Test, &label, no_epochs, item.progress);
    }

    fn on_test_end(
        &mut self,
        summary: Option<LearnerSummary>,
    ) -> Result<(), Box<dyn core::error::Error>> {
        self.finish(summary);
        Ok(())
    }
}

impl MetricsRenderer for EpochRenderer {
    fn manual_close(&mut self) {
        // Lines are printed as they come: nothing stays open to close.
    }

    fn register_metric(&mut self, definition: MetricDefinition) {
        if self.metrics.iter().any(|m| m.id == definition.metric_id) {
            return;
        }
        let unit = match definition.attributes {
            MetricAttributes::Numeric(attributes) => attributes.unit,
            MetricAttributes::None => None,
        };
        self.metrics.push(MetricColumn {
            id: definition.metric_id,
            name: definition.name.to_lowercase(),
            unit,
        });
        // burn-train registers metrics in the order of a hash map, which varies from run to
        // run: the columns are sorted by name instead.
        self.metrics.sort_by(|a, b| a.name.cmp(&b.name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::module::AutodiffModule;
    use burn::optim::Optimizer;
    use burn::tensor::Device;

    type B = Autodiff<Flex>;

    fn data_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist")
    }

    fn batch_of(data: &Mnist, device: &Device<B>) -> MnistBatch<B> {
        let items = (0..data.len()).filter_map(|i| data.get(i)).collect();
        MnistBatcher::new().batch(items, device)
    }

    #[test]
    fn the_batcher_makes_padded_images_and_targets() {
        let device = Default::default();
        let data = Mnist::load(data_dir(), Split::Test).unwrap().first(5);
        let batch: MnistBatch<Flex> =
            MnistBatcher::new().batch((0..5).filter_map(|i| data.get(i)).collect(), &device);
        assert_eq!(batch.images.dims(), [5, 1, 32, 32]);
        let targets = batch
            .targets
            .into_data()
            .convert::<i64>()
            .into_vec::<i64>()
            .unwrap();
        let labels: Vec<i64> = data.labels().iter().map(|&l| i64::from(l)).collect();
        assert_eq!(targets, labels);
        let images = batch.images.into_data().into_vec::<f32>().unwrap();
        let first = FRAME.input(data.digit(0).unwrap());
        assert_eq!(&images[..first.len()], &first[..]);
    }

    #[test]
    fn training_batches_move_each_digit_inside_the_border() {
        let device = Default::default();
        let data = Mnist::load(data_dir(), Split::Test).unwrap().first(16);
        let items: Vec<MnistItem> = (0..16).filter_map(|i| data.get(i)).collect();
        let values = |batcher: &MnistBatcher| {
            let batch: MnistBatch<Flex> = batcher.batch(items.clone(), &device);
            batch.images.into_data().into_vec::<f32>().unwrap()
        };
        let plain = values(&MnistBatcher::new());
        let shifted = values(&MnistBatcher::with_random_shifts(2, 5));
        assert_eq!(shifted, values(&MnistBatcher::with_random_shifts(2, 5)));
        assert_ne!(shifted, values(&MnistBatcher::with_random_shifts(2, 6)));
        let mut moved = 0;
        for (plain, shifted) in plain.chunks(1024).zip(shifted.chunks(1024)) {
            // A translation inside the border keeps every pixel: the same values, moved.
            let sorted = |image: &[f32]| {
                let mut image = image.to_vec();
                image.sort_by(f32::total_cmp);
                image
            };
            assert_eq!(sorted(plain), sorted(shifted));
            moved += usize::from(plain != shifted);
        }
        assert!(moved >= 12, "{moved} of 16 digits moved"); // 1 in 25 stays put
    }

    #[test]
    fn the_steps_report_a_finite_loss_and_the_logits() {
        let device = Default::default();
        B::seed(&device, 0);
        let model = LeNet5Config::new().init::<B>(&device);
        let data = Mnist::load(data_dir(), Split::Train).unwrap().first(8);
        let output = TrainStep::step(&model, batch_of(&data, &device));
        assert_eq!(output.item.output.dims(), [8, 10]);
        assert_eq!(output.item.targets.dims(), [8]);
        let loss = output.item.loss.into_scalar();
        // Untrained, near ln(10): the logits are close to uniform.
        assert!(loss.is_finite() && (1.5..3.5).contains(&loss), "{loss}");

        let valid = InferenceStep::step(&model.valid(), batch_of_inner(&data, &device));
        assert_eq!(valid.output.dims(), [8, 10]);
        assert_eq!(valid.loss.into_scalar(), loss);
    }

    fn batch_of_inner(data: &Mnist, device: &Device<Flex>) -> MnistBatch<Flex> {
        let items = (0..data.len()).filter_map(|i| data.get(i)).collect();
        MnistBatcher::new().batch(items, device)
    }

    #[test]
    fn optimisation_steps_lower_the_loss_on_64_training_digits() {
        let device = Default::default();
        B::seed(&device, 0);
        let mut model = LeNet5Config::new().init::<B>(&device);
        let data = Mnist::load(data_dir(), Split::Train).unwrap().first(64);
        let mut optimizer = AdamConfig::new().init();
        let mut losses = Vec::new();
        for _ in 0..20 {
            let output = TrainStep::step(&model, batch_of(&data, &device));
            losses.push(output.item.loss.into_scalar());
            model = optimizer.step(1e-3, model, output.grads);
        }
        // From about ln(10) for the untrained model, down steadily.
        let (first, middle, last) = (losses[0], losses[10], losses[19]);
        assert!(
            last < middle && middle < first && last < 0.8 * first,
            "{losses:?}"
        );
    }

    /// Writes the first `len` digits of `data` as the IDX files of `split` into `dir`.
    fn write_idx(dir: &Path, split: Split, data: &Mnist) {
        let mut images = Vec::new();
        for word in [crate::mnist::IMAGES_MAGIC, data.len() as u32, 28, 28] {
            images.extend(word.to_be_bytes());
        }
        for index in 0..data.len() {
            images.extend(data.digit(index).unwrap());
        }
        let mut labels = Vec::new();
        for word in [crate::mnist::LABELS_MAGIC, data.len() as u32] {
            labels.extend(word.to_be_bytes());
        }
        labels.extend(data.labels());
        std::fs::write(dir.join(split.images_file_name()), images).unwrap();
        std::fs::write(dir.join(split.labels_file_name()), labels).unwrap();
    }

    #[test]
    fn train_runs_the_learner_and_writes_its_artifacts() {
        let data = tempfile::tempdir().unwrap();
        let train_set = Mnist::load(data_dir(), Split::Train).unwrap().first(96);
        let test_set = Mnist::load(data_dir(), Split::Test).unwrap().first(40);
        write_idx(data.path(), Split::Train, &train_set);
        write_idx(data.path(), Split::Test, &test_set);
        let artifacts = tempfile::tempdir().unwrap();
        let config = TrainingConfig::new()
            .with_num_epochs(2)
            .with_batch_size(32)
            .with_seed(7);
        let device = Default::default();
        let model = train::<B>(&config, data.path(), artifacts.path(), &device).unwrap();

        let accuracy = crate::mnist::accuracy(&model, &test_set, 64, &device).unwrap();
        assert_eq!(accuracy.total, 40);
        let saved = TrainingConfig::load(artifacts.path().join("config.json")).unwrap();
        assert_eq!((saved.num_epochs, saved.seed), (2, 7));
        for split in ["train", "valid"] {
            for epoch in [1, 2] {
                let log = artifacts
                    .path()
                    .join(format!("{split}/epoch-{epoch}/Loss.log"));
                assert!(log.is_file(), "{} missing", log.display());
            }
        }
    }

    #[test]
    fn a_bad_configuration_is_an_error() {
        let device = Default::default();
        let run = |config: TrainingConfig| {
            train::<B>(&config, data_dir(), std::env::temp_dir(), &device)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            run(TrainingConfig::new().with_batch_size(0)),
            "invalid training configuration: batch_size is 0, expected at least 1"
        );
        assert_eq!(
            run(TrainingConfig::new().with_max_shift(3)),
            "invalid training configuration: max_shift is 3, at most 2 keeps the digit inside the image"
        );
        assert_eq!(
            run(TrainingConfig::new().with_learning_rate(f64::NAN)),
            "invalid training configuration: learning_rate is NaN, expected a positive number"
        );
        let missing = Path::new("/nonexistent-mnist");
        assert_eq!(
            train::<B>(&TrainingConfig::new(), missing, std::env::temp_dir(), &device)
                .unwrap_err()
                .to_string(),
            "/nonexistent-mnist: no train-images-idx3-ubyte nor train-images-idx3-ubyte.gz (the training images of MNIST)"
        );
    }
}
