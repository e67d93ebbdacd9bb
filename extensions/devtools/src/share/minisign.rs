//! Ed25519 keys and signatures in minisign's formats, so that packages can be signed and
//! checked with the `minisign` tool as well as with Solobase.
//!
//! - Public key: `base64("Ed" ‖ key id (8 bytes) ‖ public key (32))`, in a file after an
//!   `untrusted comment:` line.
//! - Secret key: minisign's unencrypted secret key (what `minisign -G -W` writes):
//!   `base64("Ed" ‖ "\0\0" (no KDF) ‖ "B2" ‖ salt (32) ‖ opslimit (8) ‖ memlimit (8) ‖
//!   key id ‖ seed ‖ public key ‖ BLAKE2b-256("Ed" ‖ key id ‖ seed ‖ public key))`.
//! - Signature (`.minisig`): an untrusted comment; `base64("ED" ‖ key id ‖ signature of
//!   BLAKE2b-512(file))`; `trusted comment: …`; `base64(signature of (signature ‖ trusted
//!   comment))`. Legacy `Ed` signatures (of the file itself) are accepted too.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use blake2::digest::consts::U32;
use blake2::{Blake2b, Blake2b512, Digest};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

/// A key's 8-byte id, shown as minisign shows it (hex of the little-endian number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyId([u8; 8]);

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016X}", u64::from_le_bytes(self.0))
    }
}

/// A public key that verifies signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub id: KeyId,
    key: VerifyingKey,
}

/// A secret key that signs. Its `Debug` shows the key id only.
pub struct SecretKey {
    pub id: KeyId,
    key: SigningKey,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", self.id)
    }
}

/// A parsed `.minisig` file.
#[derive(Debug, Clone)]
pub struct SignatureFile {
    /// `true` for `ED` (the signature covers BLAKE2b-512 of the file).
    prehashed: bool,
    pub key_id: KeyId,
    signature: Signature,
    /// The text after `trusted comment: `, authenticated by `global`.
    pub trusted_comment: String,
    global: Signature,
}

const UNTRUSTED: &str = "untrusted comment: ";
const TRUSTED: &str = "trusted comment: ";

fn decode(what: &str, text: &str) -> Result<Vec<u8>, String> {
    STANDARD
        .decode(text.trim())
        .map_err(|e| format!("the {what} is not base64 ({e})"))
}

/// The payload line of a minisign file: the first line that is not a comment.
fn payload_line(text: &str) -> Option<&str> {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with(UNTRUSTED.trim_end()))
}

impl PublicKey {
    /// Parses a public key: the base64 line alone, or a `.pub` file with its comment.
    pub fn parse(text: &str) -> Result<Self, String> {
        let line = payload_line(text).ok_or("the public key is empty")?;
        let bytes = decode("public key", line)?;
        if bytes.len() != 42 || &bytes[..2] != b"Ed" {
            return Err(
                "not a minisign public key (expected base64 of 42 bytes starting with \"Ed\", \
                 as `solobase extensions keygen` or `minisign -G` print)"
                    .into(),
            );
        }
        let id = KeyId(bytes[2..10].try_into().map_err(|_| "short key id")?);
        let raw: [u8; 32] = bytes[10..].try_into().map_err(|_| "short key")?;
        let key = VerifyingKey::from_bytes(&raw).map_err(|e| format!("invalid public key: {e}"))?;
        Ok(Self { id, key })
    }

    /// The base64 line (what goes in `trusted_keys`).
    pub fn to_base64(&self) -> String {
        let mut bytes = b"Ed".to_vec();
        bytes.extend_from_slice(&self.id.0);
        bytes.extend_from_slice(self.key.as_bytes());
        STANDARD.encode(bytes)
    }

    /// The `.pub` file minisign reads.
    pub fn to_file(&self) -> String {
        format!(
            "{UNTRUSTED}minisign public key {}\n{}\n",
            self.id,
            self.to_base64()
        )
    }

    /// Checks `sig` over `data`: the key id, the signature, then the trusted comment's.
    pub fn verify(&self, data: &[u8], sig: &SignatureFile) -> Result<(), String> {
        if sig.key_id != self.id {
            return Err(format!(
                "it was signed by key {}, not by key {}",
                sig.key_id, self.id
            ));
        }
        let checked = if sig.prehashed {
            self.key.verify(&Blake2b512::digest(data), &sig.signature)
        } else {
            self.key.verify(data, &sig.signature)
        };
        checked.map_err(|_| {
            "the signature does not match the file: it was changed after it was signed".to_owned()
        })?;
        let mut global = sig.signature.to_bytes().to_vec();
        global.extend_from_slice(sig.trusted_comment.as_bytes());
        self.key
            .verify(&global, &sig.global)
            .map_err(|_| "the trusted comment was changed after it was signed".to_owned())
    }
}

