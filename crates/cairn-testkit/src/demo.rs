//! `Demo`: the `cairn demo` command run as a child, as the README's quick start does.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::node::tail;
use crate::ports::free_port_range;
use crate::wait::wait_for;
use crate::{START_TIMEOUT, STOP_TIMEOUT};

/// How deep [`descendants`] follows child processes.
const MAX_DEPTH: usize = 4;

/// A running `cairn demo --nodes N --base-port P --data-dir DIR`.
///
/// Node `k` (1-based) serves HTTP on `P + 2(k-1)` and Raft on `P + 2(k-1) + 1`.
/// Dropping it sends SIGINT, waits up to [`STOP_TIMEOUT`], then SIGKILLs the demo and
/// every process descended from it; when the test is failing it prints the demo's
/// output first.
#[derive(Debug)]
pub struct Demo {
    child: Option<Child>,
    base_port: u16,
    nodes: u16,
    lines: Arc<Mutex<Vec<String>>>,
    /// Descendants seen so far, killed on drop if still alive: a demo that exits without
    /// stopping its nodes must not leave them running after the test.
    seen_descendants: Vec<u32>,
    dir: TempDir,
    _serial: MutexGuard<'static, ()>,
}

impl Demo {
    /// Picks a base port with `2 * nodes` free ports above it, starts the demo with a
    /// fresh data directory, and waits up to [`START_TIMEOUT`] for a stdout line that
    /// contains `cluster ready`. An error (with the demo's output) if it exits first or
    /// the time passes.
    pub fn start(bin: impl AsRef<Path>, nodes: u16) -> Result<Demo> {
        let serial = crate::serial();
        let dir = tempfile::Builder::new()
            .prefix("cairn-demo-")
            .tempdir()
            .context("creating the demo directory")?;
        let base_port = free_port_range(2 * nodes)?;
        let data_dir = dir.path().join("data");
        let stderr = fs::File::create(dir.path().join("stderr.log"))
            .context("creating the demo's stderr file")?;
        let mut child = Command::new(bin.as_ref())
            .args([
                "demo".to_string(),
                "--nodes".to_string(),
                nodes.to_string(),
                "--base-port".to_string(),
                base_port.to_string(),
                "--data-dir".to_string(),
                data_dir.display().to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("spawning {} demo", bin.as_ref().display()))?;
        let stdout = child
            .stdout
            .take()
            .context("the demo's stdout is not piped")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = Arc::clone(&lines);
        // The reader ends at EOF, when the demo and every child holding its stdout exit.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(line.clone());
                let _ = tx.send(line);
            }
        });
        let mut demo = Demo {
            child: Some(child),
            base_port,
            nodes,
            lines,
            seen_descendants: Vec::new(),
            dir,
            _serial: serial,
        };
        let ready = demo.wait_for_line(&rx, "cluster ready", START_TIMEOUT);
        demo.remember_descendants();
        if let Err(e) = ready {
            demo.dump_output();
            return Err(e);
        }
        Ok(demo)
    }

    fn wait_for_line(
        &mut self,
        rx: &Receiver<String>,
        needle: &str,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        // Bounded by the deadline and by a line count far above what the demo prints.
        for _ in 0..10_000 {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Ok(()),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    bail!("no {needle:?} line on the demo's stdout after {timeout:?}")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.as_mut().map(Child::try_wait);
                    bail!(
                        "the demo closed its stdout before printing {needle:?} (exit: {status:?})"
                    )
                }
            }
        }
        bail!("no {needle:?} line among the demo's first 10000 lines")
    }

    /// The base port `P` the demo was started with.
    pub fn base_port(&self) -> u16 {
        self.base_port
    }

    /// The HTTP port of node `k` (1-based): `P + 2(k-1)`.
    pub fn http_port(&self, k: u16) -> u16 {
        self.base_port + 2 * (k.saturating_sub(1))
    }

    /// The Raft port of node `k` (1-based): `P + 2(k-1) + 1`.
    pub fn raft_port(&self, k: u16) -> u16 {
        self.http_port(k) + 1
    }

    /// The HTTP URL of node `k` (1-based), `http://127.0.0.1:PORT`.
    pub fn url(&self, k: u16) -> String {
        format!("http://127.0.0.1:{}", self.http_port(k))
    }

    /// Every HTTP and Raft port of the demo's nodes.
    pub fn ports(&self) -> Vec<u16> {
        (1..=self.nodes)
            .flat_map(|k| [self.http_port(k), self.raft_port(k)])
            .collect()
    }

    /// The lines the demo printed on stdout so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The demo's `--data-dir`.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The demo's process ID, while the harness owns it.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Process IDs of every live process descended from the demo (its nodes, if it runs
    /// them as child processes), read from `/proc`.
    pub fn descendant_pids(&self) -> Vec<u32> {
        self.pid().map(descendants).unwrap_or_default()
    }

    fn remember_descendants(&mut self) {
        for pid in self.descendant_pids() {
            if !self.seen_descendants.contains(&pid) {
                self.seen_descendants.push(pid);
            }
        }
    }

    /// Sends SIGINT to the demo process (not its process group: the demo must stop its
    /// children itself) and waits up to [`STOP_TIMEOUT`] for it to exit. Returns its
    /// exit status; when it does not exit in time it is killed and an error returned.
    pub fn interrupt(&mut self) -> Result<ExitStatus> {
        self.remember_descendants();
        let mut child = self.child.take().context("the demo is not running")?;
        let pid = Pid::from_raw(i32::try_from(child.id()).context("pid out of range")?);
        signal::kill(pid, Signal::SIGINT).context("sending SIGINT to the demo")?;
        let exited = wait_for(
            STOP_TIMEOUT,
            "the demo to exit after SIGINT",
            || match child.try_wait() {
                Ok(Some(status)) => Ok(status),
                Ok(None) => Err("still running".into()),
                Err(e) => Err(format!("try_wait: {e}")),
            },
        );
        match exited {
            Ok(status) => Ok(status),
            Err(e) => {
                kill_tree(&mut child);
                Err(e)
            }
        }
    }

    /// The last `lines` lines of the demo's stderr.
    pub fn stderr_tail(&self, lines: usize) -> String {
        tail(&self.dir.path().join("stderr.log"), lines)
    }

    /// Prints the demo's stdout and the tail of its stderr to stderr.
    pub fn dump_output(&self) {
        eprintln!(
            "==== demo stdout:\n{}\n==== demo stderr (last 60 lines):\n{}",
            self.stdout_lines().join("\n"),
            self.stderr_tail(60)
        );
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_output();
        }
        if self.child.is_some() {
            if let Err(e) = self.interrupt() {
                eprintln!("stopping the demo: {e:#}");
            }
        }
        for &pid in &self.seen_descendants {
            if process_alive(pid) {
                eprintln!("killing process {pid}, left running by the demo");
                if let Ok(raw) = i32::try_from(pid) {
                    let _ = signal::kill(Pid::from_raw(raw), Signal::SIGKILL);
                }
            }
        }
    }
}

