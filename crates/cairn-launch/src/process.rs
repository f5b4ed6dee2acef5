//! `NodeProcess`: one supervised child process (a `cairn start` node, an etcd member, a
//! `cairn demo`), its log files and its lifecycle.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::identity::NodeIdentity;
use crate::procfs::descendants;
use crate::wait::poll_until;
use crate::{Error, Result};

/// Proxy variables removed from every child's environment: cluster traffic is loopback
/// and must not be sent to a proxy the machine happens to configure.
const PROXY_VARS: [&str; 6] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Where a child's output goes. Both files are appended to across restarts; they may be
/// the same file.
#[derive(Debug, Clone)]
pub struct LogFiles {
    /// The child's stdout.
    pub stdout: PathBuf,
    /// The child's stderr (a Cairn node's logs).
    pub stderr: PathBuf,
    /// Write a line `==== <env> <program> <args>` to `stderr` before each start, so that a
    /// tail shows which start a line belongs to.
    pub mark_starts: bool,
}

impl LogFiles {
    /// stdout and stderr both appended to `path`, with no start markers.
    pub fn combined(path: PathBuf) -> LogFiles {
        LogFiles {
            stdout: path.clone(),
            stderr: path,
            mark_starts: false,
        }
    }
}

/// The command line of the last start, for [`NodeProcess::respawn`].
#[derive(Debug, Clone)]
struct CommandLine {
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

/// One child process, owned: dropping it SIGKILLs and reaps the child.
///
/// `name` ("node 2") is used in errors; `data_dir` is where [`Self::read_identity`] looks
/// for `node.json`. The child handle sits behind a mutex so that `&self` methods can
/// notice an exit (`try_wait` needs `&mut`) and the value stays `Send + Sync`.
#[derive(Debug)]
pub struct NodeProcess {
    name: String,
    data_dir: PathBuf,
    logs: LogFiles,
    last: Option<CommandLine>,
    child: Mutex<Option<Child>>,
}

impl NodeProcess {
    /// A process that is not started yet. Creates `data_dir` and the log files' parents.
    ///
    /// # Errors
    /// [`Error::Io`] when a directory cannot be created.
    pub fn new(name: impl Into<String>, data_dir: PathBuf, logs: LogFiles) -> Result<Self> {
        for dir in [
            Some(data_dir.as_path()),
            logs.stdout.parent(),
            logs.stderr.parent(),
        ]
        .into_iter()
        .flatten()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        Ok(NodeProcess {
            name: name.into(),
            data_dir,
            logs,
            last: None,
            child: Mutex::new(None),
        })
    }

    fn slot(&self) -> MutexGuard<'_, Option<Child>> {
        // A panic while holding the lock leaves the slot consistent: it is one Option.
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The name used in errors, e.g. "node 2".
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The data directory (where `node.json` is looked for).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The log files.
    pub fn logs(&self) -> &LogFiles {
        &self.logs
    }

