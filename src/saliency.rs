//! `--saliency FILE.png`: saliency maps `d logit_k / d x`, drawn as a grid.
//!
//! One row per sample (the first [`MAX_ROWS`]): its index, the input image, then the maps of
//! the [`Target`] classes, then what the model says of it: `L7` for its label when known, `P7
//! 98%` for the predicted class and its probability. With every class drawn, the predicted
//! class's tile is framed green (red when it is not the label) and the label's tile blue.
//!
//! A map shows `|J[b, k]|` through the inferno colour map (black for zero), or, signed, `J`
//! through a diverging map (blue negative, white zero, red positive). Each row is scaled by
//! that sample's largest `|J|` over the classes drawn, so the tiles of a row compare with each
//! other. Tiles are scaled up [`SCALE`] times, pixel for pixel.

use image::{Rgb, RgbImage};
use jacobian::Jacobian;

use crate::font;

/// At most this many samples (rows) are drawn.
pub const MAX_ROWS: usize = 16;
/// Each input pixel becomes a `SCALE x SCALE` block.
pub const SCALE: u32 = 3;
/// Size of the text, in pixels.
const TEXT_SIZE: f32 = 14.0;
/// Space around the grid and between tiles.
const MARGIN: u32 = 8;
const GAP: u32 = 6;
/// Width of the frames marking the predicted class and the label.
const FRAME: u32 = 3;

const BACKGROUND: Rgb<u8> = Rgb([255, 255, 255]);
const INK: Rgb<u8> = Rgb([0, 0, 0]);
const PREDICTED_RIGHT: Rgb<u8> = Rgb([0, 150, 60]);
const PREDICTED_WRONG: Rgb<u8> = Rgb([210, 30, 30]);
const LABEL: Rgb<u8> = Rgb([30, 90, 220]);

/// Which classes' maps are drawn for each sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Every class: a row of tiles per sample.
    All,
    /// The class the model predicts (Captum's usual target).
    Predicted,
    /// The sample's label (every drawn sample needs one).
    Label,
}

/// What is drawn of one sample besides its maps.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample<'a> {
    /// The input, `[C, H, W]` row-major.
    pub input: &'a [f32],
    /// Its label, when known.
    pub label: Option<usize>,
    /// The predicted class.
    pub predicted: usize,
    /// Its probability (softmax of the logits).
    pub probability: f32,
}

/// How many rows a batch of `batch` samples gets.
pub fn rows(batch: usize) -> usize {
    batch.min(MAX_ROWS)
}

fn text_width(text: &str) -> u32 {
    font::text_size(text, TEXT_SIZE).0
}

/// Height of a line of text.
fn text_height() -> u32 {
    font::text_size("0", TEXT_SIZE).1
}

/// Height of the band holding the labels above each row's tiles.
fn label_band() -> u32 {
    text_height() + 4
}

fn draw_text(image: &mut RgbImage, text: &str, left: u32, top: u32, colour: Rgb<u8>) {
    font::draw_text(image, text, left, top, TEXT_SIZE, colour);
}

/// A `width x height` rectangle, clipped to the image.
fn fill(image: &mut RgbImage, left: u32, top: u32, width: u32, height: u32, colour: Rgb<u8>) {
    let (image_w, image_h) = image.dimensions();
    for y in top..(top + height).min(image_h) {
        for x in left..(left + width).min(image_w) {
            image.put_pixel(x, y, colour);
        }
    }
}

/// A frame `FRAME` wide just outside the `width x height` tile at (`left`, `top`).
fn frame(image: &mut RgbImage, left: u32, top: u32, width: u32, height: u32, colour: Rgb<u8>) {
    let (l, t) = (left.saturating_sub(FRAME), top.saturating_sub(FRAME));
    let (w, h) = (width + 2 * FRAME, height + 2 * FRAME);
    fill(image, l, t, w, FRAME, colour);
    fill(image, l, t + h - FRAME, w, FRAME, colour);
    fill(image, l, t, FRAME, h, colour);
    fill(image, l + w - FRAME, t, FRAME, h, colour);
}

/// Height of a row: the label band, then the tiles (at least as tall as the sample index).
fn row_height(tile_h: u32) -> u32 {
    label_band() + tile_h.max(text_height())
}

/// Width of the column of sample indices for `samples` rows.
fn index_column(samples: usize) -> u32 {
    text_width(&samples.saturating_sub(1).to_string()) + GAP
}

