//! `lenet-jacobian robustness`: what the Jacobians say of a model, measured on labelled digits.
//!
//! For each model: clean accuracy; the mean Frobenius and the median spectral norm of the
//! per-sample Jacobians; accuracy under Gaussian noise, under FGSM and under PGD (L-infinity),
//! every attack white-box, its loss gradient the per-sample Jacobian contracted with
//! `softmax - one_hot` ([`jacobian::attacks`]). Perturbations are of the pixels in `[0, 1]`
//! (before any `--normalize`), clipped to `[0, 1]`. Several models are measured on the same
//! digits and the same noise, side by side.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use jacobian::attacks::{accuracy, cross_entropy_gradient, fgsm, pgd, Pgd};
use jacobian::{
    frobenius_norms, per_sample_chunks, spectral_norms, Differentiable, Jacobian, JacobianConfig,
    Standardized,
};
use lenet5::LeNet5Backend;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

use crate::backend::{run_on, BackendJob, BackendKind};
use crate::error::{Error, InputProblem, OutputProblem, Result};
use crate::input::{self, Batch, Source};
use crate::model::{Model, Stated};
use crate::output::npy::NpyFile;
use crate::output::{self, AtomicFile};
use crate::plot::{self, Curve};
use crate::progress::Progress;
use crate::run::Normalize;

/// Standard deviations of the Gaussian noise added to the pixels.
pub const NOISE_SIGMAS: [f32; 4] = [0.1, 0.2, 0.3, 0.5];
/// FGSM's L-infinity budgets.
pub const FGSM_EPS: [f32; 4] = [0.05, 0.1, 0.2, 0.3];
/// PGD's L-infinity budgets.
pub const PGD_EPS: [f32; 2] = [0.1, 0.2];
/// PGD's step size.
pub const PGD_STEP: f32 = 0.01;
/// PGD's number of steps.
pub const PGD_STEPS: usize = 40;
/// The budget of the FGSM images `--adversarial` writes, unless `--adversarial-eps`.
pub const ADVERSARIAL_EPS: f32 = 0.1;
/// A pixel brighter than this (of `[0, 1]`) is ink: part of the digit's strokes.
pub const STROKE_THRESHOLD: f32 = 0.5;
/// The strokes' mask is the ink dilated by this many pixels (a square neighbourhood), so that
/// the edges of the strokes count as on them.
pub const STROKE_DILATION: usize = 1;

/// What `lenet-jacobian robustness` is asked.
#[derive(Clone, Debug)]
pub struct Robustness {
    /// Backend to run on.
    pub backend: BackendKind,
    /// The models, each a weights file.
    pub weights: Vec<PathBuf>,
    /// The architecture, where a file does not say it.
    pub stated: Stated,
    /// The labelled digits.
    pub input: Source,
    /// The models' input standardisation.
    pub normalize: Option<Normalize>,
    /// Seed of the Gaussian noise.
    pub seed: u64,
    /// Samples per chunk of Jacobians.
    pub chunk_size: usize,
    /// JSON on stdout instead of the table.
    pub json: bool,
    /// The chart of accuracy against the perturbation's size.
    pub plot: Option<PathBuf>,
    /// Where to write the FGSM images, and their budget.
    pub adversarial: Option<(PathBuf, f32)>,
}

/// What was measured of one model.
#[derive(Clone, Debug, PartialEq)]
pub struct Measured {
    /// Its weights file.
    pub weights: PathBuf,
    /// Its architecture, in words.
    pub architecture: String,
    /// Samples classified right, clean.
    pub clean: usize,
    /// Mean over the samples of `||J_b||_F`.
    pub mean_frobenius: f64,
    /// Median over the samples of the largest singular value of `J_b`.
    pub median_spectral: f64,
    /// Mean over the samples of the share of `|J[label]|` that falls on the digit's strokes
    /// ([`stroke_share`]).
    pub on_strokes: f64,
    /// `(sigma, right)` under Gaussian noise.
    pub noise: Vec<(f32, usize)>,
    /// `(eps, right)` under FGSM.
    pub fgsm: Vec<(f32, usize)>,
    /// `(eps, right)` under PGD.
    pub pgd: Vec<(f32, usize)>,
}

