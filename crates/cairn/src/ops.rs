//! `cairn status`, `cairn backup` and `cairn restore`.

use clap::Args;

use crate::client::ClientArgs;

/// Flags of `cairn status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Where the node is and how to reach it.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Flags of `cairn backup`.
#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Where the node is and how to reach it.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Flags of `cairn restore`.
#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// Where the node is and how to reach it.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Prints a one-screen summary of the cluster.
pub async fn status(_args: StatusArgs) -> anyhow::Result<()> {
    anyhow::bail!("cairn status is being built")
}

/// Writes a backup of the cluster's databases to a file.
pub async fn backup(_args: BackupArgs) -> anyhow::Result<()> {
    anyhow::bail!("cairn backup is being built")
}

/// Loads a backup into the cluster.
pub async fn restore(_args: RestoreArgs) -> anyhow::Result<()> {
    anyhow::bail!("cairn restore is being built")
}
