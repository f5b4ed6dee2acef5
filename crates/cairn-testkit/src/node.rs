//! One `cairn start` child process: its directories, addresses, log files and lifecycle.

use std::cell::RefCell;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::wait::{try_wait_for, wait_for};

/// Proxy variables removed from every child's environment: cluster traffic is loopback
/// and must not be sent to a proxy the test machine happens to configure.
const PROXY_VARS: [&str; 6] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// A node of a test cluster. The process is owned: dropping the node kills it.
#[derive(Debug)]
pub(crate) struct NodeProcess {
    /// The Raft node ID, from 1.
    pub id: u64,
    /// `<cluster dir>/node-<id>`: holds `data/` and the log files.
    pub dir: PathBuf,
    /// The `--data-dir` passed to the node.
    pub data_dir: PathBuf,
    /// The bound HTTP address, known once `node.json` was read.
    pub http_addr: Option<SocketAddr>,
    /// The bound Raft address, known once `node.json` was read.
    pub raft_addr: Option<SocketAddr>,
    /// The running child, if any. A `RefCell` so that `&self` methods can notice that
    /// it exited (`try_wait` needs `&mut`).
    child: RefCell<Option<Child>>,
}

impl NodeProcess {
    /// A node that is not started yet, with its directories created under `cluster_dir`.
    pub fn new(cluster_dir: &Path, id: u64) -> Result<Self> {
        let dir = cluster_dir.join(format!("node-{id}"));
        let data_dir = dir.join("data");
        fs::create_dir_all(&data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        Ok(NodeProcess {
            id,
            dir,
            data_dir,
            http_addr: None,
            raft_addr: None,
            child: RefCell::new(None),
        })
    }

    /// Where the child's stderr (its logs) goes; appended to across restarts.
    pub fn stderr_path(&self) -> PathBuf {
        self.dir.join("stderr.log")
    }

    /// Where the child's stdout goes; appended to across restarts.
    pub fn stdout_path(&self) -> PathBuf {
        self.dir.join("stdout.log")
    }

    /// Starts `bin start` with the given addresses (`127.0.0.1:0` to let the OS choose)
    /// and extra flags. Does not wait for anything.
    pub fn spawn(
        &mut self,
        bin: &Path,
        secret: &str,
        http_addr: &str,
        raft_addr: &str,
        extra: &[String],
    ) -> Result<()> {
        self.spawn_with_env(bin, secret, http_addr, raft_addr, extra, &[])
    }

    /// Like [`Self::spawn`], with extra environment variables for this start only (e.g.
    /// `CAIRN_CRASH_AT`).
    pub fn spawn_with_env(
        &mut self,
        bin: &Path,
        secret: &str,
        http_addr: &str,
        raft_addr: &str,
        extra: &[String],
        env: &[(&str, &str)],
    ) -> Result<()> {
        if self.is_running() {
            bail!("node {} is already running", self.id);
        }
        let mut args: Vec<String> = vec![
            "start".into(),
            "--node-id".into(),
            self.id.to_string(),
            "--http-addr".into(),
            http_addr.into(),
            "--raft-addr".into(),
            raft_addr.into(),
            "--data-dir".into(),
            self.data_dir.display().to_string(),
            "--cluster-secret".into(),
            secret.into(),
        ];
        args.extend(extra.iter().cloned());
        let stdout = append(&self.stdout_path())?;
        let mut stderr = append(&self.stderr_path())?;
        // A marker in the log, so that a tail shows which start a line belongs to.
        let env_note: String = env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
        writeln!(
            stderr,
            "==== testkit: {env_note}{} {}",
            bin.display(),
            args.join(" ")
        )
        .context("writing the log marker")?;
        let mut cmd = Command::new(bin);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        for var in PROXY_VARS {
            cmd.env_remove(var);
        }
        // A crash point is set per start, never inherited from the test's environment.
        cmd.env_remove("CAIRN_CRASH_AT");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {} for node {}", bin.display(), self.id))?;
        *self.child.borrow_mut() = Some(child);
        Ok(())
    }

    /// Whether the harness started the process and it has not exited.
    pub fn is_running(&self) -> bool {
        let mut slot = self.child.borrow_mut();
        match slot.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(Ok(Some(_))) | Some(Err(_)) | None => false,
        }
    }

    /// Whether the harness expects the process to run: it was started and neither
    /// killed nor stopped by the harness (it may have crashed).
    pub fn is_expected_running(&self) -> bool {
        self.child.borrow().is_some()
    }

