//! Signing and verifying webhooks by the [Standard Webhooks] specification, for senders (the
//! `webhooks` extension) and for receivers (anyone consuming Solobase's deliveries).
//!
//! A message is signed with HMAC-SHA256 over `"{webhook-id}.{webhook-timestamp}.{body}"`
//! with the endpoint's secret (`whsec_<base64 key>`); the `webhook-signature` header carries
//! one or more space-separated `v1,<base64 signature>` entries (several while a secret is being
//! rotated). A receiver checks that one of them matches and that the timestamp is recent.
//!
//! ```
//! use solobase_sdk::webhooks::{Secret, sign, verify};
//!
//! let secret: Secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap();
//! let body = br#"{"type":"user.created","timestamp":"2024-01-01T00:00:00Z","data":{}}"#;
//! let signature = sign(&secret, "msg_1", 1_700_000_000, body);
//! verify(&secret, "msg_1", "1700000000", &signature, body, 1_700_000_010).unwrap();
//! ```
//!
//! [Standard Webhooks]: https://www.standardwebhooks.com

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// How far a timestamp may be from the receiver's clock, as the specification recommends.
pub const DEFAULT_TOLERANCE_SECS: i64 = 5 * 60;

/// The header names of the specification.
pub const HEADER_ID: &str = "webhook-id";
/// Seconds since the Unix epoch, as a decimal string.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// Space-separated `v1,<base64>` signatures.
pub const HEADER_SIGNATURE: &str = "webhook-signature";

const PREFIX: &str = "whsec_";

/// An endpoint's signing key. Displayed (and parsed) as `whsec_<base64>`; the prefix is
/// optional when parsing. Its `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// A secret from raw key bytes: 24 to 64 of them, as the specification requires.
    pub fn from_bytes(key: &[u8]) -> Result<Self, VerifyError> {
        if (24..=64).contains(&key.len()) {
            Ok(Self(key.to_vec()))
        } else {
            Err(VerifyError::InvalidSecret)
        }
    }

    /// The raw key.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl FromStr for Secret {
    type Err = VerifyError;

    fn from_str(s: &str) -> Result<Self, VerifyError> {
        let encoded = s.strip_prefix(PREFIX).unwrap_or(s);
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| VerifyError::InvalidSecret)?;
        Self::from_bytes(&key)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", STANDARD.encode(&self.0))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The secret is not `whsec_` followed by base64 of a 24- to 64-byte key.
    #[error("the secret is not a whsec_ secret of 24 to 64 bytes in base64")]
    InvalidSecret,
    /// A header is absent.
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    /// The timestamp is not a number of seconds.
    #[error("the webhook-timestamp header is not a number of seconds")]
    InvalidTimestamp,
    /// The timestamp is further from now than the tolerance (a replay, or a skewed clock).
    #[error("the webhook-timestamp is outside the tolerance (replayed, or a clock is wrong)")]
    TimestampOutOfTolerance,
    /// No `v1` signature matches.
    #[error("no signature matches: the body, id or timestamp changed, or the secret differs")]
    NoMatchingSignature,
}

fn mac(secret: &Secret, msg_id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // A key of any length is accepted by HMAC.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The signature of one message with one secret: `v1,<base64>`.
pub fn sign(secret: &Secret, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = mac(secret, msg_id, timestamp, body).finalize().into_bytes();
    format!("v1,{}", STANDARD.encode(tag))
}

/// Verifies a message as a receiver: `signatures` is the `webhook-signature` header (one or
/// more space-separated entries; entries of other versions are ignored), `timestamp` the
/// `webhook-timestamp` header, `now` the receiver's clock in Unix seconds. The comparison is
/// constant-time. Uses [`DEFAULT_TOLERANCE_SECS`].
pub fn verify(
    secret: &Secret,
    msg_id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now: i64,
) -> Result<(), VerifyError> {
    verify_with_tolerance(
        secret,
        msg_id,
        timestamp,
        signatures,
        body,
        now,
        DEFAULT_TOLERANCE_SECS,
    )
}

/// [`verify`] with a chosen tolerance, in seconds.
pub fn verify_with_tolerance(
    secret: &Secret,
    msg_id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::InvalidTimestamp)?;
    // `abs_diff`: a hostile timestamp (i64::MIN …) must not overflow the subtraction.
    if now.abs_diff(ts) > tolerance_secs.unsigned_abs() {
        return Err(VerifyError::TimestampOutOfTolerance);
    }
    let expected = mac(secret, msg_id, ts, body);
    let matched = signatures
        .split(' ')
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == "v1")
        .filter_map(|(_, sig)| STANDARD.decode(sig).ok())
        .any(|sig| expected.clone().verify_slice(&sig).is_ok());
    if matched {
        Ok(())
    } else {
        Err(VerifyError::NoMatchingSignature)
    }
}