impl SecretKey {
    /// A new random key.
    pub fn generate() -> Result<Self, String> {
        let mut seed = [0u8; 32];
        let mut id = [0u8; 8];
        getrandom::fill(&mut seed)
            .and_then(|()| getrandom::fill(&mut id))
            .map_err(|e| format!("the system's random source failed: {e}"))?;
        Ok(Self {
            id: KeyId(id),
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Its public key.
    pub fn public(&self) -> PublicKey {
        PublicKey {
            id: self.id,
            key: self.key.verifying_key(),
        }
    }

    fn checksum(&self) -> [u8; 32] {
        let mut h = Blake2b::<U32>::new();
        h.update(b"Ed");
        h.update(self.id.0);
        h.update(self.key.to_bytes());
        h.update(self.key.verifying_key().as_bytes());
        h.finalize().into()
    }

    /// The secret key file (minisign's unencrypted format).
    pub fn to_file(&self) -> String {
        let mut bytes = Vec::with_capacity(158);
        bytes.extend_from_slice(b"Ed\0\0B2");
        bytes.extend_from_slice(&[0u8; 32 + 8 + 8]);
        bytes.extend_from_slice(&self.id.0);
        bytes.extend_from_slice(&self.key.to_bytes());
        bytes.extend_from_slice(self.key.verifying_key().as_bytes());
        bytes.extend_from_slice(&self.checksum());
        format!(
            "{UNTRUSTED}minisign secret key {} (unencrypted)\n{}\n",
            self.id,
            STANDARD.encode(bytes)
        )
    }

    /// Reads a secret key file; an encrypted one is refused (decrypt it with minisign first).
    pub fn parse(text: &str) -> Result<Self, String> {
        let line = payload_line(text).ok_or("the secret key file is empty")?;
        let bytes = decode("secret key", line)?;
        if bytes.len() != 158 || &bytes[..2] != b"Ed" || &bytes[4..6] != b"B2" {
            return Err("not a minisign secret key file".into());
        }
        if &bytes[2..4] != b"\0\0" {
            return Err(
                "the secret key is encrypted with a password, which Solobase does not read: \
                 make an unencrypted key with `solobase extensions keygen` (or `minisign -G -W`)"
                    .into(),
            );
        }
        let id = KeyId(bytes[54..62].try_into().map_err(|_| "short key id")?);
        let seed: [u8; 32] = bytes[62..94].try_into().map_err(|_| "short key")?;
        let key = Self {
            id,
            key: SigningKey::from_bytes(&seed),
        };
        // minisign leaves the checksum of an unencrypted key (`-W`) zero; the public half
        // stored with the seed still has to match it.
        let checksum = &bytes[126..158];
        if key.key.verifying_key().as_bytes()[..] != bytes[94..126]
            || (key.checksum()[..] != *checksum && checksum.iter().any(|&b| b != 0))
        {
            return Err("the secret key file is damaged (its checksum does not match)".into());
        }
        Ok(key)
    }

    /// Signs `data` (prehashed, `ED`) with `trusted_comment` (one line).
    pub fn sign(&self, data: &[u8], trusted_comment: &str) -> String {
        let trusted_comment = trusted_comment.replace(['\n', '\r'], " ");
        let signature = self.key.sign(&Blake2b512::digest(data));
        let mut global_input = signature.to_bytes().to_vec();
        global_input.extend_from_slice(trusted_comment.as_bytes());
        let global = self.key.sign(&global_input);
        let mut line = b"ED".to_vec();
        line.extend_from_slice(&self.id.0);
        line.extend_from_slice(&signature.to_bytes());
        format!(
            "{UNTRUSTED}signature from solobase secret key {}\n{}\n{TRUSTED}{trusted_comment}\n{}\n",
            self.id,
            STANDARD.encode(line),
            STANDARD.encode(global.to_bytes())
        )
    }
}

impl SignatureFile {
    /// Parses a `.minisig` file.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut lines = text.lines();
        let bad = || "not a minisign signature file (.minisig)".to_owned();
        let first = lines.next().ok_or_else(bad)?;
        if !first.starts_with(UNTRUSTED) {
            return Err(bad());
        }
        let sig = decode("signature", lines.next().ok_or_else(bad)?)?;
        let trusted = lines
            .next()
            .and_then(|l| l.strip_prefix(TRUSTED))
            .ok_or_else(bad)?;
        let global = decode("trusted comment's signature", lines.next().ok_or_else(bad)?)?;
        if sig.len() != 74 || global.len() != 64 {
            return Err(bad());
        }
        let prehashed = match &sig[..2] {
            b"ED" => true,
            b"Ed" => false,
            _ => return Err("unknown signature algorithm (expected ED or Ed)".into()),
        };
        let to_sig = |b: &[u8]| Signature::from_slice(b).map_err(|_| bad());
        Ok(Self {
            prehashed,
            key_id: KeyId(sig[2..10].try_into().map_err(|_| bad())?),
            signature: to_sig(&sig[10..])?,
            trusted_comment: trusted.to_owned(),
            global: to_sig(&global)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_and_round_trips_keys() {
        let key = SecretKey::generate().unwrap();
        let again = SecretKey::parse(&key.to_file()).unwrap();
        assert_eq!(again.public(), key.public());
        let public = PublicKey::parse(&key.public().to_file()).unwrap();
        assert_eq!(PublicKey::parse(&public.to_base64()).unwrap(), public);
        let sig = SignatureFile::parse(&key.sign(b"hello", "name@1")).unwrap();
        assert_eq!(sig.trusted_comment, "name@1");
        public.verify(b"hello", &sig).unwrap();
        assert!(
            public
                .verify(b"hellO", &sig)
                .unwrap_err()
                .contains("changed")
        );
        let other = SecretKey::generate().unwrap().public();
        assert!(
            other
                .verify(b"hello", &sig)
                .unwrap_err()
                .contains("signed by key")
        );
        // A forged trusted comment is caught.
        let text = key.sign(b"hello", "name@1").replace("name@1", "name@2");
        let forged = SignatureFile::parse(&text).unwrap();
        assert!(
            public
                .verify(b"hello", &forged)
                .unwrap_err()
                .contains("trusted comment")
        );
    }

    #[test]
    fn a_damaged_secret_key_is_refused() {
        let key = SecretKey::generate().unwrap();
        let file = key.to_file();
        let line = file.lines().nth(1).unwrap();
        let mut bytes = STANDARD.decode(line).unwrap();
        bytes[100] ^= 1;
        let damaged = STANDARD.encode(bytes);
        assert!(SecretKey::parse(&damaged).unwrap_err().contains("damaged"));
    }
}