    /// An error when the process was started, not stopped by the harness, but exited.
    pub fn check_alive(&self) -> Result<()> {
        let mut slot = self.child.borrow_mut();
        let Some(child) = slot.as_mut() else {
            bail!("node {} is not running (the test stopped it)", self.id);
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(anyhow!(
                "node {} exited unexpectedly ({status}); the tail of {} is printed with the test output",
                self.id,
                self.stderr_path().display()
            )),
            Err(e) => Err(anyhow!("node {}: waiting on the process: {e}", self.id)),
        }
    }

    /// Waits for `<data-dir>/node.json` and records the addresses in it. Fails early when
    /// the process exits.
    pub fn read_node_json(&mut self, timeout: Duration) -> Result<()> {
        let path = self.data_dir.join("node.json");
        let id = self.id;
        let (http, raft) = try_wait_for(timeout, &format!("{}", path.display()), || {
            self.check_alive()?;
            Ok(fs::read_to_string(&path)
                .map_err(|e| format!("not readable: {e}"))
                .and_then(|text| parse_node_json(&text, id)))
        })?;
        self.http_addr = Some(http);
        self.raft_addr = Some(raft);
        Ok(())
    }

    /// The exit status when the process was started and has exited on its own (not
    /// stopped by the harness); `None` while it runs or when it is not started.
    pub fn exit_status(&self) -> Result<Option<ExitStatus>> {
        let mut slot = self.child.borrow_mut();
        match slot.as_mut() {
            None => Ok(None),
            Some(child) => child
                .try_wait()
                .with_context(|| format!("node {}: waiting on the process", self.id)),
        }
    }

    /// Forgets an exited child, so that the harness no longer expects it to run.
    pub fn forget_exited(&mut self) {
        self.child.get_mut().take();
    }

    /// SIGKILL, then reap. An error if the harness had not started the process.
    pub fn kill(&mut self) -> Result<()> {
        let mut child = self
            .child
            .borrow_mut()
            .take()
            .with_context(|| format!("node {} is not running", self.id))?;
        // An error here means it already exited; reaping below still applies.
        let _ = child.kill();
        child
            .wait()
            .with_context(|| format!("reaping node {}", self.id))?;
        Ok(())
    }

    /// SIGTERM, then waits up to `timeout` for the process to exit. When it does not,
    /// kills it and returns an error. Returns the exit status otherwise.
    pub fn stop(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let mut child = self
            .child
            .borrow_mut()
            .take()
            .with_context(|| format!("node {} is not running", self.id))?;
        let pid = Pid::from_raw(i32::try_from(child.id()).context("pid out of range")?);
        signal::kill(pid, Signal::SIGTERM)
            .with_context(|| format!("sending SIGTERM to node {}", self.id))?;
        let exited = wait_for(
            timeout,
            &format!("node {} to exit", self.id),
            || match child.try_wait() {
                Ok(Some(status)) => Ok(status),
                Ok(None) => Err("still running".into()),
                Err(e) => Err(format!("try_wait: {e}")),
            },
        );
        match exited {
            Ok(status) => Ok(status),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e.context(format!("node {} ignored SIGTERM and was killed", self.id)))
            }
        }
    }

    /// The last `lines` lines of the node's stderr (its logs).
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.stderr_path(), lines)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.get_mut().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Parses `{"node_id":1,"http_addr":"127.0.0.1:P","raft_addr":"127.0.0.1:R"}`. Port 0
/// would mean the node has not bound yet, and is refused.
fn parse_node_json(text: &str, id: u64) -> std::result::Result<(SocketAddr, SocketAddr), String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON ({e}): {text}"))?;
    if v.get("node_id").and_then(Value::as_u64) != Some(id) {
        return Err(format!("node_id is not {id}: {text}"));
    }
    let addr = |key: &str| -> std::result::Result<SocketAddr, String> {
        let s = v
            .get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("no {key}: {text}"))?;
        let a: SocketAddr = s.parse().map_err(|e| format!("bad {key} {s:?}: {e}"))?;
        if a.port() == 0 {
            return Err(format!("{key} has port 0: {text}"));
        }
        Ok(a)
    };
    Ok((addr("http_addr")?, addr("raft_addr")?))
}

fn append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

/// The last `lines` lines of a file (read from its last 64 KiB), or a note saying why
/// there are none.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    const WINDOW: u64 = 64 * 1024;
    let read = || -> std::io::Result<String> {
        let mut f = File::open(path)?;
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(WINDOW)))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    match read() {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("({}: {e})", path.display()),
    }
}
