//! `Demo`: the `cairn demo` command run as a child, as the README's quick start does.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::MutexGuard;
use std::time::Duration;

use anyhow::{Context, Result};
use cairn_launch::{LogFiles, NodeProcess};
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::ports::free_port_range;
use crate::wait::try_wait_for;
use crate::{START_TIMEOUT, STOP_TIMEOUT};

pub use cairn_launch::{descendants, process_alive};

/// A running `cairn demo --nodes N --base-port P --data-dir DIR`.
///
/// Node `k` (1-based) serves HTTP on `P + 2(k-1)` and Raft on `P + 2(k-1) + 1`.
/// Dropping it sends SIGINT, waits up to [`STOP_TIMEOUT`], then SIGKILLs the demo and
/// every process descended from it; when the test is failing it prints the demo's
/// output first.
#[derive(Debug)]
pub struct Demo {
    /// The `cairn demo` process; stdout to `<dir>/stdout.log`, stderr to
    /// `<dir>/stderr.log`.
    process: NodeProcess,
    base_port: u16,
    nodes: u16,
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
        Self::start_with_args(bin, nodes, &[])
    }

    /// [`Demo::start`] with more `cairn demo` flags (e.g. `--tls`).
    pub fn start_with_args(bin: impl AsRef<Path>, nodes: u16, extra: &[&str]) -> Result<Demo> {
        let serial = crate::serial();
        let dir = tempfile::Builder::new()
            .prefix("cairn-demo-")
            .tempdir()
            .context("creating the demo directory")?;
        let base_port = free_port_range(2 * nodes)?;
        let data_dir = dir.path().join("data");
        let logs = LogFiles {
            stdout: dir.path().join("stdout.log"),
            stderr: dir.path().join("stderr.log"),
            mark_starts: false,
        };
        let mut process = NodeProcess::new("the demo", data_dir.clone(), logs)?;
        process
            .spawn(
                bin.as_ref(),
                &[
                    "demo".to_string(),
                    "--nodes".to_string(),
                    nodes.to_string(),
                    "--base-port".to_string(),
                    base_port.to_string(),
                    "--data-dir".to_string(),
                    data_dir.display().to_string(),
                ]
                .into_iter()
                .chain(extra.iter().map(|a| a.to_string()))
                .collect::<Vec<_>>(),
                &[],
            )
            .with_context(|| format!("spawning {} demo", bin.as_ref().display()))?;
        let mut demo = Demo {
            process,
            base_port,
            nodes,
            seen_descendants: Vec::new(),
            dir,
            _serial: serial,
        };
        let ready = demo.wait_for_line("cluster ready", START_TIMEOUT);
        demo.remember_descendants();
        if let Err(e) = ready {
            demo.dump_output();
            return Err(e);
        }
        Ok(demo)
    }

    /// Waits up to `timeout` for a stdout line containing `needle`; an error at once when
    /// the demo exits first.
    fn wait_for_line(&self, needle: &str, timeout: Duration) -> Result<()> {
        try_wait_for(timeout, &format!("{needle:?} on the demo's stdout"), || {
            if self.stdout_lines().iter().any(|l| l.contains(needle)) {
                return Ok(Ok(()));
            }
            if let Some(status) = self.process.exit_status()? {
                anyhow::bail!("the demo exited ({status}) before printing {needle:?}");
            }
            Ok(Err("not printed yet".to_string()))
        })
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
        std::fs::read_to_string(&self.process.logs().stdout)
            .map(|text| text.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// The demo's `--data-dir`.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The demo's process ID, while the harness owns it.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
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
        self.process
            .signal(Signal::SIGINT)
            .context("sending SIGINT to the demo")?;
        match self.process.wait_exit(STOP_TIMEOUT) {
            Ok(status) => Ok(status),
            Err(e) => {
                self.process.kill_tree();
                Err(anyhow::Error::new(e).context("the demo did not exit after SIGINT"))
            }
        }
    }

    /// The last `lines` lines of the demo's stderr.
    pub fn stderr_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
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
        if self.process.is_expected_running() {
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
