//! Stored passwords: plain text (rqlite's auth files keep them so) or an argon2id hash in
//! PHC string format (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`), and
//! [`hash_password`], which `cairn passwd` prints.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use subtle::ConstantTimeEq;

/// A password as an auth file stores it.
#[derive(Debug, Clone)]
pub(crate) enum Stored {
    /// Compared in constant time.
    Plain(String),
    /// A PHC string, already checked to parse as argon2id with valid parameters.
    Argon2id(String),
}

impl Stored {
    /// A password from an auth file: a string starting with `$argon2` must be a valid
    /// argon2id PHC string; anything else is a plain password.
    ///
    /// # Errors
    /// A message saying why a `$argon2…` string is not a usable argon2id hash.
    pub(crate) fn parse(text: &str) -> Result<Stored, String> {
        if !text.starts_with("$argon2") {
            return Ok(Stored::Plain(text.to_string()));
        }
        let hash = PasswordHash::new(text).map_err(|e| format!("not a PHC string: {e}"))?;
        if hash.algorithm.as_str() != "argon2id" {
            return Err(format!(
                "{} hashes are not accepted; use argon2id (`cairn passwd` prints one)",
                hash.algorithm
            ));
        }
        argon2::Params::try_from(&hash).map_err(|e| format!("bad argon2 parameters: {e}"))?;
        if hash.hash.is_none() {
            return Err("the PHC string has no hash".into());
        }
        Ok(Stored::Argon2id(text.to_string()))
    }

    /// Whether verifying costs an argon2 computation (tens of milliseconds and the hash's
    /// memory cost, 19 MiB with the defaults).
    pub(crate) fn is_slow(&self) -> bool {
        matches!(self, Stored::Argon2id(_))
    }

    /// Whether `given` is this password. Slow for an argon2id hash: call it on a blocking
    /// thread.
    pub(crate) fn verify(&self, given: &str) -> bool {
        match self {
            Stored::Plain(p) => bool::from(p.as_bytes().ct_eq(given.as_bytes())),
            Stored::Argon2id(phc) => match PasswordHash::new(phc) {
                // The parameters come from the PHC string, not from `Argon2::default()`.
                Ok(hash) => Argon2::default()
                    .verify_password(given.as_bytes(), &hash)
                    .is_ok(),
                Err(_) => false,
            },
        }
    }
}

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
#[error("hashing the password: {0}")]
pub struct HashError(String);

/// `password` hashed with argon2id (version 19, m = 19 MiB, t = 2, p = 1: argon2's
/// defaults, the OWASP recommendation) and a random 16-byte salt, as a PHC string for the
/// `password` field of an auth file.
///
/// # Errors
/// [`HashError`] when argon2 refuses the input (a password longer than 4 GiB).
pub fn hash_password(password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let phc = hash_password("s3cret").expect("hashes");
        assert!(phc.starts_with("$argon2id$v=19$"), "{phc}");
        let stored = Stored::parse(&phc).expect("parses");
        assert!(stored.is_slow());
        assert!(stored.verify("s3cret"));
        assert!(!stored.verify("s3cret "));
        assert_ne!(hash_password("s3cret").expect("hashes"), phc, "salted");
    }

    #[test]
    fn plain_passwords_and_bad_hashes() {
        let plain = Stored::parse("secret1").expect("plain");
        assert!(!plain.is_slow());
        assert!(plain.verify("secret1"));
        assert!(!plain.verify("secret"));
        assert!(Stored::parse("$argon2id$garbage").is_err());
        let argon2i = "$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$1FAFmAjGa4HcS2hV1Zk1Ww";
        assert!(Stored::parse(argon2i)
            .expect_err("argon2i refused")
            .contains("argon2id"));
    }
}
