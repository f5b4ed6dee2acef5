//! `cairn passwd`: prints an argon2id hash (PHC string) of a password, for the `password`
//! field of an `--auth` file.

use std::io::{BufRead, IsTerminal};

use anyhow::{bail, Context};
use clap::Args;

/// Flags of `cairn passwd`.
#[derive(Args, Debug)]
pub struct PasswdArgs {
    /// Also print the auth-file entry for this username, with every permission given
    /// (edit `perms` to taste).
    #[arg(long)]
    pub user: Option<String>,
}

/// Reads the password (asked twice without echo on a terminal, else the first line of
/// stdin) and prints its hash.
pub fn run(args: &PasswdArgs) -> anyhow::Result<()> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").context("reading the password")?;
        let again = rpassword::prompt_password("Again: ").context("reading the password")?;
        if first != again {
            bail!("the passwords differ");
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        line.trim_end_matches(['\n', '\r']).to_string()
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    let hash = cairn_auth::hash_password(&password)?;
    match &args.user {
        Some(user) => println!(
            "{}",
            serde_json::json!({"username": user, "password": hash, "perms": ["all"]})
        ),
        None => println!("{hash}"),
    }
    Ok(())
}
