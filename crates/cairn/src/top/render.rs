//! Drawing a [`Snapshot`]: a pure function of it, so that tests render into ratatui's
//! `TestBackend` without a terminal.

use std::time::Duration;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table};
use ratatui::Frame;

use super::load::Load;
use super::model::{NodeRow, Reach, Snapshot};

/// At most this many error lines are shown above the key line.
const MAX_ERROR_LINES: usize = 3;

const HEADER: Style = Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD);
const LEADER: Style = Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD);
const BAD: Style = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
const WARN: Style = Style::new().fg(Color::Yellow);
const GOOD: Style = Style::new().fg(Color::Green);
const DIM: Style = Style::new().fg(Color::DarkGray);

/// Below this width the replication and load panels are stacked instead of side by side.
const SIDE_BY_SIDE_WIDTH: u16 = 112;

/// Draws the whole dashboard for `snap` on `frame`.
pub fn draw(frame: &mut Frame, snap: &Snapshot) {
    let rows = |n: usize| u16::try_from(n).unwrap_or(u16::MAX);
    let node_rows = rows(snap.nodes.len().max(1));
    let followers = rows(snap.replication.as_ref().map_or(1, Vec::len).max(1));
    // The load table has a row per node and one for all of them.
    let load_rows = node_rows.saturating_add(1);
    let errors = snap.errors.len().min(MAX_ERROR_LINES);
    let footer = rows(errors + 1);
    let side_by_side = frame.area().width >= SIDE_BY_SIDE_WIDTH;
    let (replication_height, load_height) = if side_by_side {
        let both = followers.max(load_rows).saturating_add(3);
        (both, 0)
    } else {
        (followers.saturating_add(3), load_rows.saturating_add(3))
    };
    // Heights by priority when the terminal is short: the header, the nodes, the footer,
    // then replication and load; databases get what is left.
    let mut left = frame.area().height;
    let mut take = |want: u16| {
        let h = want.min(left);
        left -= h;
        h
    };
    let header_height = take(5);
    let nodes_height = take(node_rows.saturating_add(3));
    let footer_height = take(footer);
    let replication_height = take(replication_height);
    let load_height = take(load_height);
    let [header, nodes, mid, below, databases, keys] = Layout::vertical([
        Constraint::Length(header_height),
        Constraint::Length(nodes_height),
        Constraint::Length(replication_height),
        Constraint::Length(load_height),
        Constraint::Length(left),
        Constraint::Length(footer_height),
    ])
    .areas(frame.area());
    let (replication, load) = if side_by_side {
        let [r, l] =
            Layout::horizontal([Constraint::Percentage(42), Constraint::Percentage(58)]).areas(mid);
        (r, l)
    } else {
        (mid, below)
    };
    draw_header(frame, header, snap);
    draw_nodes(frame, nodes, snap);
    draw_replication(frame, replication, snap);
    draw_load(frame, load, snap);
    draw_databases(frame, databases, snap);
    draw_footer(frame, keys, snap);
}

