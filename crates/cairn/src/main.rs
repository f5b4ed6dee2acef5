//! The `cairn` command: parses flags and wires the crates together.

mod bench;
mod client;
mod config;
mod demo;
mod import;
mod ops;
mod passwd;
mod secure;
mod shell;
mod start;
mod top;

use clap::{Parser, Subcommand};

/// Cairn: a distributed SQL database (Raft + SQLite) with an rqlite-compatible HTTP API.
#[derive(Parser)]
#[command(name = "cairn", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start one node.
    Start(Box<config::StartArgs>),
    /// Start a local cluster of N nodes on 127.0.0.1 and run until Ctrl-C.
    Demo(demo::DemoArgs),
    /// Import a CSV, JSON or JSON Lines file into a table, through any node's HTTP API.
    Import(import::ImportArgs),
    /// Measure throughput and latency of a workload (Cairn, SQLite alone, or etcd).
    Bench(Box<bench::BenchArgs>),
    /// Print an argon2id hash of a password for an --auth file (reads it from the terminal
    /// or stdin).
    Passwd(passwd::PasswdArgs),
    /// An interactive SQL shell (reads a script from stdin when it is not a terminal).
    Sql(shell::SqlArgs),
    /// A live dashboard of the cluster: nodes, roles, replication lag, load.
    Top(top::TopArgs),
    /// A one-screen summary of the cluster, like `etcdctl endpoint status -w table`.
    Status(ops::StatusArgs),
    /// Write a backup of a database to a file.
    Backup(ops::BackupArgs),
    /// Load a backup file into a database.
    Restore(ops::RestoreArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,openraft=error".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Start(args) => runtime.block_on(start::run(*args)),
        Command::Demo(args) => runtime.block_on(demo::run(args)),
        Command::Import(args) => runtime.block_on(import::run(args)),
        Command::Bench(args) => runtime.block_on(bench::run(*args)),
        Command::Passwd(args) => passwd::run(&args),
        Command::Sql(args) => runtime.block_on(shell::run(args)),
        Command::Top(args) => runtime.block_on(top::run(args)),
        Command::Status(args) => runtime.block_on(ops::status(args)),
        Command::Backup(args) => runtime.block_on(ops::backup(args)),
        Command::Restore(args) => runtime.block_on(ops::restore(args)),
    }
}
