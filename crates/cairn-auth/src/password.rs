//! Stored passwords: plain text (rqlite's auth files keep them so) or an argon2id hash in
//! PHC string format (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`), and
//! [`hash_password`], which `cairn passwd` prints.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Largest argon2 parameters an auth file may ask for: each verification allocates
/// `m_cost` KiB, so a file with `m=4000000` would make every login attempt allocate 4 GB.
const MAX_ARGON2_M_KIB: u32 = 256 * 1024;
const MAX_ARGON2_T: u32 = 64;
const MAX_ARGON2_P: u32 = 16;
/// Largest bcrypt cost accepted (2^16 rounds take seconds).
const MAX_BCRYPT_COST: u32 = 16;

/// A password as an auth file stores it.
#[derive(Debug, Clone)]
pub(crate) enum Stored {
    /// A plain password, kept as its keyed SHA-256 digest, so that comparing takes the same
    /// time whatever its length and the text is not kept in memory.
    Plain([u8; 32]),
    /// A PHC string, already checked to parse as argon2id with bounded parameters.
    Argon2id(String),
    /// A bcrypt hash (`$2a$`, `$2b$`, `$2x$`, `$2y$`), as rqlite accepts.
    Bcrypt(String),
}

/// Keyed digests of plain passwords: the key is random per process.
#[derive(Clone)]
pub(crate) struct Digester {
    key: [u8; 32],
}

impl Digester {
    pub(crate) fn new() -> Digester {
        Digester {
            key: rand::random(),
        }
    }

    /// SHA-256 of the key, then each part with its length (so parts cannot run together).
    pub(crate) fn digest(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.key);
        for part in parts {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        h.finalize().into()
    }
}

impl Stored {
    /// A password from an auth file: `$argon2…` must be a valid argon2id PHC string with
    /// bounded parameters, `$2a$`/`$2b$`/`$2x$`/`$2y$` a bcrypt hash; other `$N$` crypt
    /// hashes are refused (they would otherwise work as plain passwords: the hash itself
    /// would log in); anything else is a plain password.
    ///
    /// # Errors
    /// A message saying why the password cannot be used.
    pub(crate) fn parse(text: &str, digester: &Digester) -> Result<Stored, String> {
        if text.is_empty() {
            return Err("the password is empty".into());
        }
        if text.starts_with("$argon2") {
            return parse_argon2(text);
        }
        if ["$2a$", "$2b$", "$2x$", "$2y$"]
            .iter()
            .any(|p| text.starts_with(p))
        {
            return parse_bcrypt(text);
        }
        let crypt_like = text.starts_with('$')
            && text[1..].split_once('$').is_some_and(|(id, _)| {
                !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if crypt_like {
            return Err(
                "looks like a crypt(3) hash Cairn cannot verify; use argon2id (`cairn passwd`) or bcrypt"
                    .into(),
            );
        }
        Ok(Stored::Plain(digester.digest(&[text.as_bytes()])))
    }

    /// Whether verifying costs a hash computation (tens of milliseconds and, for argon2,
    /// the hash's memory cost: 19 MiB with the defaults).
    pub(crate) fn is_slow(&self) -> bool {
        !matches!(self, Stored::Plain(_))
    }

    /// Whether `given` is this password. Slow for a hash: call it on a blocking thread.
    pub(crate) fn verify(&self, given: &str, digester: &Digester) -> bool {
        match self {
            Stored::Plain(d) => bool::from(d.ct_eq(&digester.digest(&[given.as_bytes()]))),
            Stored::Argon2id(phc) => match PasswordHash::new(phc) {
                // The parameters come from the PHC string, not from `Argon2::default()`.
                Ok(hash) => Argon2::default()
                    .verify_password(given.as_bytes(), &hash)
                    .is_ok(),
                Err(_) => false,
            },
            Stored::Bcrypt(h) => bcrypt::verify(given, h).unwrap_or(false),
        }
    }

    /// A password of the same kind and cost as this one that nobody knows: verified for
    /// unknown usernames, so that they take as long as a wrong password.
    pub(crate) fn decoy(&self, digester: &Digester) -> Stored {
        let secret = format!("{:032x}", rand::random::<u128>());
        let made = match self {
            Stored::Plain(_) => None,
            Stored::Argon2id(phc) => PasswordHash::new(phc)
                .ok()
                .and_then(|h| argon2::Params::try_from(&h).ok())
                .and_then(|params| {
                    let salt = SaltString::generate(&mut OsRng);
                    Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                        .hash_password(secret.as_bytes(), &salt)
                        .ok()
                        .map(|h| Stored::Argon2id(h.to_string()))
                }),
            Stored::Bcrypt(h) => bcrypt_cost(h)
                .and_then(|cost| bcrypt::hash(&secret, cost).ok())
                .map(Stored::Bcrypt),
        };
        made.unwrap_or_else(|| Stored::Plain(digester.digest(&[secret.as_bytes()])))
    }
}

fn parse_argon2(text: &str) -> Result<Stored, String> {
    let hash = PasswordHash::new(text).map_err(|e| format!("not a PHC string: {e}"))?;
    if hash.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "{} hashes are not accepted; use argon2id (`cairn passwd` prints one)",
            hash.algorithm
        ));
    }
    let params =
        argon2::Params::try_from(&hash).map_err(|e| format!("bad argon2 parameters: {e}"))?;
    if params.m_cost() > MAX_ARGON2_M_KIB
        || params.t_cost() > MAX_ARGON2_T
        || params.p_cost() > MAX_ARGON2_P
    {
        return Err(format!(
            "argon2 parameters m={}, t={}, p={} exceed m={MAX_ARGON2_M_KIB}, t={MAX_ARGON2_T}, p={MAX_ARGON2_P}: every login would cost that much",
            params.m_cost(),
            params.t_cost(),
            params.p_cost()
        ));
    }
    if hash.hash.is_none() {
        return Err("the PHC string has no hash".into());
    }
    Ok(Stored::Argon2id(text.to_string()))
}

