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

/// Draws the whole dashboard for `snap` on `frame`.
pub fn draw(frame: &mut Frame, snap: &Snapshot) {
    let node_rows = u16::try_from(snap.nodes.len().max(1)).unwrap_or(u16::MAX);
    let followers = snap.replication.as_ref().map_or(1, Vec::len).max(1);
    let middle = u16::try_from(followers.max(snap.nodes.len() + 1)).unwrap_or(u16::MAX);
    let errors = snap.errors.len().min(MAX_ERROR_LINES);
    let footer = u16::try_from(errors + 1).unwrap_or(1);
    let [header, nodes, mid, databases, keys] = Layout::vertical([
        Constraint::Length(5),
        Constraint::Length(node_rows.saturating_add(3)),
        Constraint::Length(middle.saturating_add(3)),
        Constraint::Min(3),
        Constraint::Length(footer),
    ])
    .areas(frame.area());
    let [replication, load] =
        Layout::horizontal([Constraint::Percentage(42), Constraint::Percentage(58)]).areas(mid);
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
                "   {} nodes, {reachable} reachable",
                snap.nodes.len()
            )),
        ]),
        None => Line::from(vec![
            Span::styled("no leader known", BAD),
            Span::raw(format!(
                "   {} nodes, {reachable} reachable",
                snap.nodes.len()
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
    let header = Row::new([
        "",
        "ID",
        "ADDRESS",
        "ROLE",
        "TERM",
        "REACHABLE",
        "CONTACT",
        "LOG",
        "COMMIT",
        "APPLIED",
    ])
    .style(HEADER);
    let rows = snap.nodes.iter().map(|n| {
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
            (_, Some(ago)) => format!("seen {} ago", duration(ago)),
            (_, None) => "never seen".to_string(),
        };
        let style = if n.is_leader {
            LEADER
        } else if n.reach != Reach::Up {
            DIM
        } else {
            Style::new()
        };
        Row::new([
            Cell::from(if n.is_leader { "*" } else { "" }),
            Cell::from(id_text(n.id)),
            Cell::from(n.api_addr.clone()),
            Cell::from(role),
            Cell::from(opt(n.term)),
            Cell::from(reach).style(reach_style),
            Cell::from(contact),
            Cell::from(opt(n.last_log_index)),
            Cell::from(opt(n.commit_index)),
            Cell::from(opt(n.applied_index)),
        ])
        .style(style)
    });
    let widths = [
        Constraint::Length(1),
        Constraint::Length(4),
        Constraint::Min(16),
        Constraint::Length(9),
        Constraint::Length(5),
        Constraint::Length(11),
        Constraint::Length(14),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(8),
    ];
    let table = Table::new(rows, widths)
        .header(header)
        .block(Block::bordered().title(" Nodes "));
    frame.render_widget(table, area);
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