/// [`verify`] reading the three headers from a request's header map. A header's bytes are
/// read as UTF-8 (a message id may hold more than ASCII; bytes that are not UTF-8 cannot match
/// a signature, and are reported so).
pub fn verify_headers(
    secret: &Secret,
    headers: &http::HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(), VerifyError> {
    let header = |name: &'static str| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()))
            .ok_or(VerifyError::MissingHeader(name))
    };
    verify(
        secret,
        &header(HEADER_ID)?,
        &header(HEADER_TIMESTAMP)?,
        &header(HEADER_SIGNATURE)?,
        body,
        now,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `webhook_signature` fuzz target: an id that is UTF-8 but not ASCII is a
    /// valid header value, and was reported as a missing header.
    #[test]
    fn a_header_id_beyond_ascii_verifies() {
        let secret: Secret = SECRET.parse().unwrap();
        let id = "msg_é\u{0080}ü";
        let mut headers = http::HeaderMap::new();
        headers.insert(HEADER_ID, http::HeaderValue::from_str(id).unwrap());
        headers.insert(HEADER_TIMESTAMP, TIMESTAMP.into());
        let signature = sign(&secret, id, TIMESTAMP, PAYLOAD);
        headers.insert(HEADER_SIGNATURE, signature.parse().unwrap());
        assert_eq!(
            verify_headers(&secret, &headers, PAYLOAD, TIMESTAMP),
            Ok(())
        );
        // Bytes that are not UTF-8 cannot be the id a signature was made over.
        headers.insert(
            HEADER_ID,
            http::HeaderValue::from_bytes(b"msg_\xff").unwrap(),
        );
        assert_eq!(
            verify_headers(&secret, &headers, PAYLOAD, TIMESTAMP),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    // The specification's published test vector: standard-webhooks/standard-webhooks,
    // libraries/python/tests/test_webhooks.py (`test_sign_function`, and DEFAULT_MSG_ID,
    // DEFAULT_PAYLOAD, DEFAULT_SECRET); the JavaScript, Go and Rust libraries test the same values.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const MSG_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1_614_265_330;
    const PAYLOAD: &[u8] = br#"{"test": 2432232314}"#;
    const EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    // A wrong signature from the same test file (`test_invalid_signature_raises_error`).
    const WRONG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=";
    // Foreign entries from `test_multi_sig_payload_is_valid`.
    const OTHERS: [&str; 2] = [
        "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
        "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
    ];

    fn secret() -> Secret {
        SECRET.parse().unwrap()
    }

    #[test]
    fn signs_the_specifications_test_vector() {
        assert_eq!(sign(&secret(), MSG_ID, TIMESTAMP, PAYLOAD), EXPECTED);
        // The prefix is optional.
        let bare: Secret = SECRET.strip_prefix("whsec_").unwrap().parse().unwrap();
        assert_eq!(sign(&bare, MSG_ID, TIMESTAMP, PAYLOAD), EXPECTED);
        assert_eq!(secret().to_string(), SECRET);
    }

    #[test]
    fn verifies_the_test_vector_and_refuses_changes() {
        let ts = TIMESTAMP.to_string();
        verify(&secret(), MSG_ID, &ts, EXPECTED, PAYLOAD, TIMESTAMP).unwrap();
        let no = Err(VerifyError::NoMatchingSignature);
        assert_eq!(
            verify(&secret(), MSG_ID, &ts, WRONG, PAYLOAD, TIMESTAMP),
            no
        );
        assert_eq!(
            verify(&secret(), "msg_other", &ts, EXPECTED, PAYLOAD, TIMESTAMP),
            no
        );
        let tampered = br#"{"test": 2432232315}"#;
        assert_eq!(
            verify(&secret(), MSG_ID, &ts, EXPECTED, tampered, TIMESTAMP),
            no
        );
        let other: Secret = "whsec_c2VjcmV0LW9mLWEtcm90YXRlZC1lbmRwb2ludA=="
            .parse()
            .unwrap();
        assert_eq!(
            verify(&other, MSG_ID, &ts, EXPECTED, PAYLOAD, TIMESTAMP),
            no
        );
        assert_eq!(verify(&secret(), MSG_ID, &ts, "", PAYLOAD, TIMESTAMP), no);
        assert_eq!(
            verify(&secret(), MSG_ID, &ts, "v1,!!!", PAYLOAD, TIMESTAMP),
            no
        );
    }

    #[test]
    fn any_of_several_signatures_may_match() {
        let ts = TIMESTAMP.to_string();
        let header = [OTHERS[0], OTHERS[1], EXPECTED, OTHERS[0]].join(" ");
        verify(&secret(), MSG_ID, &ts, &header, PAYLOAD, TIMESTAMP).unwrap();
        // A v2 entry with the right bytes is not a v1 signature.
        let v2 = EXPECTED.replacen("v1,", "v2,", 1);
        assert_eq!(
            verify(&secret(), MSG_ID, &ts, &v2, PAYLOAD, TIMESTAMP),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn timestamps_outside_the_tolerance_are_refused() {
        let ts = TIMESTAMP.to_string();
        let tol = DEFAULT_TOLERANCE_SECS;
        for now in [TIMESTAMP + tol, TIMESTAMP - tol] {
            verify(&secret(), MSG_ID, &ts, EXPECTED, PAYLOAD, now).unwrap();
        }
        for now in [TIMESTAMP + tol + 1, TIMESTAMP - tol - 1] {
            assert_eq!(
                verify(&secret(), MSG_ID, &ts, EXPECTED, PAYLOAD, now),
                Err(VerifyError::TimestampOutOfTolerance)
            );
        }
        assert_eq!(
            verify(&secret(), MSG_ID, "hello", EXPECTED, PAYLOAD, TIMESTAMP),
            Err(VerifyError::InvalidTimestamp)
        );
    }

    /// Found by the `webhook_signature` fuzz target (its seed `min-timestamp`): `now - ts`
    /// overflowed — a panic with overflow checks, a wrapped difference without.
    #[test]
    fn extreme_timestamps_are_out_of_tolerance_not_a_panic() {
        for (ts, now) in [
            ("-9223372036854775808", TIMESTAMP),
            ("9223372036854775807", -1),
            ("-9223372036854775808", i64::MAX),
        ] {
            assert_eq!(
                verify(&secret(), MSG_ID, ts, EXPECTED, PAYLOAD, now),
                Err(VerifyError::TimestampOutOfTolerance),
                "{ts} at {now}"
            );
        }
    }

    #[test]
    fn headers_are_read_and_missing_ones_named() {
        let mut headers = http::HeaderMap::new();
        headers.insert(HEADER_ID, MSG_ID.parse().unwrap());
        headers.insert(HEADER_TIMESTAMP, TIMESTAMP.to_string().parse().unwrap());
        headers.insert(HEADER_SIGNATURE, EXPECTED.parse().unwrap());
        verify_headers(&secret(), &headers, PAYLOAD, TIMESTAMP).unwrap();
        for name in [HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE] {
            let mut h = headers.clone();
            h.remove(name);
            assert_eq!(
                verify_headers(&secret(), &h, PAYLOAD, TIMESTAMP),
                Err(VerifyError::MissingHeader(name))
            );
        }
    }

    #[test]
    fn malformed_secrets_are_refused_and_never_shown() {
        for bad in ["", "whsec_", "whsec_not base64!", "whsec_c2hvcnQ="] {
            assert_eq!(
                bad.parse::<Secret>(),
                Err(VerifyError::InvalidSecret),
                "{bad}"
            );
        }
        assert!(Secret::from_bytes(&[0; 65]).is_err());
        assert_eq!(format!("{:?}", secret()), "Secret(redacted)");
    }
}
