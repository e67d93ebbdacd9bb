//! Parsed, always-valid account values (parse, don't validate).

use std::fmt;

/// An email address, trimmed; compared case-insensitively by the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let email = raw.trim();
        let Some((local, domain)) = email.split_once('@') else {
            return Err(format!("{email:?} is not an email address (no @)"));
        };
        if email.len() > 254 {
            return Err("email address longer than 254 characters".into());
        }
        if local.is_empty() || domain.is_empty() || domain.contains('@') {
            return Err(format!("{email:?} is not an email address"));
        }
        if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("email address contains spaces or control characters".into());
        }
        Ok(Self(email.to_owned()))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password of acceptable length. Its `Debug` never shows it.
#[derive(Clone)]
pub struct Password(String);

/// Longer passwords only cost hashing time; nobody needs more.
pub(crate) const MAX_PASSWORD_BYTES: usize = 1024;

impl Password {
    pub fn parse(raw: String, min_chars: usize) -> Result<Self, String> {
        if raw.chars().count() < min_chars {
            return Err(format!(
                "password must have at least {min_chars} characters"
            ));
        }
        if raw.len() > MAX_PASSWORD_BYTES {
            return Err(format!(
                "password must have at most {MAX_PASSWORD_BYTES} bytes"
            ));
        }
        Ok(Self(raw))
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// What an account may do on the host (shared with extensions).
pub use solobase_sdk::http::Role;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(Email::parse("  a@b.c ").unwrap().as_str(), "a@b.c");
        for bad in ["", "ab", "@b", "a@", "a@b@c", "a b@c", "a@b\nc"] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn passwords() {
        assert!(Password::parse("short".into(), 8).is_err());
        assert!(Password::parse("x".repeat(2000), 8).is_err());
        let p = Password::parse("long enough".into(), 8).unwrap();
        assert!(!format!("{p:?}").contains("long"));
    }
}
