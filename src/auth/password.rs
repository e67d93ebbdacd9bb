//! Password hashing with argon2id (the argon2 crate's defaults: 19 MiB, 2 passes, 1 lane —
//! the OWASP recommendation). Hashing is slow on purpose, so callers run it off the async
//! threads with `spawn_blocking`.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use super::Password;

/// A PHC-format argon2id hash of a password.
pub(crate) fn hash(password: &Password) -> Result<String, argon2::password_hash::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| argon2::password_hash::Error::Crypto)?;
    let salt = SaltString::encode_b64(&bytes)?;
    Ok(Argon2::default()
        .hash_password(password.expose().as_bytes(), &salt)?
        .to_string())
}

/// Whether `candidate` matches `phc_hash`. A malformed stored hash never matches.
pub(crate) fn verify(candidate: &str, phc_hash: &str) -> bool {
    PasswordHash::new(phc_hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(candidate.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A valid hash of a password nobody knows. Verifying against it when an email is unknown
/// makes "unknown user" cost as long as "wrong password", so timing reveals nothing.
pub(crate) fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let random = super::token::random_token();
        hash(&Password::parse(random, 0).expect("a token is a valid password"))
            .expect("hashing a fresh password succeeds")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let p = Password::parse("correct horse".into(), 8).unwrap();
        let h = hash(&p).unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse", &h));
        assert!(!verify("wrong horse", &h));
        assert!(!verify("correct horse", "not a hash"));
        assert!(!verify("x", dummy_hash()));
    }
}
