//! `cairn top`: a live terminal dashboard of a cluster.
//!
//! Three parts, so that what is drawn can be tested without a terminal or a cluster:
//! [`collect`] fetches one refresh (every node's `/status` and `/metrics`, `/nodes`, the
//! tables) into a [`model::Snapshot`], [`render::draw`] is a pure function of that
//! snapshot, and [`run`] wires them to the terminal and the keyboard. The terminal is
//! restored on every way out: `q`, an error, a signal, a panic (ratatui's panic hook).

mod collect;
mod load;
mod model;
mod render;
#[cfg(test)]
mod svg;
#[cfg(test)]
mod tests;

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch, Notify};

use crate::client::{base_url, ClientArgs};
use collect::Collector;
use model::Snapshot;

/// The refresh intervals `+` and `-` step through, in milliseconds.
const STEPS_MS: [u64; 8] = [200, 300, 500, 1_000, 2_000, 3_000, 5_000, 10_000];

/// How often the keyboard thread looks at its stop flag.
const KEY_POLL: Duration = Duration::from_millis(100);

/// Flags of `cairn top`.
#[derive(Args, Debug)]
pub struct TopArgs {
    /// Where the node is and how to reach it.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Refresh interval in milliseconds, 200 to 10000 (`+` and `-` change it while
    /// running). Each request of a refresh gives up after three quarters of it.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(200..=10_000))]
    pub interval: u64,
}

/// Runs the dashboard until `q`, Esc or Ctrl-C (or SIGTERM, SIGHUP).
///
/// # Errors
/// When stdout is not a terminal, the flags are wrong, or the terminal fails.
pub async fn run(args: TopArgs) -> anyhow::Result<()> {
    if !std::io::stdout().is_terminal() {
        bail!(
            "cairn top draws on a terminal and stdout is not one (`cairn status` prints a summary)"
        );
    }
    let seed = args.client.base_url()?;
    let client = args.client.client()?;
    let collector = Collector::new(client.clone(), &args.client.addr, seed);
    let interval = Duration::from_millis(args.interval);
    let ceiling = Duration::from_secs(args.client.timeout_secs.max(1));

    let (interval_tx, interval_rx) = watch::channel(interval);
    let (snapshot_tx, snapshot_rx) = watch::channel(None::<Snapshot>);
    let refresh_now = Arc::new(Notify::new());
    let collecting = tokio::spawn(collect_loop(
        collector,
        interval_rx,
        snapshot_tx,
        refresh_now.clone(),
        ceiling,
    ));
    let (key_tx, key_rx) = mpsc::channel(16);
    let stop = Arc::new(AtomicBool::new(false));
    let keyboard = {
        let stop = stop.clone();
        std::thread::spawn(move || read_keys(&key_tx, &stop))
    };

    let result = {
        let _restore = TerminalGuard;
        match ratatui::try_init() {
            Ok(mut terminal) => {
                let ui = Ui {
                    client,
                    source: args.client.addr.clone(),
                    interval: interval_tx,
                    snapshots: snapshot_rx,
                    keys: key_rx,
                    refresh_now,
                };
                ui.run(&mut terminal).await
            }
            Err(e) => Err(anyhow::Error::new(e).context("setting up the terminal")),
        }
    };
    stop.store(true, Ordering::Relaxed);
    collecting.abort();
    if keyboard.join().is_err() {
        eprintln!("cairn top: the keyboard thread panicked");
    }
    result
}

