//! Line charts drawn with plotters (axes, ticks, labels, legend) in the embedded font, into an
//! RGB buffer that [`crate::output::write_png`] encodes.

use image::RgbImage;
use plotters::element::DashedPathElement;
use plotters::prelude::*;

use crate::font;

/// Pixel size of a chart.
pub const SIZE: (u32, u32) = (960, 600);

/// One line of a chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Curve {
    /// Its legend entry.
    pub label: String,
    /// Its points `(x, y)`, in order of `x`.
    pub points: Vec<(f64, f64)>,
    /// Its colour, an index into the palette.
    pub colour: usize,
    /// Dashed rather than solid (another model, say).
    pub dashed: bool,
}

/// A chart of `curves` with the title and the axes' labels, `y` from `y_range`; what plotters
/// said when it cannot be drawn.
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    y_range: (f64, f64),
    curves: &[Curve],
) -> Result<RgbImage, String> {
    font::register_for_plots();
    let (width, height) = SIZE;
    let mut buffer = vec![255u8; (width * height * 3) as usize];
    draw(&mut buffer, title, x_label, y_label, y_range, curves).map_err(|e| e.to_string())?;
    Ok(RgbImage::from_raw(width, height, buffer).expect("a buffer of the chart's size"))
}

/// Height of each legend row, in pixels.
const LEGEND_ROW: u32 = 24;

fn draw(
    buffer: &mut [u8],
    title: &str,
    x_label: &str,
    y_label: &str,
    (y_low, y_high): (f64, f64),
    curves: &[Curve],
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::with_buffer(buffer, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    // The legend below the plot, in two columns, so that it hides no curve.
    let legend_rows = curves.len().div_ceil(2) as u32;
    let (plot_area, legend_area) = root.split_vertically(SIZE.1 - legend_rows * LEGEND_ROW - 16);
    let x_high = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.0))
        .fold(0.0f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let mut chart = ChartBuilder::on(&plot_area)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_high * 1.02, y_low..y_high)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .axis_desc_style(("sans-serif", 18))
        .label_style(("sans-serif", 15))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .light_line_style(RGBColor(245, 245, 245))
        .bold_line_style(RGBColor(220, 220, 220))
        .draw()?;
    let style_of =
        |curve: &Curve| ShapeStyle::from(&Palette99::pick(curve.colour).to_rgba()).stroke_width(3);
    for curve in curves {
        let style = style_of(curve);
        let points = curve.points.clone();
        if curve.dashed {
            chart.draw_series(DashedLineSeries::new(points.clone(), 10, 6, style))?;
        } else {
            chart.draw_series(LineSeries::new(points.clone(), style))?;
        }
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, style.filled())))?;
    }
    // Column by column: with one model per column when there are two.
    let column_width = SIZE.0 as i32 / 2;
    for (i, curve) in curves.iter().enumerate() {
        let (column, row) = (i as u32 / legend_rows, i as u32 % legend_rows);
        let (x, y) = (
            90 + column as i32 * (column_width - 40),
            8 + (row * LEGEND_ROW + LEGEND_ROW / 2) as i32,
        );
        let style = style_of(curve);
        let line = [(x, y), (x + 40, y)];
        if curve.dashed {
            legend_area.draw(&DashedPathElement::new(line, 10, 6, style))?;
        } else {
            legend_area.draw(&PathElement::new(line, style))?;
        }
        legend_area.draw(&Text::new(
            curve.label.clone(),
            (x + 50, y - 8),
            ("sans-serif", 15).into_font().color(&BLACK),
        ))?;
    }
    root.present()?;
    Ok(())
}
