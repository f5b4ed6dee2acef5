//! The nemesis: faults injected into a [`ProcessCluster`] on a random schedule drawn from a
//! seed, one at a time: a node is killed (SIGKILL) and later restarted on its data
//! directory, paused (SIGSTOP) and later resumed (SIGCONT), or the network is cut between
//! nodes through the cluster's [`ProxyNet`] and later healed.
//!
//! The schedule alternates a healthy gap and a fault, each of a random length: sleeping
//! through them *is* the schedule. What happened, when, is kept as a list of
//! [`FaultEvent`]s for the report.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::client::Cluster;
use crate::demo::descendants;
use crate::process_cluster::ProcessCluster;
use crate::proxy::{CutMode, ProxyNet};

/// Most faults one [`Nemesis::run`] injects, whatever its duration.
const MAX_FAULTS: usize = 10_000;

/// How long [`Nemesis::run`] looks for the leader it may target.
const LEADER_LOOKUP: Duration = Duration::from_secs(2);

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// SIGKILL a node (the leader half of the time), restart it on its data directory
    /// when the fault ends, and wait until it is ready.
    Kill,
    /// SIGSTOP a node (the leader half of the time), SIGCONT it when the fault ends.
    Pause,
    /// Cut every link to and from one node (the leader half of the time).
    Isolate,
    /// Split the nodes into a random minority and majority, cut between them.
    Split,
    /// Cut one direction of one link (from the leader half of the time): one node cannot
    /// reach another, which still reaches it.
    OneWay,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 5] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Isolate,
        FaultKind::Split,
        FaultKind::OneWay,
    ];

    /// Whether the fault needs the cluster's [`ProxyNet`].
    pub fn needs_proxies(self) -> bool {
        matches!(
            self,
            FaultKind::Isolate | FaultKind::Split | FaultKind::OneWay
        )
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Isolate => "isolate",
            FaultKind::Split => "split",
            FaultKind::OneWay => "one-way",
        })
    }
}

/// The schedule's parameters.
#[derive(Debug, Clone)]
pub struct NemesisOptions {
    /// Seeds every random choice (kinds, targets, lengths).
    pub seed: u64,
    /// The kinds to choose from: each round of faults injects every kind once, in a random
    /// order. Default: [`FaultKind::ALL`].
    pub kinds: Vec<FaultKind>,
    /// How long a fault lasts, drawn uniformly from this range. Default 1–3 s: longer than
    /// an election timeout (150–300 ms), so that leaders change.
    pub fault_length: (Duration, Duration),
    /// How long the cluster stays healthy between faults. Default 0.5–1.5 s.
    pub gap_length: (Duration, Duration),
}

impl NemesisOptions {
    /// The default schedule for `seed`.
    pub fn new(seed: u64) -> Self {
        NemesisOptions {
            seed,
            kinds: FaultKind::ALL.to_vec(),
            fault_length: (Duration::from_millis(1000), Duration::from_millis(3000)),
            gap_length: (Duration::from_millis(500), Duration::from_millis(1500)),
        }
    }
}

/// One thing the nemesis did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaultEvent {
    /// When, in nanoseconds on the history's clock (see [`Nemesis::new`]).
    pub at_ns: u64,
    /// The fault this event starts or ends.
    pub kind: FaultKind,
    /// `true` when the fault starts, `false` when it is healed.
    pub start: bool,
    /// What exactly, e.g. `SIGKILL node 2 (the leader)`.
    pub detail: String,
}

/// A fault in force, with what it takes to heal it.
#[derive(Debug, Clone)]
enum Active {
    Killed(usize),
    Paused { index: usize, pid: u32 },
    Cut,
}

/// Injects faults into a cluster; see the module docs. Dropping it resumes paused nodes
/// and heals the network (killed nodes stay down: [`Nemesis::heal`] restarts them).
pub struct Nemesis {
    opts: NemesisOptions,
    rng: StdRng,
    net: Option<Arc<ProxyNet>>,
    origin: Instant,
    events: Vec<FaultEvent>,
    active: Option<(FaultKind, Active)>,
    /// The rest of the current round of kinds.
    round: Vec<FaultKind>,
}

impl fmt::Debug for Nemesis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nemesis")
            .field("opts", &self.opts)
            .field("events", &self.events.len())
            .field("active", &self.active)
            .finish()
    }
}