/// What the model says of a sample: `L7 P7 98%` (label, predicted class, probability).
fn verdict(sample: &Sample) -> String {
    let label = sample.label.map(|l| format!("L{l} ")).unwrap_or_default();
    format!(
        "{label}P{} {:.0}%",
        sample.predicted,
        100.0 * sample.probability
    )
}

/// The classes drawn for a sample.
fn classes(target: Target, sample: &Sample, outputs: usize) -> Vec<usize> {
    match target {
        Target::All => (0..outputs).collect(),
        Target::Predicted => vec![sample.predicted],
        Target::Label => sample.label.into_iter().collect(),
    }
}

/// Pixel size `(width, height)` of the grid for `samples` rows of `tiles` maps each, inputs
/// of `height x width` pixels, and the widest verdict text `verdict_width`.
fn image_size(
    samples: usize,
    tiles: usize,
    height: usize,
    width: usize,
    verdict_width: u32,
) -> (u32, u32) {
    let tile_w = width as u32 * SCALE;
    let columns = tiles as u32 + 1;
    let grid_w = index_column(samples) + columns * (tile_w + GAP) + verdict_width;
    (grid_w + 2 * MARGIN, grid_height(samples, height))
}

/// Pixel height of the grid of `samples` rows of inputs `height` pixels high.
pub fn grid_height(samples: usize, height: usize) -> u32 {
    let row_h = row_height(height as u32 * SCALE);
    samples as u32 * row_h + (samples as u32).saturating_sub(1) * GAP + 2 * MARGIN
}

/// Draws the grid of `samples` (their inputs and what the model says of them) with the maps
/// of their per-sample Jacobian `jacobian` (either layout, input dims `[C, H, W]`, the same
/// samples in order). Channels are combined: the input is shown as their mean, a map as the
/// entry of largest magnitude over them.
///
/// # Panics
///
/// When the Jacobian's input is not `[C, H, W]`, `samples` does not match it, or a sample has
/// no label under [`Target::Label`] (the caller checks labels first).
pub fn render(samples: &[Sample], jacobian: &Jacobian, target: Target, signed: bool) -> RgbImage {
    let &[channels, height, width] = jacobian.input_dims() else {
        panic!(
            "saliency maps need [C, H, W] inputs, not {:?}",
            jacobian.input_dims()
        );
    };
    let (outputs, plane) = (jacobian.num_outputs(), height * width);
    let sample_len = channels * plane;
    assert_eq!(
        samples.len(),
        jacobian.samples(),
        "inputs and Jacobian differ"
    );
    let tiles = match target {
        Target::All => outputs,
        Target::Predicted | Target::Label => 1,
    };
    let verdict_width = samples
        .iter()
        .map(|s| text_width(&verdict(s)))
        .max()
        .unwrap_or(0);
    let (image_w, image_h) = image_size(samples.len(), tiles, height, width, verdict_width);
    let mut image = RgbImage::from_pixel(image_w, image_h, BACKGROUND);
    let (tile_w, tile_h) = (width as u32 * SCALE, height as u32 * SCALE);
    let first_tile = MARGIN + index_column(samples.len());

    for (b, sample) in samples.iter().enumerate() {
        let top = MARGIN + b as u32 * (row_height(tile_h) + GAP);
        let tiles_top = top + label_band();
        let text_top = tiles_top + tile_h.saturating_sub(text_height()) / 2;
        let index = b.to_string();
        draw_text(
            &mut image,
            &index,
            first_tile - GAP - text_width(&index),
            text_top,
            INK,
        );

        // The input, channels averaged; shown as it is when within [0, 1], else stretched.
        assert_eq!(sample.input.len(), sample_len, "an input of another size");
        let gray: Vec<f32> = (0..plane)
            .map(|p| {
                (0..channels)
                    .map(|c| sample.input[c * plane + p])
                    .sum::<f32>()
                    / channels as f32
            })
            .collect();
        let (lo, hi) = gray
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        let (lo, span) = if lo >= 0.0 && hi <= 1.0 {
            (0.0, 1.0)
        } else {
            (lo, (hi - lo).max(f32::MIN_POSITIVE))
        };
        draw_label(&mut image, "x", first_tile, tile_w, top);
        draw_tile(&mut image, first_tile, tiles_top, width, &gray, |v| {
            let level = (((v - lo) / span).clamp(0.0, 1.0) * 255.0).round() as u8;
            Rgb([level; 3])
        });

        // The maps, channels combined by the entry of largest magnitude, scaled by the row's
        // largest |J|.
        let matrix = jacobian.sample_matrix(b);
        let classes = classes(target, sample, outputs);
        assert!(!classes.is_empty(), "sample {b} has no label to draw");
        let maps: Vec<Vec<f32>> = classes
            .iter()
            .map(|&k| {
                let row = &matrix[k * sample_len..(k + 1) * sample_len];
                (0..plane)
                    .map(|p| {
                        (0..channels)
                            .map(|c| row[c * plane + p])
                            .fold(0.0f32, |m, v| if v.abs() > m.abs() { v } else { m })
                    })
                    .collect()
            })
            .collect();
        let largest = maps
            .iter()
            .flatten()
            .filter(|v| v.is_finite())
            .fold(0.0f32, |m, v| m.max(v.abs()));
        for (i, (map, &k)) in maps.iter().zip(&classes).enumerate() {
            let left = first_tile + (i as u32 + 1) * (tile_w + GAP);
            draw_label(&mut image, &k.to_string(), left, tile_w, top);
            draw_tile(&mut image, left, tiles_top, width, map, |v| {
                let t = if largest > 0.0 { v / largest } else { 0.0 };
                colour(t, signed)
            });
            if target == Target::All {
                if k == sample.predicted {
                    let right = sample.label.is_none_or(|l| l == k);
                    let colour = if right {
                        PREDICTED_RIGHT
                    } else {
                        PREDICTED_WRONG
                    };
                    frame(&mut image, left, tiles_top, tile_w, tile_h, colour);
                } else if sample.label == Some(k) {
                    frame(&mut image, left, tiles_top, tile_w, tile_h, LABEL);
                }
            }
        }
        let verdict_left = first_tile + (tiles as u32 + 1) * (tile_w + GAP);
        draw_text(&mut image, &verdict(sample), verdict_left, text_top, INK);
    }
    image
}