    /// Starts `program args...` with `env` added to the inherited environment (minus the
    /// proxy variables and `CAIRN_CRASH_AT`, which is set per start, never inherited).
    /// Does not wait for anything.
    ///
    /// # Errors
    /// [`Error::Invalid`] when it already runs; [`Error::Io`] when a log cannot be opened
    /// or the program cannot be started.
    pub fn spawn(&mut self, program: &Path, args: &[String], env: &[(&str, &str)]) -> Result<()> {
        if self.is_running() {
            return Err(Error::Invalid(format!("{} is already running", self.name)));
        }
        let stdout = append(&self.logs.stdout)?;
        let mut stderr = if self.logs.stderr == self.logs.stdout {
            stdout
                .try_clone()
                .map_err(|e| Error::io(format!("duplicating {}", self.logs.stdout.display()), e))?
        } else {
            append(&self.logs.stderr)?
        };
        if self.logs.mark_starts {
            let env_note: String = env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
            writeln!(
                stderr,
                "==== launch: {env_note}{} {}",
                program.display(),
                args.join(" ")
            )
            .map_err(|e| Error::io(format!("writing to {}", self.logs.stderr.display()), e))?;
        }
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        for var in PROXY_VARS {
            cmd.env_remove(var);
        }
        cmd.env_remove("CAIRN_CRASH_AT");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().map_err(|e| {
            Error::io(
                format!("starting {} for {}", program.display(), self.name),
                e,
            )
        })?;
        *self.slot() = Some(child);
        self.last = Some(CommandLine {
            program: program.to_path_buf(),
            args: args.to_vec(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        });
        Ok(())
    }

    /// Starts the process again with the command line and environment of its last start.
    ///
    /// # Errors
    /// [`Error::NotRunning`] when it was never started; errors of [`Self::spawn`].
    pub fn respawn(&mut self) -> Result<()> {
        let last = self
            .last
            .clone()
            .ok_or_else(|| Error::NotRunning(format!("{} (never started)", self.name)))?;
        let env: Vec<(&str, &str)> = last
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.spawn(&last.program, &last.args, &env)
    }

    /// The process ID, while the supervisor owns a started process.
    pub fn pid(&self) -> Option<u32> {
        self.slot().as_ref().map(Child::id)
    }

    /// Whether the process was started and has not exited.
    pub fn is_running(&self) -> bool {
        matches!(self.slot().as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Whether the supervisor expects it to run: started, and neither killed nor stopped
    /// nor forgotten since (it may have crashed).
    pub fn is_expected_running(&self) -> bool {
        self.slot().is_some()
    }

    /// `Ok` while a started process runs.
    ///
    /// # Errors
    /// [`Error::NotRunning`] when it is not started (or was stopped), [`Error::Exited`]
    /// when it exited on its own, [`Error::Io`] when waiting on it fails.
    pub fn check_alive(&self) -> Result<()> {
        match self.exit_status()? {
            None if self.is_expected_running() => Ok(()),
            None => Err(Error::NotRunning(format!("{} (it was stopped)", self.name))),
            Some(status) => Err(Error::Exited {
                name: self.name.clone(),
                status,
                log: self.logs.stderr.clone(),
            }),
        }
    }

    /// The exit status when the process was started and has exited on its own; `None`
    /// while it runs or when it is not started.
    ///
    /// # Errors
    /// [`Error::Io`] when waiting on it fails.
    pub fn exit_status(&self) -> Result<Option<ExitStatus>> {
        match self.slot().as_mut() {
            None => Ok(None),
            Some(child) => child
                .try_wait()
                .map_err(|e| Error::io(format!("waiting on {}", self.name), e)),
        }
    }

    /// Forgets an exited child, so that the supervisor no longer expects it to run.
    pub fn forget_exited(&mut self) {
        self.slot().take();
    }

    /// Waits up to `timeout` for `<data-dir>/node.json` with bound (non-zero) ports and
    /// returns it. Fails early when the process exits. `node_id` is checked when given.
    ///
    /// # Errors
    /// [`Error::Timeout`] when no usable `node.json` appears in time; errors of
    /// [`Self::check_alive`].
    pub fn read_identity(&self, node_id: Option<u64>, timeout: Duration) -> Result<NodeIdentity> {
        let path = NodeIdentity::path(&self.data_dir);
        poll_until(timeout, &path.display().to_string(), || {
            self.check_alive()?;
            Ok(match NodeIdentity::read(&self.data_dir) {
                Ok(None) => Err("not written yet".to_string()),
                Err(e) => Err(e.to_string()),
                Ok(Some(id)) if node_id.is_some_and(|want| want != id.node_id) => {
                    Err(format!("node_id is {}, not {node_id:?}", id.node_id))
                }
                Ok(Some(id)) => id.bound_addrs().map(|_| id),
            })
        })
    }

    /// Sends `sig` to the process (not its process group).
    ///
    /// # Errors
    /// [`Error::NotRunning`] when it is not started; [`Error::Io`] when the signal cannot
    /// be sent.
    pub fn signal(&self, sig: Signal) -> Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| Error::NotRunning(self.name.clone()))?;
        let raw =
            i32::try_from(pid).map_err(|_| Error::Invalid(format!("pid {pid} out of range")))?;
        signal::kill(Pid::from_raw(raw), sig)
            .map_err(|e| Error::io(format!("sending {sig} to {}", self.name), e.into()))
    }

    /// SIGKILL, then reap.
    ///
    /// # Errors
    /// [`Error::NotRunning`] when it was not started; [`Error::Io`] when reaping fails.
    pub fn kill(&mut self) -> Result<()> {
        let mut child = self
            .slot()
            .take()
            .ok_or_else(|| Error::NotRunning(self.name.clone()))?;
        // An error here means it already exited; reaping below still applies.
        let _ = child.kill();
        child
            .wait()
            .map_err(|e| Error::io(format!("reaping {}", self.name), e))?;
        Ok(())
    }

    /// SIGKILLs every live descendant of the process, then the process, and reaps it:
    /// for a process (say, `cairn demo`) whose own children must not outlive it.
    pub fn kill_tree(&mut self) {
        if let Some(pid) = self.pid() {
            for d in descendants(pid) {
                if let Ok(raw) = i32::try_from(d) {
                    let _ = signal::kill(Pid::from_raw(raw), Signal::SIGKILL);
                }
            }
        }
        let _ = self.kill();
    }

    /// Waits up to `timeout` for the process to exit, and reaps it.
    ///
    /// # Errors
    /// [`Error::NotRunning`] when it is not started; [`Error::Timeout`] when it still runs
    /// (it is left running and owned).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        if !self.is_expected_running() {
            return Err(Error::NotRunning(self.name.clone()));
        }
        let status = poll_until(timeout, &format!("{} to exit", self.name), || {
            Ok(match self.exit_status()? {
                Some(status) => Ok(status),
                None => Err("still running".to_string()),
            })
        })?;
        self.slot().take();
        Ok(status)
    }

