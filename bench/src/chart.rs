//! PNG charts: ops/s per peer per concurrency, one chart per mix.
//!
//! Plotters draws the shapes and encodes the PNG. Its text rendering needs a system font
//! library, so the labels are drawn by a small built-in 5×7 pixel font instead, and the charts
//! build and render on a machine with no fonts at all.

use plotters::prelude::*;

use crate::load::Mix;
use crate::report::{is_ours, si, Summary};
use crate::Options;

const WIDTH: u32 = 980;
const HEIGHT: u32 = 560;
const LEFT: i32 = 90;
const RIGHT: i32 = 250;
const TOP: i32 = 56;
const BOTTOM: i32 = 70;

/// Writes `ops-<mix>.png` for every mix in the summary.
pub fn write_all(options: &Options, summary: &[Summary]) -> Result<(), String> {
    std::fs::create_dir_all(&options.out).map_err(|e| e.to_string())?;
    for mix in Mix::ALL {
        let rows: Vec<&Summary> = summary.iter().filter(|s| s.mix == mix).collect();
        if rows.is_empty() {
            continue;
        }
        let path = options.out.join(format!("ops-{}.png", mix.name()));
        draw(&path, mix, &rows).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;
type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn palette(index: usize, peer: &str) -> RGBColor {
    if peer == "raw" {
        return RGBColor(120, 120, 120);
    }
    if peer == "raw-routed" {
        return RGBColor(190, 190, 190);
    }
    const COLORS: [RGBColor; 8] = [
        RGBColor(214, 39, 40),
        RGBColor(255, 127, 14),
        RGBColor(31, 119, 180),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(23, 190, 207),
        RGBColor(188, 189, 34),
    ];
    COLORS[index % COLORS.len()]
}

/// A round step for about five gridlines up to `max`.
fn nice_step(max: f64) -> f64 {
    let raw = (max / 5.0).max(1.0);
    let magnitude = 10f64.powf(raw.log10().floor());
    let fraction = raw / magnitude;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 2.5 {
        2.5
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

fn draw(path: &std::path::Path, mix: Mix, rows: &[&Summary]) -> DrawResult {
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut cs: Vec<usize> = rows.iter().map(|s| s.concurrency).collect();
    cs.sort_unstable();
    cs.dedup();
    let mut peers: Vec<&str> = Vec::new();
    for s in rows {
        if !peers.contains(&s.peer.as_str()) {
            peers.push(&s.peer);
        }
    }
    let max = rows
        .iter()
        .map(|s| s.ops_per_s.max)
        .fold(0.0f64, f64::max)
        .max(1.0);
    let step = nice_step(max * 1.05);
    let top_value = (max * 1.05 / step).ceil() * step;

    let (x0, x1) = (LEFT, WIDTH as i32 - RIGHT);
    let (y0, y1) = (HEIGHT as i32 - BOTTOM, TOP);
    let x_of = |i: usize| -> i32 {
        if cs.len() <= 1 {
            (x0 + x1) / 2
        } else {
            x0 + 40 + (i as i32) * (x1 - x0 - 80) / (cs.len() as i32 - 1)
        }
    };
    let y_of = |v: f64| -> i32 { y0 - ((v / top_value) * f64::from(y0 - y1)).round() as i32 };

    let title = format!(
        "{} - OPS/S BY CONCURRENT CALLERS (MEDIAN, BARS = MIN-MAX)",
        mix.name()
    );
    text(&root, LEFT, 18, &title, 2, &BLACK)?;

    // Grid and y labels.
    let grid = RGBColor(225, 225, 225);
    let mut v = 0.0;
    while v <= top_value + step / 2.0 {
        let y = y_of(v);
        root.draw(&PathElement::new(vec![(x0, y), (x1, y)], grid))?;
        let label = si(v);
        text(
            &root,
            x0 - 8 - label.len() as i32 * 12,
            y - 7,
            &label,
            2,
            &BLACK,
        )?;
        v += step;
    }
    root.draw(&PathElement::new(vec![(x0, y1), (x0, y0), (x1, y0)], BLACK))?;
    for (i, c) in cs.iter().enumerate() {
        let x = x_of(i);
        root.draw(&PathElement::new(vec![(x, y0), (x, y0 + 6)], BLACK))?;
        let label = format!("C={c}");
        text(
            &root,
            x - label.len() as i32 * 6,
            y0 + 14,
            &label,
            2,
            &BLACK,
        )?;
    }
    text(
        &root,
        (x0 + x1) / 2 - 102,
        y0 + 44,
        "CONCURRENT CALLERS",
        2,
        &BLACK,
    )?;

    // One line per peer, with min-max bars.
    for (p, peer) in peers.iter().enumerate() {
        let color = palette(p, peer);
        let width = if is_ours(peer) { 3 } else { 2 };
        let points: Vec<(i32, i32, &Summary)> = cs
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                rows.iter()
                    .find(|s| s.peer == *peer && s.concurrency == *c)
                    .map(|s| (x_of(i), y_of(s.ops_per_s.median), *s))
            })
            .collect();
        let line: Vec<(i32, i32)> = points.iter().map(|(x, y, _)| (*x, *y)).collect();
        root.draw(&PathElement::new(line, color.stroke_width(width)))?;
        for (x, y, s) in &points {
            let (lo, hi) = (y_of(s.ops_per_s.min), y_of(s.ops_per_s.max));
            root.draw(&PathElement::new(
                vec![(*x, lo), (*x, hi)],
                color.stroke_width(1),
            ))?;
            root.draw(&PathElement::new(vec![(*x - 4, lo), (*x + 4, lo)], color))?;
            root.draw(&PathElement::new(vec![(*x - 4, hi), (*x + 4, hi)], color))?;
            root.draw(&Circle::new((*x, *y), 4, color.filled()))?;
        }
        // Legend.
        let ly = TOP + 10 + p as i32 * 26;
        let lx = x1 + 24;
        root.draw(&Rectangle::new(
            [(lx, ly), (lx + 22, ly + 12)],
            color.filled(),
        ))?;
        let label = if *peer == "raw" {
            "raw (ceiling)"
        } else {
            peer
        };
        text(&root, lx + 32, ly, label, 2, &BLACK)?;
    }
    root.present()?;
    Ok(())
}

/// Draws `s` (upper-cased) with the pixel font, `scale` pixels per font pixel.
fn text(area: &Area<'_>, x: i32, y: i32, s: &str, scale: i32, color: &RGBColor) -> DrawResult {
    let mut cx = x;
    for ch in s.chars() {
        let rows = glyph(ch.to_ascii_uppercase());
        for (r, bits) in rows.iter().enumerate() {
            for col in 0..5 {
                if bits & (0x10 >> col) != 0 {
                    let px = cx + col * scale;
                    let py = y + r as i32 * scale;
                    area.draw(&Rectangle::new(
                        [(px, py), (px + scale - 1, py + scale - 1)],
                        color.filled(),
                    ))?;
                }
            }
        }
        cx += 6 * scale;
    }
    Ok(())
}

/// Rows of a 5×7 glyph, top to bottom; bit 4 is the leftmost pixel. Unknown characters are
/// drawn as a small box.
fn glyph(c: char) -> [u8; 7] {
    match c {
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1E],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x0A, 0x04, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        '-' => [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        '/' => [0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00],
        '=' => [0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        ':' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00],
        ',' => [0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        '+' => [0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00],
        '_' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F],
        ' ' => [0x00; 7],
        _ => [0x00, 0x1F, 0x11, 0x11, 0x11, 0x1F, 0x00],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_round() {
        assert_eq!(nice_step(100_000.0), 20_000.0);
        assert_eq!(nice_step(240_000.0), 50_000.0);
        assert_eq!(nice_step(12_000.0), 2_500.0);
    }

    #[test]
    fn every_label_character_has_a_glyph() {
        let unknown = glyph('\u{1}');
        for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-./=():,%+_".chars() {
            assert_ne!(glyph(c), unknown, "{c}");
        }
    }
}