/// The colour of a map's value `t`, scaled to [-1, 1].
fn colour(t: f32, signed: bool) -> Rgb<u8> {
    if !t.is_finite() {
        return Rgb([128, 128, 128]); // NaN or Inf: neither end of the scale
    }
    let c = if signed {
        // RdBu runs red to blue: blue for negative, red for positive.
        colorous::RED_BLUE.eval_continuous(f64::from(0.5 - t.clamp(-1.0, 1.0) / 2.0))
    } else {
        colorous::INFERNO.eval_continuous(f64::from(t.abs().clamp(0.0, 1.0)))
    };
    Rgb([c.r, c.g, c.b])
}

/// `text` centred above a tile at `left`, in the label band starting at `top`.
fn draw_label(image: &mut RgbImage, text: &str, left: u32, tile_w: u32, top: u32) {
    let x = left + tile_w.saturating_sub(text_width(text)) / 2;
    draw_text(image, text, x, top + 1, INK);
}

fn draw_tile(
    image: &mut RgbImage,
    left: u32,
    top: u32,
    width: usize,
    values: &[f32],
    colour: impl Fn(f32) -> Rgb<u8>,
) {
    for (p, &v) in values.iter().enumerate() {
        let (row, col) = ((p / width) as u32, (p % width) as u32);
        fill(
            image,
            left + col * SCALE,
            top + row * SCALE,
            SCALE,
            SCALE,
            colour(v),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jacobian::Layout;

    /// Two samples of 2 x 3 pixels, 2 classes: class k of sample b has J = -(b + 1) at pixel
    /// k, zero elsewhere.
    fn jacobian() -> Jacobian {
        let mut values = vec![0.0f32; 2 * 2 * 6];
        for b in 0..2 {
            for k in 0..2 {
                values[(b * 2 + k) * 6 + k] = -((b + 1) as f32);
            }
        }
        Jacobian {
            layout: Layout::PerSample,
            start: 0,
            shape: vec![2, 2, 1, 2, 3],
            values,
        }
    }

    fn samples(inputs: &[f32]) -> Vec<Sample<'_>> {
        vec![
            Sample {
                input: &inputs[..6],
                label: Some(1),
                predicted: 1,
                probability: 0.9,
            },
            Sample {
                input: &inputs[6..],
                label: Some(0),
                predicted: 1,
                probability: 0.6,
            },
        ]
    }

    /// The colour of the centre of pixel (`row`, `col`) of tile `column` (0: the input) of
    /// sample `b`, in a grid of 2 x 3 pixel tiles.
    fn pixel(image: &RgbImage, b: u32, column: u32, row: u32, col: u32) -> Rgb<u8> {
        let first_tile = MARGIN + text_width("1") + GAP;
        let top = MARGIN + b * (row_height(2 * SCALE) + GAP) + label_band();
        let left = first_tile + column * (3 * SCALE + GAP);
        *image.get_pixel(left + col * SCALE + 1, top + row * SCALE + 1)
    }

    #[test]
    fn every_class_row_by_row_with_the_predicted_and_label_tiles_framed() {
        let inputs: Vec<f32> = (0..12).map(|i| i as f32 / 11.0).collect();
        let image = render(&samples(&inputs), &jacobian(), Target::All, false);
        let widest = text_width("L0 P1 60%").max(text_width("L1 P1 90%"));
        assert_eq!(image.dimensions(), image_size(2, 2, 2, 3, widest));
        // Input of sample 1, pixel (1, 2): value 11 / 11 = 1, white; pixel (0, 0): 6 / 11.
        assert_eq!(pixel(&image, 1, 0, 1, 2), Rgb([255; 3]));
        let level = (6.0f32 / 11.0 * 255.0).round() as u8;
        assert_eq!(pixel(&image, 1, 0, 0, 0), Rgb([level; 3]));
        // Each row is scaled by its own largest |J|: the hot pixel is the top of the colour map
        // in both rows, the others the bottom.
        let top = colour(1.0, false);
        let bottom = colour(0.0, false);
        for b in 0..2 {
            assert_eq!(pixel(&image, b, 1, 0, 0), top);
            assert_eq!(pixel(&image, b, 2, 0, 1), top);
            assert_eq!(pixel(&image, b, 1, 1, 1), bottom);
        }
        // Sample 0 is predicted right (class 1 framed green), sample 1 wrong (class 1 red,
        // its label 0 blue): the frame sits just left of the tile.
        let first_tile = MARGIN + text_width("1") + GAP;
        let frame_at = |b: u32, column: u32| {
            let top = MARGIN + b * (row_height(2 * SCALE) + GAP) + label_band();
            let left = first_tile + column * (3 * SCALE + GAP);
            *image.get_pixel(left - 1, top + 1)
        };
        assert_eq!(frame_at(0, 2), PREDICTED_RIGHT);
        assert_eq!(frame_at(0, 1), BACKGROUND);
        assert_eq!(frame_at(1, 2), PREDICTED_WRONG);
        assert_eq!(frame_at(1, 1), LABEL);
    }

    #[test]
    fn one_target_per_sample_and_signed_maps() {
        let inputs = vec![0.5f32; 12];
        let samples = samples(&inputs);
        let predicted = render(&samples, &jacobian(), Target::Predicted, true);
        // One map per sample, class 1's, whose J is negative: the blue end of the signed map.
        assert_eq!(pixel(&predicted, 0, 1, 0, 1), colour(-1.0, true));
        assert_eq!(pixel(&predicted, 0, 1, 0, 0), colour(0.0, true));
        let label = render(&samples, &jacobian(), Target::Label, false);
        // Sample 1's label is 0: its map has the hot pixel at pixel 0.
        assert_eq!(pixel(&label, 1, 1, 0, 0), colour(1.0, false));
        assert_ne!(colour(-1.0, true), colour(1.0, true));
        assert_eq!(colour(-1.0, false), colour(1.0, false));
    }

    #[test]
    fn verdicts_and_labels_read_as_text() {
        let inputs = vec![0.0f32; 12];
        let samples = samples(&inputs);
        assert_eq!(verdict(&samples[0]), "L1 P1 90%");
        let unlabelled = Sample {
            label: None,
            ..samples[1].clone()
        };
        assert_eq!(verdict(&unlabelled), "P1 60%");
        // Drawn as text: ink where the verdict is, nothing beyond its width.
        let mut image = RgbImage::from_pixel(120, 30, BACKGROUND);
        draw_text(&mut image, "L1 P1 90%", 2, 2, INK);
        let inked = |x0: u32, x1: u32| {
            (x0..x1).any(|x| (0..30).any(|y| *image.get_pixel(x, y) != BACKGROUND))
        };
        let width = text_width("L1 P1 90%");
        assert!(inked(2, 2 + width));
        assert!(!inked(2 + width + 1, 120));
    }

    #[test]
    fn rows_are_capped() {
        assert_eq!(rows(3), 3);
        assert_eq!(rows(100), MAX_ROWS);
    }
}
