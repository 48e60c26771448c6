//! `--norms`, `--saliency` and `--images`, checked from the outside: norms recomputed from the
//! written Jacobian, the PNG decoded, image batches compared with the same pixels given as .npy.

mod common;

use std::path::Path;

use common::{read_npy, relative_error, run, run_ok};
use image::{GrayImage, Luma};
use lenet_jacobian::saliency;

const OUTPUTS: usize = 10;
const INPUT_LEN: usize = 32 * 32;

/// The rows of the samples table in `stdout`, after its header, each split into its fields.
fn table_rows(stdout: &str) -> impl Iterator<Item = Vec<&str>> {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("sample "))
        .skip(1)
        .map(|l| l.split_whitespace().collect())
}

/// The fields of sample `b`'s row of the samples table in `stdout`.
fn table_row(stdout: &str, b: usize) -> Vec<&str> {
    let b_text = b.to_string();
    table_rows(stdout)
        .find(|fields| fields.first() == Some(&b_text.as_str()))
        .unwrap_or_else(|| panic!("no row of sample {b} in\n{stdout}"))
}

/// The (Frobenius, spectral) pairs of the samples table `--norms` fills, read by its header.
fn parse_norms(stdout: &str) -> Vec<(f64, f64)> {
    let mut lines = stdout.lines().skip_while(|l| !l.starts_with("sample "));
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_else(|| panic!("no samples table in\n{stdout}"))
        .split_whitespace()
        .collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no {name} column in {header:?}"))
    };
    let (frobenius, spectral) = (column("Frobenius"), column("spectral"));
    lines
        .map_while(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let index = fields.first()?.parse::<usize>().ok()?;
            Some((
                index,
                fields[frobenius].parse().unwrap(),
                fields[spectral].parse().unwrap(),
            ))
        })
        .enumerate()
        .map(|(row, (index, frobenius, spectral))| {
            assert_eq!(row, index, "samples out of order in\n{stdout}");
            (frobenius, spectral)
        })
        .collect()
}

/// Largest singular value of a row-major `rows x cols` matrix: power iteration on `M M^T`,
/// in f64.
fn power_iteration_spectral_norm(matrix: &[f32], rows: usize) -> f64 {
    let cols = matrix.len() / rows;
    let m = |r: usize, c: usize| f64::from(matrix[r * cols + c]);
    let gram: Vec<f64> = (0..rows * rows)
        .map(|i| (0..cols).map(|c| m(i / rows, c) * m(i % rows, c)).sum())
        .collect();
    let mut v: Vec<f64> = (0..rows).map(|i| 1.0 + 0.1 * i as f64).collect();
    let mut eigenvalue = 0.0;
    for _ in 0..10_000 {
        let w: Vec<f64> = (0..rows)
            .map(|i| (0..rows).map(|j| gram[i * rows + j] * v[j]).sum())
            .collect();
        let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm == 0.0 {
            return 0.0;
        }
        // Rayleigh quotient with the normalised v.
        eigenvalue = v.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>();
        v = w.into_iter().map(|x| x / norm).collect();
    }
    eigenvalue.sqrt()
}