    /// SIGTERM, then waits up to `timeout` for the exit. When it does not exit in time it
    /// is killed and [`Error::Timeout`] returned; otherwise its exit status.
    ///
    /// # Errors
    /// [`Error::NotRunning`] when it was not started; [`Error::Timeout`] as above.
    pub fn stop(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.signal(Signal::SIGTERM)?;
        match self.wait_exit(timeout) {
            Ok(status) => Ok(status),
            Err(e) => {
                let _ = self.kill();
                Err(e)
            }
        }
    }

    /// The last `lines` lines of the process's stderr.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.logs.stderr, lines)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.slot().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Stops all of `procs` at once: SIGTERM to every running one, then waits for each up to
/// `timeout` (each is SIGKILLed when its wait passes). Processes not running are skipped.
pub fn stop_all<'a>(procs: impl IntoIterator<Item = &'a mut NodeProcess>, timeout: Duration) {
    let mut procs: Vec<&mut NodeProcess> = procs.into_iter().collect();
    for p in &procs {
        let _ = p.signal(Signal::SIGTERM);
    }
    for p in &mut procs {
        if p.is_expected_running() && p.wait_exit(timeout).is_err() {
            let _ = p.kill();
        }
    }
}

fn append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))
}

/// The last `lines` lines of a file (read from its last 64 KiB), or a note saying why
/// there are none.
pub fn tail(path: &Path, lines: usize) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(dir: &Path) -> Result<NodeProcess> {
        NodeProcess::new(
            "sh",
            dir.join("data"),
            LogFiles {
                stdout: dir.join("out.log"),
                stderr: dir.join("err.log"),
                mark_starts: true,
            },
        )
    }

    #[test]
    fn exit_status_stop_kill_and_respawn() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let mut p = sh(dir.path())?;
        assert!(matches!(p.check_alive(), Err(Error::NotRunning(_))));
        let script = [
            "-c".to_string(),
            "echo hello; echo oops >&2; exit 3".to_string(),
        ];
        p.spawn(Path::new("/bin/sh"), &script, &[("X", "1")])?;
        let status = p.wait_exit(Duration::from_secs(10))?;
        assert_eq!(status.code(), Some(3));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out.log"))
                .ok()
                .as_deref(),
            Some("hello\n")
        );
        let err = p.log_tail(10);
        assert!(
            err.contains("==== launch: X=1 /bin/sh") && err.ends_with("oops"),
            "{err}"
        );

        let sleep = ["-c".to_string(), "sleep 30".to_string()];
        p.spawn(Path::new("/bin/sh"), &sleep, &[])?;
        assert!(p.is_running() && p.check_alive().is_ok());
        let status = p.stop(Duration::from_secs(10))?;
        assert!(!status.success(), "SIGTERM ends sleep: {status}");
        assert!(!p.is_expected_running());

        p.respawn()?;
        assert!(p.is_running());
        p.kill()?;
        assert!(matches!(p.kill(), Err(Error::NotRunning(_))));
        Ok(())
    }

    #[test]
    fn dropping_kills_the_child() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let mut p = sh(dir.path())?;
        p.spawn(Path::new("/bin/sh"), &["-c".into(), "sleep 30".into()], &[])?;
        let pid = p.pid().ok_or_else(|| Error::NotRunning("sh".into()))?;
        assert!(crate::process_alive(pid));
        drop(p);
        assert!(!crate::process_alive(pid), "killed and reaped on drop");
        Ok(())
    }
}