/// Runs the measurements, prints them, writes the chart and the adversarial images.
pub fn run(request: &Robustness) -> Result<()> {
    if request.adversarial.is_some() && request.weights.len() > 1 {
        return Err(Error::Usage(
            "--adversarial writes one model's images: give one --weights".into(),
        ));
    }
    let models = request
        .weights
        .iter()
        .map(|path| Model::load(Some(path), 0, request.stated, false))
        .collect::<Result<Vec<_>>>()?;
    let dims = models[0].config().input_dims();
    if let Some(other) = models.iter().find(|m| m.config().input_dims() != dims) {
        return Err(Error::Usage(format!(
            "the models take different inputs: {:?} and {:?} ({})",
            dims,
            other.config().input_dims(),
            other.weights.as_deref().unwrap_or(Path::new("")).display()
        )));
    }
    if let Some(normalize) = &request.normalize {
        normalize.check(dims[0])?;
    }
    let (batch, notes) = input::load(&request.input, dims, false)?;
    let labels = labels(&request.input, &batch, &models)?;
    // Files are checked now and written once everything succeeded.
    let plot_file = request
        .plot
        .as_deref()
        .map(AtomicFile::create)
        .transpose()?;
    let adversarial_file = match &request.adversarial {
        Some((path, _)) => Some(NpyFile::create(
            path,
            &[batch.len, dims[0], dims[1], dims[2]],
        )?),
        None => None,
    };
    for note in notes.iter().chain(models.iter().flat_map(|m| &m.notes)) {
        eprintln!("note: {note}");
    }
    let mut progress = Progress::new((models.len() * steps_per_model()) as u64, "attack steps");
    let mut measured = Vec::new();
    let mut adversarial = None;
    for model in &models {
        let job = Job {
            request,
            model,
            batch: &batch,
            labels: &labels,
            progress: &mut progress,
        };
        let (result, images) = run_on(request.backend, job)?;
        measured.push(result);
        adversarial = adversarial.or(images);
    }
    progress.finish();
    let source = describe(&request.input, batch.len);
    if request.json {
        println!("{}", json(&measured, batch.len, &source, request.backend));
    } else {
        print!("{}", table(&measured, batch.len, &source, request.backend));
    }
    if let (Some(file), Some(images)) = (adversarial_file, adversarial) {
        let mut file = file;
        file.write(&images)?;
        file.commit()?;
        let (path, eps) = request.adversarial.as_ref().expect("asked");
        eprintln!("FGSM images at eps {eps} written to {}", path.display());
    }
    if let Some(file) = plot_file {
        let image = chart(&measured, batch.len)
            .map_err(|e| Error::output(file.target(), OutputProblem::Chart(e)))?;
        let path = file.target().to_path_buf();
        output::write_png(file, &image)?;
        eprintln!("chart written to {}", path.display());
    }
    Ok(())
}

/// Every sample's label, each a class of every model.
fn labels(source: &Source, batch: &Batch, models: &[Model]) -> Result<Vec<usize>> {
    let path = match source {
        Source::File { path, .. } | Source::Images(path) => path.clone(),
        Source::Random { .. } => {
            return Err(Error::Usage(
                "robustness needs labelled digits: --input (IDX with its labels, or .npy with \
                 --labels) or --images named by label"
                    .into(),
            ))
        }
    };
    let classes = models
        .iter()
        .map(|m| m.config().num_classes)
        .min()
        .unwrap_or(0);
    batch
        .labels
        .iter()
        .enumerate()
        .map(|(i, label)| match label {
            Some(l) if *l < classes => Ok(*l),
            Some(l) => Err(Error::input(
                &path,
                InputProblem::Format(format!(
                    "sample {i} is labelled {l}, and the model has {classes} classes"
                )),
            )),
            None => Err(Error::input(
                &path,
                InputProblem::Format(format!(
                    "sample {i} has no label: robustness needs every sample's (IDX labels, \
                     --labels FILE.npy, or image files named <label>_<name>.png)"
                )),
            )),
        })
        .collect()
}

/// Units of progress per model: clean accuracy and norms, each noise level, the FGSM
/// gradient, each PGD step.
fn steps_per_model() -> usize {
    1 + NOISE_SIGMAS.len() + 1 + PGD_EPS.len() * PGD_STEPS
}

/// One model's measurements on the chosen backend.
struct Job<'a> {
    request: &'a Robustness,
    model: &'a Model,
    batch: &'a Batch,
    labels: &'a [usize],
    progress: &'a mut Progress,
}