/// Restores the terminal (raw mode off, main screen back) when dropped, whichever way the
/// dashboard ends.
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// A refresh every `interval`, sooner when told to (`refresh_now`, or the interval
/// changed); each snapshot is published on `out`. Ends when nobody listens.
async fn collect_loop(
    mut collector: Collector,
    mut interval: watch::Receiver<Duration>,
    out: watch::Sender<Option<Snapshot>>,
    refresh_now: Arc<Notify>,
    ceiling: Duration,
) {
    loop {
        let every = *interval.borrow_and_update();
        let started = Instant::now();
        let snapshot = collector
            .collect(every, request_timeout(every, ceiling))
            .await;
        if out.send(Some(snapshot)).is_err() {
            return;
        }
        let rest = every.saturating_sub(started.elapsed());
        tokio::select! {
            () = tokio::time::sleep(rest) => {}
            changed = interval.changed() => if changed.is_err() { return },
            () = refresh_now.notified() => {}
        }
    }
}

/// Each request of a refresh gets three quarters of the interval (so that a dead node
/// does not delay the next refresh), and never more than `--timeout-secs`.
fn request_timeout(interval: Duration, ceiling: Duration) -> Duration {
    (interval * 3 / 4).min(ceiling)
}

/// What the keyboard thread reports.
enum Input {
    Key(KeyEvent),
    Resize,
    Failed(String),
}

/// Reads terminal events until `stop` is set or the receiver is gone (crossterm's reader
/// blocks, so it runs on its own thread and polls with a timeout to see `stop`).
fn read_keys(tx: &mpsc::Sender<Input>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let input = match event::poll(KEY_POLL) {
            Ok(false) => continue,
            Ok(true) => match event::read() {
                Ok(Event::Key(key)) if key.kind == KeyEventKind::Press => Input::Key(key),
                Ok(Event::Resize(..)) => Input::Resize,
                Ok(_) => continue,
                Err(e) => Input::Failed(format!("reading the keyboard: {e}")),
            },
            Err(e) => Input::Failed(format!("reading the keyboard: {e}")),
        };
        let failed = matches!(input, Input::Failed(_));
        if tx.blocking_send(input).is_err() || failed {
            return;
        }
    }
}

/// What a key asks for.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    Quit,
    Faster,
    Slower,
    StepDown,
}

fn action(key: &KeyEvent) -> Option<Action> {
    match key.code {
        KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => Some(Action::Quit),
        KeyCode::Char('q' | 'Q') | KeyCode::Esc => Some(Action::Quit),
        KeyCode::Char('+' | '=') => Some(Action::Faster),
        KeyCode::Char('-' | '_') => Some(Action::Slower),
        KeyCode::Char('s' | 'S') => Some(Action::StepDown),
        _ => None,
    }
}

/// The next interval in [`STEPS_MS`]: shorter when `faster`, longer otherwise; the ends
/// stay where they are.
fn step_interval(current: Duration, faster: bool) -> Duration {
    let ms = u64::try_from(current.as_millis()).unwrap_or(u64::MAX);
    let next = if faster {
        STEPS_MS.iter().rev().find(|&&s| s < ms).copied()
    } else {
        STEPS_MS.iter().find(|&&s| s > ms).copied()
    };
    Duration::from_millis(next.unwrap_or(ms))
}

/// The event loop's state.
struct Ui {
    client: reqwest::Client,
    source: String,
    interval: watch::Sender<Duration>,
    snapshots: watch::Receiver<Option<Snapshot>>,
    keys: mpsc::Receiver<Input>,
    refresh_now: Arc<Notify>,
}

