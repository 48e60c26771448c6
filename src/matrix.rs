//! `--matrix FILE.png`: the full layout drawn as the `(B O) x (B C H W)` matrix it is, the
//! question's answer at a glance.
//!
//! Row `b O + k` is `d y[b, k] / d x`, the gradient of logit `k` of sample `b` against the whole
//! batch; column block `b'` holds the input pixels of sample `b'`. Rows are grouped by sample
//! and columns by sample, so the two batch axes are the two block axes, and the blocks off the
//! diagonal (`b != b'`) are white: exactly zero. `|J|` is drawn on a log scale (inferno, dark
//! for the smallest, bright for the largest, over [`DECADES`] decades below the largest entry).
//! Each drawn column is the largest `|J|` of [`COLUMN_GROUP`] neighbouring pixels, so that a
//! sample's 1024 pixels fit in 128 columns.

use image::{Rgb, RgbImage};
use jacobian::{Jacobian, Layout};

use crate::font;

/// The most samples the picture is drawn for (the matrix grows with their square).
pub const MAX_SAMPLES: usize = 32;
/// Decades of `|J|` the colours span, below the largest entry.
pub const DECADES: f32 = 4.0;
/// Input pixels per drawn column (their largest `|J|`).
pub const COLUMN_GROUP: usize = 8;
/// Height in pixels of each row of the matrix.
const ROW_HEIGHT: u32 = 4;
const TEXT_SIZE: f32 = 15.0;
const MARGIN: u32 = 12;
/// Room for the row labels on the left and the column labels above.
const LEFT: u32 = 120;
const TOP: u32 = 70;
const COLOURBAR: u32 = 70;

const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const INK: Rgb<u8> = Rgb([0, 0, 0]);
const GRID: Rgb<u8> = Rgb([150, 150, 150]);

/// The colour of `|J|` = `magnitude`, the largest being `largest`: white for an exact zero.
fn colour(magnitude: f32, largest: f32) -> Rgb<u8> {
    if magnitude == 0.0 || largest <= 0.0 {
        return WHITE;
    }
    if !magnitude.is_finite() {
        return Rgb([128, 128, 128]);
    }
    let t = 1.0 + (magnitude / largest).log10() / DECADES;
    let c = colorous::INFERNO.eval_continuous(f64::from(t.clamp(0.0, 1.0)) * 0.95);
    Rgb([c.r, c.g, c.b])
}