impl BackendJob for Job<'_> {
    type Output = (Measured, Option<Vec<f32>>);

    fn run<B>(self, device: B::Device) -> Result<Self::Output>
    where
        B: AutodiffBackend,
        B::InnerBackend: LeNet5Backend,
    {
        let network = self.model.on::<B::InnerBackend>(&device)?;
        let standardized = match &self.request.normalize {
            Some(n) => Some(
                Standardized::new(&network, n.mean.clone(), n.std.clone())
                    .map_err(|e| Error::Usage(format!("--normalize: {e}")))?,
            ),
            None => None,
        };
        let f: &dyn Differentiable<B::InnerBackend, 4> = match &standardized {
            Some(g) => g,
            None => &network,
        };
        self.measure(f, &device)
    }
}

impl Job<'_> {
    fn measure<B: Backend>(
        self,
        f: &dyn Differentiable<B, 4>,
        device: &B::Device,
    ) -> Result<(Measured, Option<Vec<f32>>)> {
        let labels = self.labels;
        let config = JacobianConfig::new()
            .with_chunk_size(Some(self.request.chunk_size))
            .with_with_outputs(true);
        let x = self.batch.to_tensor::<B>(device);
        let clean = accuracy(f, x.clone(), labels, &config)?;

        let dims = self.batch.dims;
        let (mut frobenius, mut spectral, mut on_strokes) = (Vec::new(), Vec::new(), Vec::new());
        let sample_len = self.batch.sample_len();
        per_sample_chunks(f, x.clone(), &config, |chunk| {
            let chunk = Jacobian::from_chunk(chunk, &dims);
            frobenius.extend(frobenius_norms(&chunk));
            spectral.extend(spectral_norms(&chunk));
            for i in 0..chunk.samples() {
                let b = chunk.start + i;
                let image = &self.batch.values[b * sample_len..(b + 1) * sample_len];
                let matrix = chunk.sample_matrix(i);
                let row = &matrix[labels[b] * sample_len..(labels[b] + 1) * sample_len];
                on_strokes.push(stroke_share(image, row, dims));
            }
            Ok(())
        })?;
        self.progress.advance(1);

        let mut rng = rand::rngs::StdRng::seed_from_u64(self.request.seed);
        let mut noise = Vec::new();
        for sigma in NOISE_SIGMAS {
            let normal = Normal::new(0.0f32, sigma).expect("a positive sigma");
            let values: Vec<f32> = self
                .batch
                .values
                .iter()
                .map(|&v| (v + normal.sample(&mut rng)).clamp(0.0, 1.0))
                .collect();
            let noisy = Tensor::from_data(TensorData::new(values, x.shape()), device);
            noise.push((sigma, accuracy(f, noisy, labels, &config)?));
            self.progress.advance(1);
        }

        let (gradient, _) = cross_entropy_gradient(f, x.clone(), labels, &config)?;
        let mut attacked = Vec::new();
        for eps in FGSM_EPS {
            let adversarial = fgsm(x.clone(), gradient.clone(), eps);
            attacked.push((eps, accuracy(f, adversarial, labels, &config)?));
        }
        let adversarial = self.request.adversarial.as_ref().map(|&(_, eps)| {
            fgsm(x.clone(), gradient.clone(), eps)
                .into_data()
                .into_vec::<f32>()
                .expect("float32 images")
        });
        self.progress.advance(1);

        let mut projected = Vec::new();
        for eps in PGD_EPS {
            let attack = Pgd {
                eps,
                step: PGD_STEP,
                steps: PGD_STEPS,
            };
            let progress = &mut *self.progress;
            let adversarial = pgd(f, x.clone(), labels, attack, &config, || {
                progress.advance(1)
            })?;
            projected.push((eps, accuracy(f, adversarial, labels, &config)?));
        }

        let measured = Measured {
            weights: self.model.weights.clone().unwrap_or_default(),
            architecture: self.model.architecture.to_string(),
            clean,
            mean_frobenius: frobenius.iter().sum::<f64>() / frobenius.len().max(1) as f64,
            median_spectral: median(&mut spectral),
            on_strokes: on_strokes.iter().sum::<f64>() / on_strokes.len().max(1) as f64,
            noise,
            fgsm: attacked,
            pgd: projected,
        };
        Ok((measured, adversarial))
    }
}

