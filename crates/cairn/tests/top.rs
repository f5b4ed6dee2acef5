//! `cairn top` against a live 3-node cluster, in a pseudo-terminal: the leader is marked;
//! when the leader (the very node `--addr` names) is killed, the dashboard shows it
//! unreachable within two refreshes and goes on with the nodes it learned, marking the new
//! leader; `q` ends it with status 0 and the terminal restored.
//!
//! The screen is read with a small terminal emulator ([`Screen`]) that understands what
//! ratatui's crossterm backend writes: cursor moves, clears and printable text (colours
//! and modes are skipped).

use std::io::{ErrorKind, Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use cairn_testkit::{Cluster, ProcessCluster, LEADER_TIMEOUT, START_TIMEOUT};
use expectrl::process::unix::WaitStatus;
use expectrl::session::OsSession;

const BIN: &str = env!("CARGO_BIN_EXE_cairn");

/// The dashboard's refresh interval in this test.
const INTERVAL: Duration = Duration::from_millis(300);

/// What a loaded test machine may add to "two refreshes" before a change shows: starting
/// the requests, drawing, the pseudo-terminal.
const SCHEDULING_ALLOWANCE: Duration = Duration::from_millis(1_500);

const COLUMNS: u16 = 120;
const ROWS: u16 = 40;

/// A screen of `COLUMNS` x `ROWS` cells fed with a terminal's output bytes.
struct Screen {
    cells: Vec<Vec<char>>,
    x: usize,
    y: usize,
    state: Parse,
    /// Bytes of a UTF-8 character split across two reads.
    partial: Vec<u8>,
    /// Everything received, to check the terminal was restored at the end.
    raw: Vec<u8>,
}

/// Where the escape-sequence parser is.
enum Parse {
    Text,
    Escape,
    /// `ESC [` and the parameter bytes so far.
    Csi(String),
    /// `ESC ]` ... until BEL or `ESC \`.
    Osc,
    OscEscape,
}

impl Screen {
    fn new() -> Screen {
        Screen {
            cells: vec![vec![' '; usize::from(COLUMNS)]; usize::from(ROWS)],
            x: 0,
            y: 0,
            state: Parse::Text,
            partial: Vec::new(),
            raw: Vec::new(),
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.raw.extend_from_slice(bytes);
        let mut data = std::mem::take(&mut self.partial);
        data.extend_from_slice(bytes);
        let text = match std::str::from_utf8(&data) {
            Ok(text) => text.to_string(),
            Err(e) if e.error_len().is_none() => {
                self.partial = data[e.valid_up_to()..].to_vec();
                String::from_utf8_lossy(&data[..e.valid_up_to()]).into_owned()
            }
            Err(_) => String::from_utf8_lossy(&data).into_owned(),
        };
        for c in text.chars() {
            self.char(c);
        }
    }

    fn char(&mut self, c: char) {
        match std::mem::replace(&mut self.state, Parse::Text) {
            Parse::Text => match c {
                '\x1b' => self.state = Parse::Escape,
                '\r' => self.x = 0,
                '\n' => self.y = (self.y + 1).min(usize::from(ROWS) - 1),
                '\x08' => self.x = self.x.saturating_sub(1),
                c if c.is_control() => {}
                c => {
                    if let Some(cell) = self.cells.get_mut(self.y).and_then(|r| r.get_mut(self.x)) {
                        *cell = c;
                    }
                    self.x += 1;
                }
            },
            Parse::Escape => match c {
                '[' => self.state = Parse::Csi(String::new()),
                ']' => self.state = Parse::Osc,
                _ => {}
            },
            Parse::Csi(mut params) => {
                if ('\x40'..='\x7e').contains(&c) {
                    self.csi(&params, c);
                } else {
                    params.push(c);
                    self.state = Parse::Csi(params);
                }
            }
            Parse::Osc => match c {
                '\x07' => {}
                '\x1b' => self.state = Parse::OscEscape,
                _ => self.state = Parse::Osc,
            },
            Parse::OscEscape => {}
        }
    }

    fn csi(&mut self, params: &str, command: char) {
        if params.starts_with('?') {
            return;
        }
        let numbers: Vec<usize> = params.split(';').map(|p| p.parse().unwrap_or(0)).collect();
        let n = |i: usize| numbers.get(i).copied().filter(|&v| v > 0).unwrap_or(1);
        let (w, h) = (usize::from(COLUMNS), usize::from(ROWS));
        match command {
            'H' | 'f' => {
                self.y = (n(0) - 1).min(h - 1);
                self.x = (n(1) - 1).min(w - 1);
            }
            'A' => self.y = self.y.saturating_sub(n(0)),
            'B' => self.y = (self.y + n(0)).min(h - 1),
            'C' => self.x = (self.x + n(0)).min(w - 1),
            'D' => self.x = self.x.saturating_sub(n(0)),
            'G' => self.x = (n(0) - 1).min(w - 1),
            'J' => {
                for row in &mut self.cells {
                    row.fill(' ');
                }
            }
            'K' => {
                if let Some(row) = self.cells.get_mut(self.y) {
                    for cell in row.iter_mut().skip(self.x) {
                        *cell = ' ';
                    }
                }
            }
            _ => {}
        }
    }

    fn lines(&self) -> Vec<String> {
        self.cells.iter().map(|r| r.iter().collect()).collect()
    }

    fn text(&self) -> String {
        self.lines().join("\n")
    }
}

/// `cairn top` in a pseudo-terminal and what it has drawn so far.
struct Top {
    session: OsSession,
    screen: Screen,
}

impl Top {
    fn start(addr: &str) -> Top {
        let mut command = Command::new(BIN);
        command.args([
            "top",
            "--addr",
            addr,
            "--interval",
            &INTERVAL.as_millis().to_string(),
        ]);
        command.env("TERM", "xterm-256color");
        let mut session = OsSession::spawn(command).expect("cairn top starts in a pseudo-terminal");
        session
            .get_process_mut()
            .set_window_size(COLUMNS, ROWS)
            .expect("setting the terminal size");
        Top {
            session,
            screen: Screen::new(),
        }
    }

    /// Reads whatever the dashboard wrote since the last call.
    fn pump(&mut self) {
        let mut buf = [0u8; 64 * 1024];
        // Bounded: a dashboard drawing nonstop cannot keep this loop going forever.
        for _ in 0..1_000 {
            match self.session.try_read(&mut buf) {
                Ok(0) => return,
                Ok(n) => self.screen.feed(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                // EIO: the process ended and the pty closed.
                Err(_) => return,
            }
        }
    }

    /// Polls the screen until some line satisfies `found`, for at most `timeout`; returns
    /// the line and when it was first seen.
    fn wait_line(
        &mut self,
        timeout: Duration,
        what: &str,
        found: impl Fn(&str) -> bool,
    ) -> (String, Instant) {
        let deadline = Instant::now() + timeout;
        loop {
            self.pump();
            if let Some(line) = self.screen.lines().into_iter().find(|l| found(l)) {
                return (line, Instant::now());
            }
            assert!(
                Instant::now() < deadline,
                "no line shows {what} within {timeout:?}; the screen:\n{}",
                self.screen.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `timeout` for the process to exit and returns its status.
    fn wait_exit(&mut self, timeout: Duration) -> WaitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            self.pump();
            match self.session.get_process().status() {
                Ok(WaitStatus::StillAlive) => {}
                Ok(status) => {
                    self.pump();
                    return status;
                }
                Err(e) => panic!("waiting for cairn top: {e}"),
            }
            assert!(
                Instant::now() < deadline,
                "cairn top still runs {timeout:?} after q; the screen:\n{}",
                self.screen.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn the_dashboard_marks_the_leader_and_shows_it_unreachable_once_killed() {
    let mut c = ProcessCluster::start(BIN, 3).expect("a 3-node cluster starts");
    let leader = c.leader().expect("a leader is elected");
    let leader_addr = c.http_addr(leader).to_string();
    let mut top = Top::start(&leader_addr);

    // Every node is listed (learned from /nodes) and the leader is marked.
    let (row, _) = top.wait_line(START_TIMEOUT, "the leader marked", |l| {
        l.contains(&leader_addr) && l.contains("LEADER")
    });
    let marked = format!("*{}", c.id(leader));
    assert!(row.contains(&marked) && row.contains("yes"), "{row}");
    for i in c.running() {
        let addr = c.http_addr(i).to_string();
        top.wait_line(START_TIMEOUT, &format!("node {addr} listed"), |l| {
            l.contains(&addr) && l.contains(" yes ")
        });
    }

    // Kill the leader, which is also the node --addr names.
    c.kill(leader).expect("SIGKILL the leader");
    let killed = Instant::now();
    let within = 2 * INTERVAL + SCHEDULING_ALLOWANCE;
    let (row, seen) = top.wait_line(within, "the killed leader unreachable", |l| {
        l.contains(&leader_addr) && l.contains("unreachable")
    });
    assert!(!row.contains("LEADER"), "{row}");
    eprintln!(
        "the killed leader showed as unreachable after {:?}",
        seen - killed
    );

    // The dashboard goes on with the nodes it learned: the new leader is marked.
    let survivors: Vec<String> = c
        .running()
        .into_iter()
        .map(|i| c.http_addr(i).to_string())
        .collect();
    let (row, _) = top.wait_line(LEADER_TIMEOUT, "a new leader marked", |l| {
        l.contains("LEADER") && survivors.iter().any(|a| l.contains(a.as_str()))
    });
    assert!(row.contains("yes"), "{row}");

    top.session.write_all(b"q").expect("typing q");
    top.session.flush().expect("flushing the keys");
    let status = top.wait_exit(Duration::from_secs(10));
    assert!(
        matches!(status, WaitStatus::Exited(_, 0)),
        "cairn top ended with {status:?}"
    );
    // Leaving the alternate screen: the terminal is given back as it was.
    let raw = String::from_utf8_lossy(&top.screen.raw);
    assert!(
        raw.contains("\x1b[?1049l"),
        "the alternate screen was not left"
    );
}

#[test]
fn the_dashboard_refuses_to_run_without_a_terminal() {
    let out = Command::new(BIN)
        .args(["top", "--addr", "127.0.0.1:9"])
        .output()
        .expect("cairn top runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("terminal"), "{stderr}");
    // An interval out of bounds is refused by the flags.
    let out = Command::new(BIN)
        .args(["top", "--interval", "50"])
        .output()
        .expect("cairn top runs");
    assert!(!out.status.success());
    let mut stderr = String::new();
    out.stderr
        .as_slice()
        .read_to_string(&mut stderr)
        .expect("utf-8");
    assert!(stderr.contains("--interval"), "{stderr}");
}
