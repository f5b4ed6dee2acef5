//! `cairn sql`: an interactive SQL shell over the HTTP API.

use clap::Args;

use crate::client::ClientArgs;

/// Flags of `cairn sql`.
#[derive(Args, Debug)]
pub struct SqlArgs {
    /// Where the node is and how to reach it.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Runs the shell until `.quit` or end of input.
pub async fn run(_args: SqlArgs) -> anyhow::Result<()> {
    anyhow::bail!("cairn sql is being built")
}