/// The share of a saliency map `|J|` (one class's row, channels combined by their sum) that
/// falls on the strokes of `image`: its pixels above [`STROKE_THRESHOLD`] (on any channel),
/// dilated by [`STROKE_DILATION`]. 1 for a map all on the ink; the strokes' share of the image
/// for a map spread evenly.
///
/// # Shapes
///
/// - image, row: `[C, H, W]` row-major (`dims`)
pub fn stroke_share(image: &[f32], row: &[f32], [channels, height, width]: [usize; 3]) -> f64 {
    let plane = height * width;
    let ink: Vec<bool> = (0..plane)
        .map(|p| (0..channels).any(|c| image[c * plane + p] > STROKE_THRESHOLD))
        .collect();
    let d = STROKE_DILATION;
    let on_strokes = |p: usize| {
        let (y, x) = (p / width, p % width);
        (y.saturating_sub(d)..(y + d + 1).min(height))
            .any(|yy| (x.saturating_sub(d)..(x + d + 1).min(width)).any(|xx| ink[yy * width + xx]))
    };
    let (mut on, mut all) = (0.0f64, 0.0f64);
    for p in 0..plane {
        let magnitude: f64 = (0..channels)
            .map(|c| f64::from(row[c * plane + p].abs()))
            .sum();
        all += magnitude;
        if on_strokes(p) {
            on += magnitude;
        }
    }
    if all > 0.0 {
        on / all
    } else {
        0.0
    }
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// `1000 labelled samples of data/mnist/t10k-images-idx3-ubyte.gz`.
fn describe(source: &Source, samples: usize) -> String {
    match source {
        Source::File { path, .. } | Source::Images(path) => {
            format!("{samples} labelled samples of {}", path.display())
        }
        Source::Random { .. } => format!("{samples} samples"),
    }
}

fn percent(right: usize, of: usize) -> String {
    format!("{:.2}%", 100.0 * right as f64 / of.max(1) as f64)
}

/// The table printed on stdout: one row per measurement, one column per model.
pub fn table(measured: &[Measured], samples: usize, source: &str, backend: BackendKind) -> String {
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut row = |name: String, cells: Vec<String>| rows.push((name, cells));
    row(
        "clean accuracy".into(),
        measured.iter().map(|m| percent(m.clean, samples)).collect(),
    );
    row(
        "mean ||J||_F".into(),
        measured
            .iter()
            .map(|m| format!("{:.4}", m.mean_frobenius))
            .collect(),
    );
    row(
        "median spectral norm".into(),
        measured
            .iter()
            .map(|m| format!("{:.4}", m.median_spectral))
            .collect(),
    );
    row(
        "|J| on the strokes".into(),
        measured
            .iter()
            .map(|m| format!("{:.1}%", 100.0 * m.on_strokes))
            .collect(),
    );
    for (i, sigma) in NOISE_SIGMAS.iter().enumerate() {
        row(
            format!("gaussian noise sigma {sigma}"),
            measured
                .iter()
                .map(|m| percent(m.noise[i].1, samples))
                .collect(),
        );
    }
    for (i, eps) in FGSM_EPS.iter().enumerate() {
        row(
            format!("FGSM eps {eps}"),
            measured
                .iter()
                .map(|m| percent(m.fgsm[i].1, samples))
                .collect(),
        );
    }
    for (i, eps) in PGD_EPS.iter().enumerate() {
        row(
            format!("PGD eps {eps}"),
            measured
                .iter()
                .map(|m| percent(m.pgd[i].1, samples))
                .collect(),
        );
    }
    let names: Vec<String> = measured
        .iter()
        .map(|m| {
            m.weights.file_name().map_or_else(
                || m.weights.display().to_string(),
                |n| n.to_string_lossy().into(),
            )
        })
        .collect();
    let first = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let widths: Vec<usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            rows.iter()
                .map(|(_, c)| c[i].len())
                .max()
                .unwrap_or(0)
                .max(n.len())
        })
        .collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Robustness on {source}, on {backend}: accuracy under Gaussian noise and white-box \
         L-inf attacks (perturbations of the pixels in [0, 1], clipped to [0, 1]; PGD: \
         {PGD_STEPS} steps of {PGD_STEP} from the clean image, no random start)"
    );
    for m in measured {
        let _ = writeln!(out, "{}: {}", m.weights.display(), m.architecture);
    }
    let _ = writeln!(
        out,
        "|J| on the strokes: the mean share of |d logit[label] / d pixel| on the digit's ink \
         (pixels above {STROKE_THRESHOLD}, dilated by {STROKE_DILATION} pixel)"
    );
    let _ = writeln!(out);
    let _ = write!(out, "{:first$}", "");
    for (name, width) in names.iter().zip(&widths) {
        let _ = write!(out, "  {name:>width$}");
    }
    let _ = writeln!(out);
    for (name, cells) in &rows {
        let _ = write!(out, "{name:first$}");
        for (cell, width) in cells.iter().zip(&widths) {
            let _ = write!(out, "  {cell:>width$}");
        }
        let _ = writeln!(out);
    }
    out
}