fn frobenius(matrix: &[f32]) -> f64 {
    matrix
        .iter()
        .map(|&v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        .sqrt()
}

fn assert_close(got: f64, expected: f64, what: &str) {
    // Printed with 7 significant digits.
    assert!(
        (got - expected).abs() <= 2e-6 * expected.abs(),
        "{what}: printed {got:e}, recomputed {expected:e}"
    );
}

/// Each sample's `O x 1024` matrix out of a written Jacobian of either layout.
fn sample_matrices(shape: &[usize], values: &[f32]) -> Vec<Vec<f32>> {
    let batch = shape[0];
    let full = shape.len() == 6;
    (0..batch)
        .map(|b| {
            (0..OUTPUTS)
                .flat_map(|k| {
                    let start = if full {
                        ((b * OUTPUTS + k) * batch + b) * INPUT_LEN
                    } else {
                        (b * OUTPUTS + k) * INPUT_LEN
                    };
                    values[start..start + INPUT_LEN].to_vec()
                })
                .collect()
        })
        .collect()
}

#[test]
fn norms_match_norms_recomputed_from_the_written_jacobian() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.npy");
    let p = path.to_str().unwrap();
    // Full layout, per-sample layout in one chunk, and streamed in chunks of 2.
    for extra in [
        &["--layout", "full"][..],
        &["--layout", "per-sample"],
        &["--layout", "per-sample", "--chunk-size", "2"],
    ] {
        let mut args = vec![
            "--backend",
            "flex",
            "--batch",
            "5",
            "--seed",
            "7",
            "--norms",
            "--output",
            p,
        ];
        args.extend_from_slice(extra);
        let stdout = run_ok(&args);
        let printed = parse_norms(&stdout);
        let (shape, values) = read_npy(&path);
        let matrices = sample_matrices(&shape, &values);
        assert_eq!(printed.len(), 5, "{stdout}");
        for (b, ((fro, spec), matrix)) in printed.iter().zip(&matrices).enumerate() {
            let what = format!("{extra:?} sample {b}");
            assert_close(*fro, frobenius(matrix), &format!("{what} Frobenius"));
            assert_close(
                *spec,
                power_iteration_spectral_norm(matrix, OUTPUTS),
                &format!("{what} spectral"),
            );
            assert!(spec <= fro && *spec > 0.0, "{what}: {spec} vs {fro}");
        }
    }
}

