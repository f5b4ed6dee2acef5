//! `cairn top`: a live terminal dashboard of a cluster.

use clap::Args;

use crate::client::ClientArgs;

/// Flags of `cairn top`.
#[derive(Args, Debug)]
pub struct TopArgs {
    /// Where the node is and how to reach it.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Runs the dashboard until `q`.
pub async fn run(_args: TopArgs) -> anyhow::Result<()> {
    anyhow::bail!("cairn top is being built")
}