/// The measurements as one JSON object: accuracies as fractions, with the counts.
pub fn json(measured: &[Measured], samples: usize, source: &str, backend: BackendKind) -> String {
    let accuracy = |right: usize| right as f64 / samples.max(1) as f64;
    let series = |points: &[(f32, usize)], key: &str| {
        points
            .iter()
            .map(|&(size, right)| {
                serde_json::json!({key: size, "accuracy": accuracy(right), "correct": right})
            })
            .collect::<Vec<_>>()
    };
    let models: Vec<serde_json::Value> = measured
        .iter()
        .map(|m| {
            serde_json::json!({
                "weights": m.weights.display().to_string(),
                "architecture": m.architecture,
                "clean": {"accuracy": accuracy(m.clean), "correct": m.clean},
                "mean_frobenius": m.mean_frobenius,
                "median_spectral": m.median_spectral,
                "on_strokes": m.on_strokes,
                "noise": series(&m.noise, "sigma"),
                "fgsm": series(&m.fgsm, "eps"),
                "pgd": series(&m.pgd, "eps"),
            })
        })
        .collect();
    serde_json::json!({
        "input": source,
        "samples": samples,
        "backend": backend.name(),
        "pgd": {"step": PGD_STEP, "steps": PGD_STEPS, "random_start": false},
        "models": models,
    })
    .to_string()
}

/// Accuracy against the perturbation's size: one curve per attack and model, each starting at
/// the clean accuracy.
fn chart(measured: &[Measured], samples: usize) -> std::result::Result<image::RgbImage, String> {
    let accuracy = |right: usize| 100.0 * right as f64 / samples.max(1) as f64;
    let mut curves = Vec::new();
    for (i, m) in measured.iter().enumerate() {
        let name = m
            .weights
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let start = (0.0, accuracy(m.clean));
        let attacks: [(&str, &[(f32, usize)]); 3] = [
            ("Gaussian noise (sigma)", &m.noise),
            ("FGSM (eps)", &m.fgsm),
            ("PGD (eps)", &m.pgd),
        ];
        for (a, (attack, points)) in attacks.into_iter().enumerate() {
            let mut line = vec![start];
            line.extend(
                points
                    .iter()
                    .map(|&(x, right)| (f64::from(x), accuracy(right))),
            );
            curves.push(Curve {
                label: if measured.len() > 1 {
                    format!("{attack}, {name}")
                } else {
                    attack.to_string()
                },
                points: line,
                colour: a,
                dashed: i % 2 == 1,
            });
        }
    }
    plot::line_chart(
        &format!("Accuracy on {samples} labelled samples under perturbation"),
        "size of the perturbation (sigma for the noise, L-inf eps for the attacks)",
        "accuracy (%)",
        (0.0, 100.0),
        &curves,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_on_the_strokes_counts_the_dilated_ink() {
        // A 1 x 5 x 5 image with one ink pixel at the centre: the 3 x 3 around it is on the
        // strokes.
        let mut image = vec![0.0f32; 25];
        image[12] = 1.0;
        let mut row = vec![0.0f32; 25];
        row[12] = -2.0; // on the ink
        row[6] = 1.0; // a diagonal neighbour: on the dilated strokes
        row[0] = 1.0; // a corner: off them
        let share = stroke_share(&image, &row, [1, 5, 5]);
        assert!((share - 0.75).abs() < 1e-12, "{share}");
        assert_eq!(stroke_share(&image, &[0.0; 25], [1, 5, 5]), 0.0);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