fn bcrypt_cost(text: &str) -> Option<u32> {
    text.get(4..6)?.parse().ok()
}

fn parse_bcrypt(text: &str) -> Result<Stored, String> {
    let cost = bcrypt_cost(text).ok_or("not a bcrypt hash: no cost")?;
    if !(4..=MAX_BCRYPT_COST).contains(&cost) {
        return Err(format!(
            "bcrypt cost {cost} is outside 4..={MAX_BCRYPT_COST}"
        ));
    }
    // `$2b$NN$` + 22 characters of salt + 31 of hash.
    if text.len() != 60 {
        return Err("not a bcrypt hash: it must be 60 characters".into());
    }
    Ok(Stored::Bcrypt(text.to_string()))
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
        let d = Digester::new();
        let phc = hash_password("s3cret").expect("hashes");
        assert!(phc.starts_with("$argon2id$v=19$"), "{phc}");
        let stored = Stored::parse(&phc, &d).expect("parses");
        assert!(stored.is_slow());
        assert!(stored.verify("s3cret", &d));
        assert!(!stored.verify("s3cret ", &d));
        assert_ne!(hash_password("s3cret").expect("hashes"), phc, "salted");
        assert!(!stored.decoy(&d).verify("s3cret", &d));
    }

    #[test]
    fn bcrypt_hashes_verify_as_rqlite_does_and_are_not_plain_passwords() {
        let d = Digester::new();
        let h = bcrypt::hash("pw", 4).expect("hash");
        let stored = Stored::parse(&h, &d).expect("bcrypt");
        assert!(stored.verify("pw", &d));
        assert!(!stored.verify(&h, &d), "the hash itself does not log in");
        assert!(Stored::parse("$2b$31$short", &d).is_err());
    }

    #[test]
    fn plain_passwords_and_bad_hashes() {
        let d = Digester::new();
        let plain = Stored::parse("secret1", &d).expect("plain");
        assert!(!plain.is_slow());
        assert!(plain.verify("secret1", &d));
        assert!(!plain.verify("secret", &d));
        assert!(Stored::parse("", &d).is_err(), "empty");
        assert!(Stored::parse("$argon2id$garbage", &d).is_err());
        assert!(
            Stored::parse("$6$salt$hash", &d).is_err(),
            "crypt(3) sha512"
        );
        let argon2i = "$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$1FAFmAjGa4HcS2hV1Zk1Ww";
        assert!(Stored::parse(argon2i, &d)
            .expect_err("argon2i refused")
            .contains("argon2id"));
        let huge = "$argon2id$v=19$m=4000000,t=2,p=1$c2FsdHNhbHQ$1FAFmAjGa4HcS2hV1Zk1Ww";
        assert!(Stored::parse(huge, &d)
            .expect_err("huge")
            .contains("exceed"));
    }
}
