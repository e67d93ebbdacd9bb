//! Standard Webhooks signatures (`solobase_sdk::webhooks`): hostile `webhook-id`,
//! `webhook-timestamp` and `webhook-signature` headers, secrets and clocks. A signature not
//! made with the secret never verifies; what `sign` makes, `verify` and `verify_headers`
//! accept; a secret written out parses back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use solobase_sdk::webhooks::{
    DEFAULT_TOLERANCE_SECS, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, Secret, VerifyError,
    sign, verify, verify_headers,
};

fuzz_target!(|data: &[u8]| {
    // key (24..=64 bytes, its length from the first byte) · now (8 bytes) · then text fields
    // separated by NUL: secret text, id, timestamp, signature header; the rest is the body.
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let key_len = 24 + usize::from(n) % 41;
    if rest.len() < key_len + 8 {
        return;
    }
    let (key, rest) = rest.split_at(key_len);
    let (now, rest) = rest.split_at(8);
    let now = i64::from_le_bytes(now.try_into().expect("8 bytes"));
    let mut fields = rest.splitn(5, |&b| b == 0);
    let mut text = || String::from_utf8_lossy(fields.next().unwrap_or_default()).into_owned();
    let (secret_text, id, timestamp, signatures) = (text(), text(), text(), text());
    let body = fields.next().unwrap_or_default();

    let secret = Secret::from_bytes(key).expect("24 to 64 bytes make a secret");
    // Secrets as text: whatever parses writes out as itself.
    if let Ok(parsed) = secret_text.parse::<Secret>() {
        assert!((24..=64).contains(&parsed.as_bytes().len()));
        assert_eq!(parsed.to_string().parse::<Secret>().as_ref(), Ok(&parsed));
    }
    assert_eq!(secret.to_string().parse::<Secret>().as_ref(), Ok(&secret));

    // Hostile headers: only the real signature verifies.
    let outcome = verify(&secret, &id, &timestamp, &signatures, body, now);
    if outcome.is_ok() {
        let ts: i64 = timestamp
            .trim()
            .parse()
            .expect("a verified timestamp is a number");
        let expected = sign(&secret, &id, ts, body);
        assert!(
            signatures.split(' ').any(|s| s == expected),
            "{signatures:?} verified without the signature {expected}"
        );
        assert!(now.abs_diff(ts) <= DEFAULT_TOLERANCE_SECS as u64);
    }

    // Round trip: sign with the fuzzed id, body and a timestamp near `now`.
    let ts = now.saturating_sub(i64::from(n) - 128);
    let signature = sign(&secret, &id, ts, body);
    verify(&secret, &id, &ts.to_string(), &signature, body, now)
        .expect("a fresh signature verifies");
    let header = format!("{signatures} {signature}");
    verify(&secret, &id, &ts.to_string(), &header, body, now)
        .expect("a fresh signature among others verifies");
    // Another secret never verifies it.
    let mut other = key.to_vec();
    other[0] ^= 1;
    let other = Secret::from_bytes(&other).expect("same length");
    assert_eq!(
        verify(&other, &id, &ts.to_string(), &signature, body, now),
        Err(VerifyError::NoMatchingSignature)
    );
    // Through a header map, when the id is a valid header value.
    if let Ok(id_value) = http::HeaderValue::from_str(&id) {
        let mut headers = http::HeaderMap::new();
        headers.insert(HEADER_ID, id_value);
        headers.insert(HEADER_TIMESTAMP, ts.into());
        headers.insert(
            HEADER_SIGNATURE,
            http::HeaderValue::from_str(&signature).expect("base64 is a header value"),
        );
        verify_headers(&secret, &headers, body, now).expect("the headers verify");
    }
});