#[test]
fn saliency_writes_a_decodable_png_of_the_grid_size_capped_at_16_rows() {
    let dir = tempfile::tempdir().unwrap();
    for (batch, rows) in [(3, 3), (20, saliency::MAX_ROWS)] {
        let path = dir.path().join(format!("s{batch}.png"));
        let out = run(&[
            "--backend",
            "flex",
            "--batch",
            &batch.to_string(),
            "--layout",
            "per-sample",
            "--saliency",
            path.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{out:?}");
        let stdout = out.stdout.clone();
        let stderr = out.stderr.clone();
        assert!(stdout.contains("saliency maps of"), "{stdout}");
        assert_eq!(
            stderr.contains("draws the first 16 of the 20"),
            batch == 20,
            "{stderr}"
        );
        let png = image::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(png.height(), saliency::grid_height(rows, 32));
        // The input and a tile per class: wider than 11 tiles of 96 pixels.
        assert!(png.width() > 11 * 96, "{}", png.width());
        // The tiles hold colour, not only the white background and black ink.
        let rgb = png.to_rgb8();
        assert!(rgb.pixels().any(|p| p[0] != p[1] || p[1] != p[2]));
    }
}

#[test]
fn saliency_to_a_missing_directory_fails_before_computing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("s.png");
    let out = run(&["--backend", "flex", "--saliency", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let stderr = out.stderr.clone();
    assert!(stderr.contains("does not exist"), "{stderr}");
}

fn write_png(dir: &Path, name: &str, image: &GrayImage) {
    image.save(dir.join(name)).unwrap();
}

/// `--images` gives the same batch as its pixels by hand: a 28 x 28 digit padded with zeros,
/// a uniform 40 x 40 image resized (still uniform), in file-name order, non-images ignored.
#[test]
fn images_directory_is_the_batch_the_rule_describes() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let digit = GrayImage::from_fn(28, 28, |x, y| Luma([((x * 9 + y * 5) % 256) as u8]));
    write_png(&images, "b_digit.png", &digit);
    write_png(
        &images,
        "a_plain.png",
        &GrayImage::from_pixel(40, 40, Luma([153])),
    );
    std::fs::write(images.join("notes.txt"), "ignored").unwrap();

    // The same batch by hand: sample 0 uniform 0.6, sample 1 the digit inside 2 zero pixels.
    let mut values = vec![153.0f32 / 255.0; INPUT_LEN];
    let mut padded = vec![0.0f32; INPUT_LEN];
    for (x, y, p) in digit.enumerate_pixels() {
        padded[(y as usize + 2) * 32 + x as usize + 2] = f32::from(p[0]) / 255.0;
    }
    values.extend(padded);
    let input = dir.path().join("input.npy");
    lenet_jacobian::output::npy::write(&input, &[2, 1, 32, 32], &values).unwrap();

    let (from_images, from_npy) = (dir.path().join("i.npy"), dir.path().join("n.npy"));
    let common = ["--backend", "flex", "--layout", "per-sample", "--output"];
    let out = run(&[
        &common[..],
        &[
            from_images.to_str().unwrap(),
            "--images",
            images.to_str().unwrap(),
        ],
    ]
    .concat());
    assert!(out.status.success(), "{out:?}");
    let stderr = out.stderr.clone();
    assert!(stderr.contains("a_plain.png, b_digit.png"), "{stderr}");
    run_ok(
        &[
            &common[..],
            &[
                from_npy.to_str().unwrap(),
                "--input",
                input.to_str().unwrap(),
            ],
        ]
        .concat(),
    );
    let (shape, got) = read_npy(&from_images);
    let (_, expected) = read_npy(&from_npy);
    assert_eq!(shape, [2, 10, 1, 32, 32]);
    assert!(relative_error(&got, &expected) < 1e-5);
}

#[test]
fn images_errors_are_one_line_input_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    // No image in the directory.
    std::fs::write(dir.path().join("readme.txt"), "none").unwrap();
    let out = run(&["--backend", "flex", "--images", d]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = out.stderr.clone();
    assert!(stderr.contains("no PNG or JPEG file"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // A file that is not the image it claims to be.
    std::fs::write(dir.path().join("bad.jpg"), "not a jpeg").unwrap();
    let out = run(&["--backend", "flex", "--images", d]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = out.stderr.clone();
    assert!(
        stderr.starts_with("error: ") && stderr.contains("bad.jpg"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // --images and --input together.
    let out = run(&["--images", d, "--input", "x.npy"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

/// The committed MNIST test digits (tests/fixtures is PyTorch's; data/ holds the digits).
fn mnist(file: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(file)
}

/// An MNIST IDX images file is an input as it is, its labels found beside it; the same digits
/// as PNG files named `<label>_<index>.png` give the same batch, labels and Jacobian.
#[test]
fn idx_digits_and_their_png_files_are_the_same_labelled_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (from_idx, from_png) = (dir.path().join("idx.npy"), dir.path().join("png.npy"));
    let idx = run(&[
        "--backend",
        "flex",
        "--input",
        mnist("mnist/t10k-images-idx3-ubyte.gz").to_str().unwrap(),
        "--layout",
        "per-sample",
        // With --norms the table lists every sample, not the first 16.
        "--norms",
        "--output",
        from_idx.to_str().unwrap(),
    ]);
    assert!(idx.status.success(), "{}", idx.stderr);
    assert!(idx.stderr.contains("labels from"), "{}", idx.stderr);
    assert!(
        idx.stdout.contains("shape: (1000, 10, 1, 32, 32)"),
        "{}",
        idx.stdout
    );
    assert!(
        idx.stdout
            .contains("accuracy on the 1000 labelled sample(s)"),
        "{}",
        idx.stdout
    );
    let png = run(&[
        "--backend",
        "flex",
        "--images",
        mnist("digits").to_str().unwrap(),
        "--layout",
        "per-sample",
        "--output",
        from_png.to_str().unwrap(),
    ]);
    assert!(png.status.success(), "{}", png.stderr);
    let (png_shape, png_values) = read_npy(&from_png);
    let (_, idx_values) = read_npy(&from_idx);
    // data/digits holds test digits named <label>_<index in the IDX file>.png (data/README.md);
    // the PNG batch is in file-name order. Each row of its table names the image and label.
    let block = 10 * 32 * 32;
    let rows: Vec<Vec<&str>> = table_rows(&png.stdout).take(png_shape[0]).collect();
    assert_eq!(rows.len(), png_shape[0], "{}", png.stdout);
    for (b, fields) in rows.iter().enumerate() {
        let (label, image) = (fields[3], fields[4]);
        let (name_label, index) = image.trim_end_matches(".png").split_once('_').unwrap();
        assert_eq!(label, name_label, "the label of {image}");
        let index: usize = index.parse().unwrap();
        // The same pixels, as 8-bit PNG read through the image crate or as IDX bytes: equal
        // up to the last bit of v / 255.
        let error = relative_error(
            &png_values[b * block..(b + 1) * block],
            &idx_values[index * block..(index + 1) * block],
        );
        assert!(
            error < 1e-6,
            "{image} differs from IDX digit {index} by {error:e}"
        );
        // The IDX run's row of that digit has the same label.
        let idx_row = table_row(&idx.stdout, index);
        assert_eq!(idx_row.get(3), Some(&label), "{idx_row:?}");
    }
}

#[test]
fn logits_are_written_as_an_npy_of_samples_by_classes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logits.npy");
    let fixture = |file: &str| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/b3_c10")
            .join(file)
    };
    let out = run(&[
        "--backend",
        "flex",
        "--weights",
        fixture("lenet5.pt").to_str().unwrap(),
        "--input",
        fixture("input.npy").to_str().unwrap(),
        "--logits",
        path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", out.stderr);
    let (shape, ours) = read_npy(&path);
    let (torch_shape, torch) = read_npy(&fixture("logits.npy"));
    assert_eq!(shape, torch_shape);
    assert!(relative_error(&ours, &torch) < 1e-5);
    // The table's predicted classes are the logits' largest.
    for (b, row) in torch.chunks_exact(10).enumerate() {
        let top = (0..10).max_by(|&p, &q| row[p].total_cmp(&row[q])).unwrap();
        let row = table_row(&out.stdout, b);
        assert_eq!(row.get(1), Some(&top.to_string().as_str()), "{row:?}");
    }
}

#[test]
fn target_label_needs_labels() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.png");
    let out = run(&[
        "--backend",
        "flex",
        "--saliency",
        path.to_str().unwrap(),
        "--target",
        "label",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("sample 0 has none"), "{}", out.stderr);
    assert!(!path.exists());
}

// ---------------------------------------------------------------------------------------------
// robustness, hessian, --matrix

/// The robustness of the shipped model on ten labelled digits: its JSON, its table and chart,
/// and the FGSM images it writes checked from outside: within eps of the digits and in
/// [0, 1], higher in loss, and classified as often as it reports.
#[test]
fn robustness_reports_what_its_adversarial_images_do() {
    let dir = common::temp_dir();
    let (adversarial, chart) = (dir.path().join("adv.npy"), dir.path().join("chart.png"));
    let ran = run(&[
        "robustness",
        "--backend",
        "flex",
        "--weights",
        "models/lenet5-mnist.bpk",
        "--images",
        "data/digits",
        "--json",
        "--adversarial",
        adversarial.to_str().unwrap(),
        "--plot",
        chart.to_str().unwrap(),
    ]);
    assert!(ran.status.success(), "{}", ran.stderr);
    let report: serde_json::Value = serde_json::from_str(ran.stdout.trim()).unwrap();
    assert_eq!(report["samples"], 10);
    let model = &report["models"][0];
    assert_eq!(model["clean"]["correct"], 10, "{model}");
    let fgsm = model["fgsm"].as_array().unwrap();
    let at_01 = fgsm
        .iter()
        .find(|p| p["eps"].as_f64().unwrap() == 0.1f32 as f64)
        .unwrap();
    let reported = at_01["correct"].as_u64().unwrap() as usize;
    // PGD searches further than one step: never better than FGSM at the same budget here.
    let pgd_01 = &model["pgd"][0];
    assert!(
        pgd_01["correct"].as_u64().unwrap() as usize <= reported,
        "{model}"
    );
    assert!(model["mean_frobenius"].as_f64().unwrap() > 0.0);

    // The images: the digits as the main command reads them, moved by at most 0.1.
    let clean_npy = dir.path().join("clean.npy");
    let clean_logits = dir.path().join("clean_logits.npy");
    run_ok(&[
        "--backend",
        "flex",
        "--weights",
        "models/lenet5-mnist.bpk",
        "--images",
        "data/digits",
        "--layout",
        "per-sample",
        "--output",
        clean_npy.to_str().unwrap(),
        "--logits",
        clean_logits.to_str().unwrap(),
    ]);
    let (_, adv) = read_npy(&adversarial);
    let digits =
        lenet_jacobian::input::images::load_dir(Path::new("data/digits"), [1, 32, 32]).unwrap();
    assert_eq!(adv.len(), digits.values.len());
    for (a, x) in adv.iter().zip(&digits.values) {
        assert!((0.0..=1.0).contains(a), "{a} outside [0, 1]");
        assert!((a - x).abs() <= 0.1 + 1e-6, "moved by {}", (a - x).abs());
    }
    let adv_logits = dir.path().join("adv_logits.npy");
    let labels = dir.path().join("labels.npy");
    let label_values: Vec<u8> = digits
        .labels
        .iter()
        .flat_map(|l| (l.unwrap() as i64).to_le_bytes())
        .collect();
    std::fs::write(
        &labels,
        common::npy_bytes("<i8", &[10], false, &label_values),
    )
    .unwrap();
    run_ok(&[
        "--backend",
        "flex",
        "--weights",
        "models/lenet5-mnist.bpk",
        "--input",
        adversarial.to_str().unwrap(),
        "--labels",
        labels.to_str().unwrap(),
        "--layout",
        "per-sample",
        "--logits",
        adv_logits.to_str().unwrap(),
    ]);
    let cross_entropy = |logits: &[f32]| -> (f64, usize) {
        let mut loss = 0.0;
        let mut right = 0;
        for (row, label) in logits.chunks(OUTPUTS).zip(&digits.labels) {
            let label = label.unwrap();
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            let sum: f64 = row.iter().map(|&v| f64::from(v - max).exp()).sum();
            loss += sum.ln() - f64::from(row[label] - max);
            let predicted = (0..OUTPUTS)
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .unwrap();
            right += usize::from(predicted == label);
        }
        (loss, right)
    };
    let (clean_loss, clean_right) = cross_entropy(&read_npy(&clean_logits).1);
    let (adv_loss, adv_right) = cross_entropy(&read_npy(&adv_logits).1);
    assert_eq!(clean_right, 10);
    assert_eq!(
        adv_right, reported,
        "the FGSM images' accuracy is the one reported"
    );
    assert!(
        adv_loss > clean_loss + 1.0,
        "FGSM raised the loss from {clean_loss} to {adv_loss} only"
    );

    let chart = image::open(&chart).unwrap();
    assert_eq!((chart.width(), chart.height()), lenet_jacobian::plot::SIZE);

    // The table names every measurement, for two models side by side.
    let table = run_ok(&[
        "robustness",
        "--backend",
        "flex",
        "--weights",
        "models/lenet5-mnist.bpk",
        "--weights",
        "models/lenet5-mnist.bpk",
        "--images",
        "data/digits",
    ]);
    for (row, percentages) in [
        ("clean accuracy", 2),
        ("mean ||J||_F", 0),
        ("median spectral norm", 0),
        ("gaussian noise sigma 0.5", 2),
        ("FGSM eps 0.3", 2),
        ("PGD eps 0.2", 2),
    ] {
        let line = table
            .lines()
            .find(|l| l.starts_with(row))
            .unwrap_or_else(|| panic!("{row}: {table}"));
        // One cell per model.
        assert_eq!(line[row.len()..].split_whitespace().count(), 2, "{line}");
        assert_eq!(line.matches('%').count(), percentages, "{line}");
    }
}

#[test]
fn robustness_refuses_unlabelled_input_and_several_models_for_one_file() {
    let dir = common::temp_dir();
    let x = dir.path().join("x.npy");
    std::fs::write(&x, common::npy_f32(&[3, 1, 32, 32], 1)).unwrap();
    let ran = run(&[
        "robustness",
        "--backend",
        "flex",
        "--weights",
        "models/lenet5-mnist.bpk",
        "--input",
        x.to_str().unwrap(),
    ]);
    common::assert_error(&ran, 3, &["sample 0 has no label"]);
    let ran = run(&[
        "robustness",
        "--backend",
        "flex",
        "--weights",
        "models/lenet5-mnist.bpk",
    ]);
    common::assert_error(&ran, 2, &["labelled digits"]);
    let adv = dir.path().join("adv.npy");
    let ran = run(&[
        "robustness",
        "--backend",
        "flex",
        "--weights",
        "models/lenet5-mnist.bpk",
        "--weights",
        "models/lenet5-mnist.bpk",
        "--images",
        "data/digits",
        "--adversarial",
        adv.to_str().unwrap(),
    ]);
    common::assert_error(&ran, 2, &["--adversarial", "one --weights"]);
    assert!(!adv.exists());
}

/// `lenet-jacobian hessian` against `torch.autograd.functional.hessian`
/// (tests/fixtures/penalty/hessian_tanh, scripts/make_penalty_fixtures.py).
#[test]
fn hessian_matches_torch() {
    let dir = common::temp_dir();
    let case = common::fixture("penalty/hessian_tanh");
    let out = dir.path().join("h.npy");
    let report = run_ok(&[
        "hessian",
        "--backend",
        "flex",
        "--weights",
        case.join("lenet5.pt").to_str().unwrap(),
        "--input",
        case.join("input.npy").to_str().unwrap(),
        "--class",
        "3",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(
        report.contains("shape: (1, 1, 32, 32, 1, 32, 32)"),
        "{report}"
    );
    let (shape, ours) = read_npy(&out);
    let (torch_shape, torch) = read_npy(&case.join("hessian.npy"));
    assert_eq!(shape, torch_shape);
    let error = relative_error(&ours, &torch);
    assert!(error <= 1e-4, "{error:e} x max |H|");
    // ReLU: zero almost everywhere, and said so.
    let relu = run_ok(&[
        "hessian",
        "--backend",
        "flex",
        "--activation",
        "relu",
        "--class",
        "0",
    ]);
    assert!(relu.contains("zero almost everywhere"), "{relu}");
    assert!(relu.contains("largest |H|: 0e0"), "{relu}");
    let ran = run(&["hessian", "--backend", "flex", "--class", "10"]);
    common::assert_error(&ran, 2, &["--class 10", "10 classes"]);
}

/// `--matrix`: the full layout drawn, its off-diagonal blocks white.
#[test]
fn the_full_layout_is_drawn_as_its_matrix() {
    let dir = common::temp_dir();
    let picture = dir.path().join("m.png");
    run_ok(&[
        "--backend",
        "flex",
        "--batch",
        "3",
        "--matrix",
        picture.to_str().unwrap(),
    ]);
    let image = image::open(&picture).unwrap().to_rgb8();
    assert!(
        image.width() > 3 * 128 && image.height() > 30 * 4,
        "{:?}",
        image.dimensions()
    );
    let ran = run(&[
        "--backend",
        "flex",
        "--layout",
        "per-sample",
        "--matrix",
        picture.to_str().unwrap(),
    ]);
    common::assert_error(&ran, 2, &["--matrix", "--layout full"]);
}
