//! Bearer tokens: `auth::token::parse_bearer` on hostile `Authorization` headers, and the
//! hash the session lookup uses. Only a well-formed `Bearer sb_…` token is accepted, and it is
//! the very text of the header; a token as the server issues it always parses back.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use solobase::auth::token::{parse_bearer, token_hash};

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = std::str::from_utf8(data) {
        if let Some(token) = parse_bearer(header) {
            assert!(header.contains(token));
            assert_eq!(token.len(), 46, "{token:?}");
            assert!(token.starts_with("sb_"));
            assert!(
                token[3..]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{token:?}"
            );
            let (scheme, _) = header.trim().split_once(' ').expect("a scheme and a token");
            assert!(scheme.eq_ignore_ascii_case("bearer"), "{scheme:?}");
            assert_eq!(token_hash(token).len(), 32);
        }
    }
    // A token made as `random_token` makes it, from 32 fuzzed bytes.
    if data.len() >= 32 {
        let token = format!("sb_{}", URL_SAFE_NO_PAD.encode(&data[..32]));
        let scheme = ["Bearer", "bearer", "BEARER", "bEaReR"][usize::from(data[0] % 4)];
        let header = format!("{scheme} {token}");
        assert_eq!(parse_bearer(&header), Some(token.as_str()));
        assert_eq!(
            parse_bearer(&format!("  {scheme}   {token}\t ")),
            Some(token.as_str())
        );
        assert_eq!(parse_bearer(&format!("{header}x")), None);
        assert_eq!(parse_bearer(&format!("Basic {token}")), None);
        assert_ne!(token_hash(&token), token_hash(&format!("{token}x")));
    }
});