impl Nemesis {
    /// A nemesis for a cluster whose network is `net` (`None`: only kills and pauses are
    /// possible), timing its events from `origin` (the history's clock).
    ///
    /// # Errors
    /// When `opts.kinds` is empty, or needs a network and `net` is `None`.
    pub fn new(opts: NemesisOptions, net: Option<Arc<ProxyNet>>, origin: Instant) -> Result<Self> {
        if opts.kinds.is_empty() {
            bail!("the nemesis needs at least one kind of fault");
        }
        if net.is_none() {
            if let Some(k) = opts.kinds.iter().find(|k| k.needs_proxies()) {
                bail!("fault {k} needs a cluster started with raft_proxies");
            }
        }
        Ok(Nemesis {
            rng: StdRng::seed_from_u64(opts.seed),
            opts,
            net,
            origin,
            events: Vec::new(),
            active: None,
            round: Vec::new(),
        })
    }

    /// Everything the nemesis did so far, in order.
    pub fn events(&self) -> &[FaultEvent] {
        &self.events
    }

    /// How many faults of each kind were started.
    pub fn counts(&self) -> BTreeMap<FaultKind, usize> {
        let mut counts = BTreeMap::new();
        for e in self.events.iter().filter(|e| e.start) {
            *counts.entry(e.kind).or_insert(0) += 1;
        }
        counts
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn log(&mut self, kind: FaultKind, start: bool, detail: String) {
        let at_ns = self.now_ns();
        eprintln!(
            "nemesis {:>8.3}s {} {kind}: {detail}",
            Duration::from_nanos(at_ns).as_secs_f64(),
            if start { "start" } else { "heal " }
        );
        self.events.push(FaultEvent {
            at_ns,
            kind,
            start,
            detail,
        });
    }

    fn draw(&mut self, (lo, hi): (Duration, Duration)) -> Duration {
        if hi <= lo {
            return lo;
        }
        self.rng.gen_range(lo..=hi)
    }

    /// Injects faults one after another until `until`: a healthy gap, a fault, its heal,
    /// and so on; the fault in force at `until` is healed before returning.
    ///
    /// # Errors
    /// When a fault cannot be injected or healed (e.g. a restarted node is not ready within
    /// [`crate::START_TIMEOUT`]). The fault in force, if any, stays for [`Self::heal`].
    pub fn run(&mut self, c: &mut ProcessCluster, until: Instant) -> Result<()> {
        for _ in 0..MAX_FAULTS {
            let gap = self.draw(self.opts.gap_length);
            sleep_until(until, gap);
            if Instant::now() >= until {
                break;
            }
            let length = self.draw(self.opts.fault_length);
            self.inject(c)?;
            sleep_until(until, length);
            self.heal(c)?;
        }
        Ok(())
    }

    /// Heals the fault in force, if any: restarts a killed node and waits until it is
    /// ready, resumes a paused one, heals every link.
    ///
    /// # Errors
    /// When a node cannot be restarted or resumed, or is not ready in time.
    pub fn heal(&mut self, c: &mut ProcessCluster) -> Result<()> {
        let Some((kind, active)) = self.active.take() else {
            return Ok(());
        };
        match active {
            Active::Killed(i) => {
                c.restart(i)?;
                self.log(kind, false, format!("restart node {}", c.id(i)));
                c.wait_ready(i)
                    .with_context(|| format!("node {} after its restart", c.id(i)))?;
            }
            Active::Paused { index, pid } => {
                resume(pid)?;
                self.log(kind, false, format!("SIGCONT node {}", c.id(index)));
            }
            Active::Cut => {
                if let Some(net) = &self.net {
                    net.heal_all();
                }
                self.log(kind, false, "heal every link".to_string());
            }
        }
        Ok(())
    }

    /// The node to hit: the leader half of the time (when one is found quickly), else a
    /// random running node. Returns the index and a note for the log.
    fn target(&mut self, c: &ProcessCluster) -> Result<(usize, &'static str)> {
        let running = c.running();
        if running.is_empty() {
            bail!("no node is running");
        }
        if self.rng.gen_bool(0.5) {
            if let Ok(l) = c.leader_within(LEADER_LOOKUP) {
                return Ok((l, " (the leader)"));
            }
        }
        let i = running[self.rng.gen_range(0..running.len())];
        Ok((i, ""))
    }

    fn cut_mode(&mut self) -> CutMode {
        if self.rng.gen_bool(0.5) {
            CutMode::Reset
        } else {
            CutMode::Blackhole
        }
    }

    fn inject(&mut self, c: &mut ProcessCluster) -> Result<()> {
        if self.round.is_empty() {
            self.round = self.opts.kinds.clone();
            self.round.shuffle(&mut self.rng);
        }
        let kind = self.round.pop().context("no kind of fault")?;
        let active = match kind {
            FaultKind::Kill => {
                let (i, note) = self.target(c)?;
                c.kill(i)?;
                self.log(kind, true, format!("SIGKILL node {}{note}", c.id(i)));
                Active::Killed(i)
            }
            FaultKind::Pause => {
                let (i, note) = self.target(c)?;
                let pid = node_pid(c, i)?;
                signal::kill(pid_of(pid)?, Signal::SIGSTOP)
                    .with_context(|| format!("SIGSTOP node {}", c.id(i)))?;
                self.log(
                    kind,
                    true,
                    format!("SIGSTOP node {} (pid {pid}){note}", c.id(i)),
                );
                Active::Paused { index: i, pid }
            }
            FaultKind::Isolate => {
                let (i, note) = self.target(c)?;
                let mode = self.cut_mode();
                let net = self.net.clone().context("no network")?;
                net.isolate(c.id(i), mode);
                self.log(
                    kind,
                    true,
                    format!("isolate node {}{note} ({mode})", c.id(i)),
                );
                Active::Cut
            }
            FaultKind::Split => {
                let mut ids = c.ids();
                ids.shuffle(&mut self.rng);
                let minority = self
                    .rng
                    .gen_range(1..=ids.len().saturating_sub(1).max(2) / 2);
                let majority = ids.split_off(minority.min(ids.len()));
                let mode = self.cut_mode();
                let net = self.net.clone().context("no network")?;
                net.partition(&[ids.clone(), majority.clone()], mode);
                self.log(kind, true, format!("split {ids:?} | {majority:?} ({mode})"));
                Active::Cut
            }
            FaultKind::OneWay => {
                let (from, note) = self.target(c)?;
                let others: Vec<usize> = (0..c.node_count()).filter(|&j| j != from).collect();
                let Some(&to) = others.get(self.rng.gen_range(0..others.len().max(1))) else {
                    bail!("a one-way cut needs two nodes");
                };
                let mode = self.cut_mode();
                let net = self.net.clone().context("no network")?;
                net.cut(c.id(from), c.id(to), mode);
                self.log(
                    kind,
                    true,
                    format!(
                        "cut node {}{note} -> node {} ({mode})",
                        c.id(from),
                        c.id(to)
                    ),
                );
                Active::Cut
            }
        };
        self.active = Some((kind, active));
        Ok(())
    }
}

impl Drop for Nemesis {
    fn drop(&mut self) {
        // Leave no process stopped and no link cut behind, also on panic.
        if let Some((_, Active::Paused { pid, .. })) = &self.active {
            let _ = resume(*pid);
        }
        if let Some(net) = &self.net {
            net.heal_all();
        }
    }
}

/// Sleeps for `length`, or until `until` if that comes first.
fn sleep_until(until: Instant, length: Duration) {
    let left = until.saturating_duration_since(Instant::now());
    std::thread::sleep(length.min(left));
}

fn pid_of(pid: u32) -> Result<Pid> {
    Ok(Pid::from_raw(
        i32::try_from(pid).context("pid out of range")?,
    ))
}

fn resume(pid: u32) -> Result<()> {
    signal::kill(pid_of(pid)?, Signal::SIGCONT).with_context(|| format!("SIGCONT pid {pid}"))
}

/// The process ID of node `i`: the child of this process whose command line names node
/// `i`'s data directory (the harness does not hand out its `Child`).
///
/// # Errors
/// When no such process runs.
pub fn node_pid(c: &ProcessCluster, i: usize) -> Result<u32> {
    let data_dir = c.data_dir(i).display().to_string();
    for pid in descendants(std::process::id()) {
        let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let names_dir = args
            .windows(2)
            .any(|w| w[0] == b"--data-dir" && w[1] == data_dir.as_bytes());
        if names_dir {
            return Ok(pid);
        }
    }
    bail!("no running process of node {} ({data_dir})", c.id(i))
}