fn draw_header(frame: &mut Frame, area: Rect, snap: &Snapshot) {
    let taken = if snap.taken_at.is_empty() {
        "connecting...".to_string()
    } else {
        snap.taken_at.clone()
    };
    let reachable = snap.nodes.iter().filter(|n| n.reach == Reach::Up).count();
    let leader = match snap.nodes.iter().find(|n| n.is_leader) {
        Some(n) => Line::from(vec![
            Span::raw("leader "),
            Span::styled(format!("node {}", id_text(n.id)), LEADER),
            Span::raw(format!(" ({}), term {}", n.api_addr, opt(n.term))),
            Span::raw(format!(
                "   {}, {reachable} reachable",
                count(snap.nodes.len(), "node")
            )),
        ]),
        None => Line::from(vec![
            Span::styled("no leader known", BAD),
            Span::raw(format!(
                "   {}, {reachable} reachable",
                count(snap.nodes.len(), "node")
            )),
        ]),
    };
    let l = &snap.cluster_load;
    let lines = vec![
        Line::from(vec![
            Span::raw(format!("{}   ", snap.source)),
            Span::raw(format!("refresh {} ms   ", snap.interval.as_millis())),
            Span::styled(taken, DIM),
        ]),
        leader,
        Line::from(vec![
            Span::styled("all nodes ", HEADER),
            Span::raw(format!(
                "writes {}/s  reads {}/s   write p50 {} p99 {}   read p50 {} p99 {}",
                rate(l.writes_per_s),
                rate(l.reads_per_s),
                latency(l.write_p50),
                latency(l.write_p99),
                latency(l.read_p50),
                latency(l.read_p99),
            )),
        ]),
    ];
    let block = Block::bordered().title(Span::styled(" cairn top ", HEADER));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn draw_nodes(frame: &mut Frame, area: Rect, snap: &Snapshot) {
    let address_width = snap
        .nodes
        .iter()
        .map(|n| short_addr(&n.api_addr).chars().count())
        .max()
        .unwrap_or(0)
        .clamp(8, 40);
    let mut header = vec![
        " ID",
        "ADDRESS",
        "ROLE",
        "TERM",
        "REACHABLE",
        "CONTACT",
        "LOG",
        "COMMIT",
        "APPLIED",
    ];
    let mut widths: Vec<u16> = vec![
        4,
        u16::try_from(address_width).unwrap_or(40),
        9,
        5,
        11,
        10,
        8,
        8,
        8,
    ];
    let mut rows: Vec<(Vec<Cell>, Style)> = snap.nodes.iter().map(node_cells).collect();
    // On a narrow terminal the log index goes first (commit and applied say more).
    let needed: u16 = widths.iter().sum::<u16>() + 2 + 8;
    if area.width < needed {
        header.remove(LOG_COLUMN);
        widths.remove(LOG_COLUMN);
        for (cells, _) in &mut rows {
            cells.remove(LOG_COLUMN);
        }
    }
    let rows = rows
        .into_iter()
        .map(|(cells, style)| Row::new(cells).style(style));
    let table = Table::new(rows, widths.into_iter().map(Constraint::Length))
        .header(Row::new(header).style(HEADER))
        .block(Block::bordered().title(" Nodes "));
    frame.render_widget(table, area);
}

/// The position of the LOG column in the nodes table.
const LOG_COLUMN: usize = 6;

/// One node's cells in the nodes table, and the row's style.
fn node_cells(n: &NodeRow) -> (Vec<Cell<'static>>, Style) {
    let (reach, reach_style) = match n.reach {
        Reach::Up => ("yes".to_string(), GOOD),
        Reach::Unreachable => ("unreachable".to_string(), BAD),
        Reach::Error => ("error".to_string(), BAD),
    };
    let role = match (&n.role, n.is_leader) {
        (Some(_), true) => "LEADER".to_string(),
        (Some(r), false) => r.clone(),
        (None, _) => "-".to_string(),
    };
    let contact = match (n.reach, n.last_seen) {
        (Reach::Up, _) => n.last_contact_ms.map_or_else(|| "-".into(), millis),
        (_, Some(ago)) => format!("{} ago", duration(ago)),
        (_, None) => "never".to_string(),
    };
    let style = if n.is_leader {
        LEADER
    } else if n.reach != Reach::Up {
        DIM
    } else {
        Style::new()
    };
    let marker = if n.is_leader { "*" } else { " " };
    let cells = vec![
        Cell::from(format!("{marker}{}", id_text(n.id))),
        Cell::from(short_addr(&n.api_addr).to_string()),
        Cell::from(role),
        Cell::from(opt(n.term)),
        Cell::from(reach).style(reach_style),
        Cell::from(contact),
        Cell::from(opt(n.last_log_index)),
        Cell::from(opt(n.commit_index)),
        Cell::from(opt(n.applied_index)),
    ];
    (cells, style)
}

fn draw_replication(frame: &mut Frame, area: Rect, snap: &Snapshot) {
    let title = match snap.leader {
        Some(id) => format!(" Replication (as leader {id} sees it) "),
        None => " Replication ".to_string(),
    };
    let block = Block::bordered().title(title);
    let Some(followers) = &snap.replication else {
        let why = if snap.leader.is_some() {
            "- (not reported by the leader)"
        } else {
            "- (no reachable leader)"
        };
        frame.render_widget(Paragraph::new(Span::styled(why, DIM)).block(block), area);
        return;
    };
    let header = Row::new(["FOLLOWER", "MATCHED", "LAG", "LAST ACK"]).style(HEADER);
    let rows = followers.iter().map(|f| {
        let lag_style = match f.lag_entries {
            Some(0) => GOOD,
            Some(_) => WARN,
            None => BAD,
        };
        let ack_style = match f.last_ack_ms {
            Some(ms) if ms < 1_000 => Style::new(),
            _ => BAD,
        };
        Row::new([
            Cell::from(format!("node {}", f.node_id)),
            Cell::from(opt(f.matched_index)),
            Cell::from(
                f.lag_entries
                    .map_or_else(|| "-".into(), |n| format!("{n} entries")),
            )
            .style(lag_style),
            Cell::from(f.last_ack_ms.map_or_else(|| "-".into(), millis)).style(ack_style),
        ])
    });
    let widths = [
        Constraint::Length(9),
        Constraint::Length(8),
        Constraint::Length(12),
        Constraint::Length(9),
    ];
    frame.render_widget(Table::new(rows, widths).header(header).block(block), area);
}

fn draw_load(frame: &mut Frame, area: Rect, snap: &Snapshot) {
    let header = Row::new([
        "NODE", "WRITES/S", "READS/S", "W P50", "W P99", "R P50", "R P99",
    ])
    .style(HEADER);
    let row = |name: String, l: &Load, style: Style| {
        Row::new([
            name,
            rate(l.writes_per_s),
            rate(l.reads_per_s),
            latency(l.write_p50),
            latency(l.write_p99),
            latency(l.read_p50),
            latency(l.read_p99),
        ])
        .style(style)
    };
    let mut rows: Vec<Row> = snap
        .nodes
        .iter()
        .map(|n: &NodeRow| row(format!("node {}", id_text(n.id)), &n.load, Style::new()))
        .collect();
    rows.push(row("all".to_string(), &snap.cluster_load, HEADER));
    let widths = [
        Constraint::Length(7),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(8),
    ];
    let block = Block::bordered().title(" Load since the last refresh ");
    frame.render_widget(Table::new(rows, widths).header(header).block(block), area);
}

fn draw_databases(frame: &mut Frame, area: Rect, snap: &Snapshot) {
    let header = Row::new(["DATABASE", "SIZE", "TABLES"]).style(HEADER);
    let rows = snap.databases.iter().map(|d| {
        let tables = match &d.tables {
            None => "-".to_string(),
            Some(t) if t.is_empty() => "(none)".to_string(),
            Some(t) => t.join(", "),
        };
        Row::new([d.name.clone(), bytes(d.size_bytes), tables])
    });
    let widths = [
        Constraint::Length(16),
        Constraint::Length(9),
        Constraint::Fill(1),
    ];
    let table = Table::new(rows, widths)
        .header(header)
        .block(Block::bordered().title(" Databases "));
    frame.render_widget(table, area);
}

fn draw_footer(frame: &mut Frame, area: Rect, snap: &Snapshot) {
    let mut lines: Vec<Line> = snap
        .errors
        .iter()
        .take(MAX_ERROR_LINES)
        .map(|e| Line::from(Span::styled(e.clone(), BAD)))
        .collect();
    let mut keys = vec![
        Span::styled(" q", HEADER),
        Span::raw(" quit  "),
        Span::styled("s", HEADER),
        Span::raw(" step the leader down  "),
        Span::styled("+/-", HEADER),
        Span::raw(format!(" refresh ({} ms)", snap.interval.as_millis())),
    ];
    if let Some(notice) = &snap.notice {
        keys.push(Span::raw("   "));
        keys.push(Span::styled(notice.clone(), WARN));
    }
    lines.push(Line::from(keys));
    frame.render_widget(Paragraph::new(lines), area);
}

/// An API URL without `http://` (an `https://` one keeps its scheme: it matters).
fn short_addr(url: &str) -> &str {
    url.strip_prefix("http://").unwrap_or(url)
}

/// `1 node`, `3 nodes`.
fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn id_text(id: Option<u64>) -> String {
    id.map_or_else(|| "?".to_string(), |id| id.to_string())
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// Requests per second: `12.5`, `-` when unknown.
fn rate(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.1}"),
        _ => "-".to_string(),
    }
}