/// Draws the full-layout Jacobian `[B, O, B, C, H, W]`.
///
/// # Panics
///
/// When `jacobian` is not the whole full layout of at most [`MAX_SAMPLES`] samples.
pub fn render(jacobian: &Jacobian) -> RgbImage {
    assert_eq!(jacobian.layout, Layout::Full, "the full layout");
    let (samples, outputs, len) = (
        jacobian.shape[0],
        jacobian.num_outputs(),
        jacobian.input_len(),
    );
    assert!(
        jacobian.start == 0 && samples <= MAX_SAMPLES,
        "the whole Jacobian of at most {MAX_SAMPLES} samples"
    );
    let groups = len.div_ceil(COLUMN_GROUP);
    let block_w = groups as u32;
    let (matrix_w, matrix_h) = (
        samples as u32 * block_w,
        (samples * outputs) as u32 * ROW_HEIGHT,
    );
    let width = LEFT + matrix_w + MARGIN;
    let height = TOP + matrix_h + COLOURBAR + MARGIN;
    let mut image = RgbImage::from_pixel(width, height, WHITE);
    let largest = jacobian
        .values
        .iter()
        .filter(|v| v.is_finite())
        .fold(0.0f32, |m, v| m.max(v.abs()));

    // The matrix: row (b, k), columns (b', group of pixels).
    for row in 0..samples * outputs {
        for other in 0..samples {
            let start = (row * samples + other) * len;
            let pixels = &jacobian.values[start..start + len];
            for (g, group) in pixels.chunks(COLUMN_GROUP).enumerate() {
                let magnitude = group.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let c = colour(magnitude, largest);
                let x = LEFT + other as u32 * block_w + g as u32;
                for dy in 0..ROW_HEIGHT {
                    image.put_pixel(x, TOP + row as u32 * ROW_HEIGHT + dy, c);
                }
            }
        }
    }
    // The block boundaries, and the labels of the two batch axes.
    let block_h = outputs as u32 * ROW_HEIGHT;
    for b in 0..=samples as u32 {
        for y in TOP..TOP + matrix_h {
            image.put_pixel((LEFT + b * block_w).min(width - 1), y, GRID);
        }
        for x in LEFT..LEFT + matrix_w {
            image.put_pixel(x, (TOP + b * block_h).min(height - 1), GRID);
        }
    }
    let text_h = font::text_size("0", TEXT_SIZE).1;
    for b in 0..samples as u32 {
        let row_label = format!("b={b}, k=0..{}", outputs - 1);
        let (w, _) = font::text_size(&row_label, TEXT_SIZE);
        let y = TOP + b * block_h + block_h.saturating_sub(text_h) / 2;
        draw(&mut image, &row_label, LEFT.saturating_sub(w + 6), y);
        let column_label = format!("b'={b}");
        let (w, _) = font::text_size(&column_label, TEXT_SIZE);
        draw(
            &mut image,
            &column_label,
            LEFT + b * block_w + block_w.saturating_sub(w) / 2,
            TOP - text_h - 4,
        );
    }
    draw(
        &mut image,
        &format!(
            "J[b, k, b', pixel] = d logit[b, k] / d input[b', pixel]: {} rows (b, k) by {} columns (b', pixel), |J| on a log scale",
            samples * outputs,
            samples * len
        ),
        LEFT,
        MARGIN,
    );

    // The colour bar: DECADES decades below the largest |J|, and white for exact zeros.
    let bar_top = TOP + matrix_h + 14;
    let bar_w = matrix_w.min(480);
    for x in 0..bar_w {
        let t = x as f32 / bar_w.max(1) as f32;
        let magnitude = largest * 10f32.powf(DECADES * (t - 1.0));
        for y in bar_top..bar_top + 14 {
            image.put_pixel(LEFT + x, y, colour(magnitude, largest));
        }
    }
    for d in 0..=DECADES as u32 {
        let x = LEFT + bar_w * d / DECADES as u32;
        let value = largest * 10f32.powf(d as f32 - DECADES);
        draw(
            &mut image,
            &format!("{value:.0e}"),
            x.saturating_sub(12),
            bar_top + 18,
        );
    }
    let key = "|J| (white: exactly 0)";
    draw(&mut image, key, LEFT + bar_w + 16, bar_top - 2);
    image
}

fn draw(image: &mut RgbImage, text: &str, left: u32, top: u32) {
    font::draw_text(image, text, left, top, TEXT_SIZE, INK);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two samples, two outputs, 16 pixels each: sample b's rows hold b + 1 on its own pixels
    /// and zero on the other sample's.
    fn full() -> Jacobian {
        let len = 16;
        let mut values = vec![0.0f32; 2 * 2 * 2 * len];
        for b in 0..2 {
            for k in 0..2 {
                let start = ((b * 2 + k) * 2 + b) * len;
                values[start..start + len].fill((b + 1) as f32);
            }
        }
        Jacobian {
            layout: Layout::Full,
            start: 0,
            shape: vec![2, 2, 2, 1, 4, 4],
            values,
        }
    }

    #[test]
    fn the_blocks_off_the_diagonal_are_white_and_the_diagonal_coloured() {
        let image = render(&full());
        let block_w = (16 / COLUMN_GROUP) as u32;
        let at = |row: u32, other: u32| {
            *image.get_pixel(LEFT + other * block_w + 1, TOP + row * ROW_HEIGHT + 1)
        };
        // Rows 0, 1: sample 0; rows 2, 3: sample 1.
        assert_eq!(at(0, 1), WHITE);
        assert_eq!(at(3, 0), WHITE);
        assert_eq!(at(3, 1), colour(2.0, 2.0));
        assert_eq!(at(0, 0), colour(1.0, 2.0));
        assert_ne!(colour(1.0, 2.0), colour(2.0, 2.0));
        assert_ne!(colour(1.0, 2.0), WHITE);
    }
}
