//! Text in the pictures: DejaVu Sans (`assets/fonts/`, the Bitstream Vera licence), embedded in
//! the binary so that every machine draws the same, rendered with `ab_glyph`; the plots get
//! the same font through plotters.

use std::sync::Once;

use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
use image::{Rgb, RgbImage};

/// The font file, DejaVu Sans.
pub static DEJAVU_SANS: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");

/// The embedded font.
pub fn font() -> FontRef<'static> {
    FontRef::try_from_slice(DEJAVU_SANS).expect("the embedded font is a TrueType font")
}

/// Width and height in pixels of `text` at `size` pixels (the font's ascent plus descent).
pub fn text_size(text: &str, size: f32) -> (u32, u32) {
    let font = font();
    let scaled = font.as_scaled(PxScale::from(size));
    let mut width = 0.0f32;
    let mut previous = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(previous) = previous {
            width += scaled.kern(previous, id);
        }
        width += scaled.h_advance(id);
        previous = Some(id);
    }
    (width.ceil() as u32, scaled.height().ceil() as u32)
}

/// Draws `text` at `size` pixels with its top-left corner at (`left`, `top`), blended over
/// the image (anti-aliased) in `colour`; what falls outside the image is clipped.
pub fn draw_text(
    image: &mut RgbImage,
    text: &str,
    left: u32,
    top: u32,
    size: f32,
    colour: Rgb<u8>,
) {
    let font = font();
    let scaled = font.as_scaled(PxScale::from(size));
    let baseline = top as f32 + scaled.ascent();
    let mut x = left as f32;
    let mut previous = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(previous) = previous {
            x += scaled.kern(previous, id);
        }
        let glyph = id.with_scale_and_position(scaled.scale(), ab_glyph::point(x, baseline));
        x += scaled.h_advance(id);
        previous = Some(id);
        let Some(outline) = font.outline_glyph(glyph) else {
            continue; // a space
        };
        let bounds = outline.px_bounds();
        outline.draw(|gx, gy, coverage| {
            let px = bounds.min.x as i64 + i64::from(gx);
            let py = bounds.min.y as i64 + i64::from(gy);
            if px < 0 || py < 0 || px >= i64::from(image.width()) || py >= i64::from(image.height())
            {
                return;
            }
            let pixel = image.get_pixel_mut(px as u32, py as u32);
            let a = coverage.clamp(0.0, 1.0);
            for (channel, &ink) in pixel.0.iter_mut().zip(&colour.0) {
                *channel = (f32::from(*channel) * (1.0 - a) + f32::from(ink) * a).round() as u8;
            }
        });
    }
}

/// Makes the embedded font plotters' `sans-serif`, once per process.
pub fn register_for_plots() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // Fails only when the bytes are not a font, and they are this crate's own.
        let _ = plotters::style::register_font(
            "sans-serif",
            plotters::style::FontStyle::Normal,
            DEJAVU_SANS,
        );
    });
}
