//! `--saliency FILE.png`: per-class saliency maps, `|d y[b, k] / d x[b]|`, drawn as a grid.
//!
//! One row per sample: the input image (labelled `x`), then one tile per class `k` (labelled
//! with its index) showing `|J[b, k]|` through the inferno colour map, black for zero. Each
//! row is normalised by that sample's largest `|J|` over all its classes, so the tiles of a
//! row compare with each other: the brightest pixel of a row is the one that moves some logit
//! of that sample the most. The sample's index is written at the left of its row. Tiles are
//! scaled up [`SCALE`] times, pixel for pixel.

use image::{Rgb, RgbImage};
use jacobian::Jacobian;

/// At most this many samples (rows) are drawn.
pub const MAX_ROWS: usize = 16;
/// Each input pixel becomes a `SCALE x SCALE` block.
pub const SCALE: u32 = 3;
/// Each pixel of the font becomes a `FONT_SCALE x FONT_SCALE` block.
const FONT_SCALE: u32 = 3;
/// Space around the grid and between tiles.
const MARGIN: u32 = 8;
const GAP: u32 = 6;
/// Height of the band holding the labels above each row's tiles.
const LABEL_BAND: u32 = GLYPH_HEIGHT * FONT_SCALE + 6;
const GLYPH_WIDTH: u32 = 3;
const GLYPH_HEIGHT: u32 = 5;

const BACKGROUND: Rgb<u8> = Rgb([255, 255, 255]);
const INK: Rgb<u8> = Rgb([0, 0, 0]);

/// A 3 x 5 bitmap font: the digits, then `x` (the input). Each row's bits, left to right,
/// are the bits 2, 1, 0.
const GLYPHS: [[u8; 5]; 11] = [
    [0b111, 0b101, 0b101, 0b101, 0b111], // 0
    [0b010, 0b110, 0b010, 0b010, 0b111], // 1
    [0b111, 0b001, 0b111, 0b100, 0b111], // 2
    [0b111, 0b001, 0b111, 0b001, 0b111], // 3
    [0b101, 0b101, 0b111, 0b001, 0b001], // 4
    [0b111, 0b100, 0b111, 0b001, 0b111], // 5
    [0b111, 0b100, 0b111, 0b101, 0b111], // 6
    [0b111, 0b001, 0b001, 0b001, 0b001], // 7
    [0b111, 0b101, 0b111, 0b101, 0b111], // 8
    [0b111, 0b101, 0b111, 0b001, 0b111], // 9
    [0b000, 0b101, 0b010, 0b101, 0b000], // x
];

/// How many rows a batch of `batch` samples gets.
pub fn rows(batch: usize) -> usize {
    batch.min(MAX_ROWS)
}

fn text_width(text: &str) -> u32 {
    let n = text.chars().count() as u32;
    if n == 0 {
        0
    } else {
        (n * (GLYPH_WIDTH + 1) - 1) * FONT_SCALE
    }
}

fn draw_text(image: &mut RgbImage, text: &str, left: u32, top: u32) {
    for (i, c) in text.chars().enumerate() {
        let glyph = match c {
            '0'..='9' => GLYPHS[c as usize - '0' as usize],
            'x' => GLYPHS[10],
            _ => continue,
        };
        let x0 = left + i as u32 * (GLYPH_WIDTH + 1) * FONT_SCALE;
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..GLYPH_WIDTH {
                if bits >> (GLYPH_WIDTH - 1 - col) & 1 == 1 {
                    fill(
                        image,
                        x0 + col * FONT_SCALE,
                        top + row as u32 * FONT_SCALE,
                        FONT_SCALE,
                        INK,
                    );
                }
            }
        }
    }
}

/// A `side x side` square, clipped to the image.
fn fill(image: &mut RgbImage, left: u32, top: u32, side: u32, colour: Rgb<u8>) {
    let (width, height) = image.dimensions();
    for y in top..(top + side).min(height) {
        for x in left..(left + side).min(width) {
            image.put_pixel(x, y, colour);
        }
    }
}

/// Height of a row: the label band, then the tiles (at least as tall as the sample index).
fn row_height(tile_h: u32) -> u32 {
    LABEL_BAND + tile_h.max(GLYPH_HEIGHT * FONT_SCALE)
}

/// Width of the column of sample indices for `samples` rows.
fn index_column(samples: usize) -> u32 {
    text_width(&samples.saturating_sub(1).to_string()) + GAP
}

/// Pixel size `(width, height)` of the grid for `samples` rows, `outputs` classes and inputs
/// of `height x width` pixels.
pub fn image_size(samples: usize, outputs: usize, height: usize, width: usize) -> (u32, u32) {
    let (tile_w, tile_h) = (width as u32 * SCALE, height as u32 * SCALE);
    let columns = outputs as u32 + 1;
    let grid_w = index_column(samples) + columns * tile_w + (columns - 1) * GAP;
    let row_h = row_height(tile_h);
    let grid_h = samples as u32 * row_h + (samples as u32).saturating_sub(1) * GAP;
    (grid_w + 2 * MARGIN, grid_h + 2 * MARGIN)
}