impl Ui {
    /// Draws after every snapshot, key and notice, until a quit key or signal.
    async fn run(mut self, terminal: &mut ratatui::DefaultTerminal) -> anyhow::Result<()> {
        let mut sigterm = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut sighup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
        let mut sigint = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        let (notice_tx, mut notices) = mpsc::channel::<String>(4);
        let mut current = Snapshot {
            source: self.source.clone(),
            ..Snapshot::default()
        };
        let mut notice: Option<String> = None;
        loop {
            let mut shown = current.clone();
            shown.interval = *self.interval.borrow();
            shown.notice.clone_from(&notice);
            terminal
                .draw(|frame| render::draw(frame, &shown))
                .context("drawing")?;
            tokio::select! {
                changed = self.snapshots.changed() => {
                    if changed.is_err() {
                        bail!("the collector stopped");
                    }
                    if let Some(s) = self.snapshots.borrow_and_update().clone() {
                        current = s;
                    }
                }
                input = self.keys.recv() => match input {
                    None => bail!("the keyboard thread ended"),
                    Some(Input::Failed(e)) => bail!(e),
                    Some(Input::Resize) => {}
                    Some(Input::Key(key)) => match action(&key) {
                        Some(Action::Quit) => return Ok(()),
                        Some(Action::Faster) => self.set_interval(true),
                        Some(Action::Slower) => self.set_interval(false),
                        Some(Action::StepDown) => {
                            notice = Some(self.step_down(&current, &notice_tx));
                        }
                        None => {}
                    },
                },
                Some(n) = notices.recv() => {
                    notice = Some(n);
                    self.refresh_now.notify_one();
                }
                _ = sigterm.recv() => return Ok(()),
                _ = sighup.recv() => return Ok(()),
                _ = sigint.recv() => return Ok(()),
            }
        }
    }

    fn set_interval(&self, faster: bool) {
        let next = step_interval(*self.interval.borrow(), faster);
        self.interval.send_replace(next);
    }

    /// Starts `POST /leader` on the leader in the background (its outcome arrives as a
    /// notice) and returns the notice to show meanwhile.
    fn step_down(&self, current: &Snapshot, notices: &mpsc::Sender<String>) -> String {
        let Some(leader) = current.nodes.iter().find(|n| n.is_leader) else {
            return "no leader to step down".to_string();
        };
        let url = match base_url(&leader.api_addr) {
            Ok(url) => url,
            Err(e) => return format!("step down failed: {e:#}"),
        };
        let (client, notices) = (self.client.clone(), notices.clone());
        tokio::spawn(async move {
            let outcome = collect::step_down(&client, &url).await;
            // The dashboard may have ended meanwhile; nobody to tell then.
            let _ = notices.send(outcome).await;
        });
        format!(
            "asking node {} to step down...",
            leader
                .id
                .map_or_else(|| "?".to_string(), |id| id.to_string())
        )
    }
}

#[cfg(test)]
mod key_tests {
    use super::*;

    #[test]
    fn plus_and_minus_step_through_bounded_intervals() {
        let ms = Duration::from_millis;
        assert_eq!(step_interval(ms(1_000), true), ms(500));
        assert_eq!(step_interval(ms(1_000), false), ms(2_000));
        assert_eq!(step_interval(ms(200), true), ms(200));
        assert_eq!(step_interval(ms(10_000), false), ms(10_000));
        assert_eq!(step_interval(ms(700), true), ms(500));
        assert_eq!(step_interval(ms(700), false), ms(1_000));
    }

    #[test]
    fn keys_map_to_actions() {
        let key = |code, modifiers| KeyEvent::new(code, modifiers);
        let none = KeyModifiers::NONE;
        assert_eq!(action(&key(KeyCode::Char('q'), none)), Some(Action::Quit));
        assert_eq!(action(&key(KeyCode::Esc, none)), Some(Action::Quit));
        assert_eq!(
            action(&key(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
        assert_eq!(action(&key(KeyCode::Char('c'), none)), None);
        assert_eq!(
            action(&key(KeyCode::Char('s'), none)),
            Some(Action::StepDown)
        );
        assert_eq!(action(&key(KeyCode::Char('+'), none)), Some(Action::Faster));
        assert_eq!(action(&key(KeyCode::Char('-'), none)), Some(Action::Slower));
    }

    #[test]
    fn requests_give_up_before_the_next_refresh() {
        let ms = Duration::from_millis;
        assert_eq!(request_timeout(ms(1_000), ms(30_000)), ms(750));
        assert_eq!(request_timeout(ms(10_000), ms(2_000)), ms(2_000));
    }
}
