//! The `cairn` command: parses flags and wires the crates together.

mod bench;
mod config;
mod demo;
mod import;
mod passwd;
mod secure;
mod start;

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
    }
}