/// Draws the grid of every sample of `jacobian` (either layout, input dims `[C, H, W]`).
/// `inputs` holds the same samples' inputs, `[B, C, H, W]` row-major. Channels are combined:
/// the input is shown as their mean, `|J|` as their largest.
///
/// # Panics
///
/// When the Jacobian's input is not `[C, H, W]` or `inputs` does not match it.
pub fn render(inputs: &[f32], jacobian: &Jacobian) -> RgbImage {
    let &[channels, height, width] = jacobian.input_dims() else {
        panic!(
            "saliency maps need [C, H, W] inputs, not {:?}",
            jacobian.input_dims()
        );
    };
    let (samples, outputs, plane) = (jacobian.samples(), jacobian.num_outputs(), height * width);
    let sample_len = channels * plane;
    assert_eq!(
        inputs.len(),
        samples * sample_len,
        "inputs and Jacobian differ"
    );
    let (image_w, image_h) = image_size(samples, outputs, height, width);
    let mut image = RgbImage::from_pixel(image_w, image_h, BACKGROUND);
    let (tile_w, tile_h) = (width as u32 * SCALE, height as u32 * SCALE);
    let first_tile = MARGIN + index_column(samples);

    for b in 0..samples {
        let top = MARGIN + b as u32 * (row_height(tile_h) + GAP);
        let tiles_top = top + LABEL_BAND;
        let index = b.to_string();
        let index_left = first_tile - GAP - text_width(&index);
        let index_top = tiles_top + tile_h.saturating_sub(GLYPH_HEIGHT * FONT_SCALE) / 2;
        draw_text(&mut image, &index, index_left, index_top);

        // The input, channels averaged; shown as it is when within [0, 1], else stretched.
        let input = &inputs[b * sample_len..(b + 1) * sample_len];
        let gray: Vec<f32> = (0..plane)
            .map(|p| (0..channels).map(|c| input[c * plane + p]).sum::<f32>() / channels as f32)
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

        // |J| per class, channels combined by their largest, scaled by the row's largest.
        let matrix = jacobian.sample_matrix(b);
        let saliency: Vec<Vec<f32>> = (0..outputs)
            .map(|k| {
                let row = &matrix[k * sample_len..(k + 1) * sample_len];
                (0..plane)
                    .map(|p| (0..channels).fold(0.0f32, |m, c| m.max(row[c * plane + p].abs())))
                    .collect()
            })
            .collect();
        let largest = saliency.iter().flatten().fold(0.0f32, |m, &v| m.max(v));
        for (k, map) in saliency.iter().enumerate() {
            let left = first_tile + (k as u32 + 1) * (tile_w + GAP);
            draw_label(&mut image, &k.to_string(), left, tile_w, top);
            draw_tile(&mut image, left, tiles_top, width, map, |v| {
                let t = if largest > 0.0 { v / largest } else { 0.0 };
                let c = colorous::INFERNO.eval_continuous(f64::from(t.clamp(0.0, 1.0)));
                Rgb([c.r, c.g, c.b])
            });
        }
    }
    image
}

/// `text` centred above a tile at `left`, in the label band starting at `top`.
fn draw_label(image: &mut RgbImage, text: &str, left: u32, tile_w: u32, top: u32) {
    let x = left + tile_w.saturating_sub(text_width(text)) / 2;
    draw_text(image, text, x, top + 2);
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
            colour(v),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jacobian::Layout;

    /// Two samples of 2 x 3 pixels, 2 classes: class k of sample b has |J| = (b + 1) at pixel
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

    #[test]
    fn grid_size_and_tiles() {
        let inputs: Vec<f32> = (0..12).map(|i| i as f32 / 11.0).collect();
        let image = render(&inputs, &jacobian());
        let (w, h) = image_size(2, 2, 2, 3);
        assert_eq!(image.dimensions(), (w, h));
        assert_eq!(
            w,
            2 * MARGIN + text_width("1") + GAP + 3 * 3 * SCALE + 2 * GAP
        );
        // Tiles 6 pixels tall: the row is as tall as the sample index, 15 pixels.
        assert_eq!(h, 2 * MARGIN + 2 * (LABEL_BAND + 5 * FONT_SCALE) + GAP);

        let first_tile = MARGIN + text_width("1") + GAP;
        let pixel = |b: u32, column: u32, row: u32, col: u32| {
            let top = MARGIN + b * (row_height(2 * SCALE) + GAP) + LABEL_BAND;
            let left = first_tile + column * (3 * SCALE + GAP);
            *image.get_pixel(left + col * SCALE + 1, top + row * SCALE + 1)
        };
        // Input of sample 1, pixel (1, 2): value 11 / 11 = 1, white; pixel (0, 0): 6 / 11.
        assert_eq!(pixel(1, 0, 1, 2), Rgb([255; 3]));
        let level = (6.0f32 / 11.0 * 255.0).round() as u8;
        assert_eq!(pixel(1, 0, 0, 0), Rgb([level; 3]));
        // Each row is normalised by its own largest |J|: the hot pixel is the top of the
        // colour map in both rows, the others the bottom.
        let top = colorous::INFERNO.eval_continuous(1.0);
        let bottom = colorous::INFERNO.eval_continuous(0.0);
        for b in 0..2 {
            assert_eq!(pixel(b, 1, 0, 0), Rgb([top.r, top.g, top.b]));
            assert_eq!(pixel(b, 2, 0, 1), Rgb([top.r, top.g, top.b]));
            assert_eq!(pixel(b, 1, 1, 1), Rgb([bottom.r, bottom.g, bottom.b]));
        }
    }

    #[test]
    fn png_written_decodes_to_the_same_image() {
        let inputs = vec![0.5f32; 12];
        let image = render(&inputs, &jacobian());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("maps.png");
        crate::output::write_png(crate::output::AtomicFile::create(&path).unwrap(), &image)
            .unwrap();
        let decoded = image::open(&path).unwrap().to_rgb8();
        assert_eq!(decoded, image);
    }

    #[test]
    fn rows_are_capped() {
        assert_eq!(rows(3), 3);
        assert_eq!(rows(100), MAX_ROWS);
    }
}
