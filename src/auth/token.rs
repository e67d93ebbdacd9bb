//! Opaque bearer tokens: `sb_` followed by 32 random bytes in URL-safe base64. The server keeps
//! only their SHA-256, so a leaked database holds no usable token, and a token is looked up by
//! its hash (no secret is ever compared byte by byte in application code).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

const PREFIX: &str = "sb_";
const RANDOM_BYTES: usize = 32;
/// Length of a well-formed token: prefix plus 43 base64 characters.
const TOKEN_LEN: usize = PREFIX.len() + (RANDOM_BYTES * 4).div_ceil(3);

/// A new token from the operating system's random source.
pub fn random_token() -> String {
    let mut bytes = [0u8; RANDOM_BYTES];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The value stored in `solobase.sessions.token_hash`.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Extracts the token from an `Authorization` header value. `None` when the header is not a
/// well-formed `Bearer sb_…` value.
pub fn parse_bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    let well_formed = token.len() == TOKEN_LEN
        && token.starts_with(PREFIX)
        && token[PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    well_formed.then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_parse() {
        let a = random_token();
        assert_ne!(a, random_token());
        assert_eq!(parse_bearer(&format!("Bearer {a}")), Some(a.as_str()));
        assert_eq!(parse_bearer(&format!("bearer  {a} ")), Some(a.as_str()));
        assert_eq!(token_hash(&a).len(), 32);
    }

    #[test]
    fn malformed_headers_are_rejected() {
        let a = random_token();
        for bad in [
            String::new(),
            "Bearer".into(),
            format!("Basic {a}"),
            format!("Bearer {}", &a[..10]),
            format!("Bearer {a}x"),
            format!("Bearer {}", a.replace("sb_", "xx_")),
            "Bearer sb_\u{e9}\u{e9}".into(),
        ] {
            assert_eq!(parse_bearer(&bad), None, "{bad:?}");
        }
    }
}