/// SIGKILLs every descendant of `child`, then `child`, and reaps it.
fn kill_tree(child: &mut Child) {
    for pid in descendants(child.id()) {
        if let Ok(raw) = i32::try_from(pid) {
            let _ = signal::kill(Pid::from_raw(raw), Signal::SIGKILL);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Live (not zombie) processes descended from `pid`, up to [`MAX_DEPTH`] generations,
/// found by reading the parent of every process in `/proc`.
pub fn descendants(pid: u32) -> Vec<u32> {
    let table: Vec<(u32, u32, char)> = match fs::read_dir("/proc") {
        Ok(entries) => entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|p| {
                let (ppid, state) = parent_and_state(p)?;
                Some((p, ppid, state))
            })
            .collect(),
        Err(_) => return Vec::new(),
    };
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    for _ in 0..MAX_DEPTH {
        let next: Vec<u32> = table
            .iter()
            .filter(|(_, ppid, _)| frontier.contains(ppid))
            .map(|(p, _, _)| *p)
            .collect();
        if next.is_empty() {
            break;
        }
        found.extend(
            table
                .iter()
                .filter(|(p, _, state)| next.contains(p) && *state != 'Z')
                .map(|(p, _, _)| *p),
        );
        frontier = next;
    }
    found
}

/// Whether process `pid` exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    matches!(parent_and_state(pid), Some((_, state)) if state != 'Z')
}

/// `(ppid, state)` from `/proc/PID/stat`: "PID (COMM) STATE PPID ...", where COMM may
/// contain spaces and parentheses, so fields are counted after the last `)`.
fn parent_and_state(pid: u32) -> Option<(u32, char)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state))
}