/// A latency in seconds as `850 µs`, `1.25 ms`, `12.5 ms`, `1.20 s`; `-` when unknown.
fn latency(v: Option<f64>) -> String {
    match v {
        Some(s) if s.is_finite() && s < 0.001 => format!("{:.0} µs", s * 1e6),
        Some(s) if s.is_finite() && s < 0.01 => format!("{:.2} ms", s * 1e3),
        Some(s) if s.is_finite() && s < 1.0 => format!("{:.1} ms", s * 1e3),
        Some(s) if s.is_finite() => format!("{s:.2} s"),
        _ => "-".to_string(),
    }
}

/// Milliseconds as `12 ms` or `3.4 s`.
fn millis(ms: u64) -> String {
    duration(Duration::from_millis(ms))
}

fn duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d < Duration::from_secs(100) {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{} s", d.as_secs())
    }
}

/// Bytes in SI units as rqlite writes them: `4.1 kB`, `83 MB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} B"),
        _ if v < 10.0 => format!("{v:.1} {}", UNITS[unit]),
        _ => format!("{v:.0} {}", UNITS[unit]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(latency(Some(0.000_85)), "850 µs");
        assert_eq!(latency(Some(0.001_25)), "1.25 ms");
        assert_eq!(latency(Some(0.0125)), "12.5 ms");
        assert_eq!(latency(Some(1.2)), "1.20 s");
        assert_eq!(latency(None), "-");
        assert_eq!(bytes(4096), "4.1 kB");
        assert_eq!(bytes(83_000_000), "83 MB");
        assert_eq!(bytes(12), "12 B");
        assert_eq!(millis(12), "12 ms");
        assert_eq!(millis(3_400), "3.4 s");
        assert_eq!(rate(Some(f64::NAN)), "-");
    }
}
