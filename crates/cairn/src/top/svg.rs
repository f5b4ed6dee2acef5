//! A rendered buffer as an SVG image (monospace text in the cells' colours, on a dark
//! terminal background), for the README's picture of `cairn top`.

use std::fmt::Write;

use ratatui::buffer::{Buffer, Cell};
use ratatui::style::{Color, Modifier};

const CELL_WIDTH: f64 = 8.4;
const CELL_HEIGHT: f64 = 18.0;
const BASELINE: f64 = 13.5;
const FOREGROUND: &str = "#d4d4d4";
const BACKGROUND: &str = "#1e1e1e";

/// `buffer` as a standalone SVG document.
pub fn to_svg(buffer: &Buffer) -> String {
    let (width, height) = (buffer.area.width, buffer.area.height);
    let mut out = String::new();
    let (w, h) = (
        f64::from(width) * CELL_WIDTH,
        f64::from(height) * CELL_HEIGHT,
    );
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{h:.0}" viewBox="0 0 {w:.1} {h:.1}">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="100%" height="100%" fill="{BACKGROUND}"/>"#
    );
    let _ = writeln!(
        out,
        r#"<g font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="14px">"#
    );
    for (y, row) in buffer
        .content()
        .chunks(usize::from(width.max(1)))
        .enumerate()
    {
        // Runs of cells that look alike and are not blank, each placed at its own column,
        // so that the picture does not depend on how a viewer treats spaces.
        let mut x = 0;
        while x < row.len() {
            let style = key(&row[x]);
            let blank = row[x].symbol() == " ";
            let mut end = x;
            let mut text = String::new();
            while end < row.len() && key(&row[end]) == style && (row[end].symbol() == " ") == blank
            {
                text.push_str(row[end].symbol());
                end += 1;
            }
            run(&mut out, x, y, end - x, &text, &row[x]);
            x = end;
        }
    }
    out.push_str("</g>\n</svg>\n");
    out
}

/// What makes two cells look alike.
fn key(cell: &Cell) -> (Color, Color, Modifier) {
    (cell.fg, cell.bg, cell.modifier)
}

/// One run of `len` cells alike, starting at column `x` of row `y`.
fn run(out: &mut String, x: usize, y: usize, len: usize, text: &str, cell: &Cell) {
    let (px, py) = (x as f64 * CELL_WIDTH, y as f64 * CELL_HEIGHT);
    let width = len as f64 * CELL_WIDTH;
    if let Some(bg) = colour(cell.bg) {
        let _ = writeln!(
            out,
            r#"<rect x="{px:.1}" y="{py:.1}" width="{width:.1}" height="{CELL_HEIGHT:.1}" fill="{bg}"/>"#
        );
    }
    if text.trim().is_empty() {
        return;
    }
    let fill = colour(cell.fg).unwrap_or_else(|| FOREGROUND.to_string());
    let weight = if cell.modifier.contains(Modifier::BOLD) {
        r#" font-weight="bold""#
    } else {
        ""
    };
    let _ = writeln!(
        out,
        r#"<text x="{px:.1}" y="{:.1}" textLength="{width:.1}" lengthAdjust="spacingAndGlyphs" fill="{fill}"{weight}>{}</text>"#,
        py + BASELINE,
        escape(text)
    );
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A terminal colour as `#rrggbb` (VS Code's dark palette for the named ones); `None` for
/// the terminal's default.
fn colour(c: Color) -> Option<String> {
    let named = match c {
        Color::Reset => return None,
        Color::Black => "#000000",
        Color::Red => "#cd3131",
        Color::Green => "#0dbc79",
        Color::Yellow => "#e5e510",
        Color::Blue => "#2472c8",
        Color::Magenta => "#bc3fbc",
        Color::Cyan => "#11a8cd",
        Color::Gray => "#e5e5e5",
        Color::DarkGray => "#767676",
        Color::LightRed => "#f14c4c",
        Color::LightGreen => "#23d18b",
        Color::LightYellow => "#f5f543",
        Color::LightBlue => "#3b8eea",
        Color::LightMagenta => "#d670d6",
        Color::LightCyan => "#29b8db",
        Color::White => "#ffffff",
        Color::Rgb(r, g, b) => return Some(format!("#{r:02x}{g:02x}{b:02x}")),
        Color::Indexed(i) => return Some(indexed(i)),
    };
    Some(named.to_string())
}

/// xterm's 256-colour palette above the 16 named colours.
fn indexed(i: u8) -> String {
    match i {
        16..=231 => {
            let i = i - 16;
            let level = |v: u8| if v == 0 { 0 } else { 55 + v * 40 };
            format!(
                "#{:02x}{:02x}{:02x}",
                level(i / 36),
                level((i / 6) % 6),
                level(i % 6)
            )
        }
        232..=255 => {
            let v = 8 + (i - 232) * 10;
            format!("#{v:02x}{v:02x}{v:02x}")
        }
        _ => FOREGROUND.to_string(),
    }
}
