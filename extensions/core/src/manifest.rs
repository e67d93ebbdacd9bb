//! `extension.toml`: the manifest every extension crate carries next to its `Cargo.toml`.
//!
//! ```toml
//! [extension]
//! name = "webhooks"                 # 1-32 chars: a-z, 0-9, '-', starting with a letter
//! version = "0.1.0"                 # semver; must equal the crate's version
//! description = "Signed, retried delivery of system events"
//! authors = ["Solobase"]
//! license = "MIT OR Apache-2.0"
//! min_host_version = "0.1.0"        # oldest Solobase it runs on
//! permissions = ["events.subscribe", "network.outbound"]
//!
//! [dependencies]                    # other extensions, with semver ranges
//! analytics = "^0.1"
//! ```
//!
//! This file depends only on std, serde, toml and semver, because the host's build script
//! includes it verbatim to check manifests at compile time.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

/// An extension's name: 1–32 characters of `a-z`, `0-9` and `-`, starting with a letter and
/// not ending with `-`. It names the Cargo feature, the URL prefix `/ext/<name>/` and — with
/// `-` turned into `_` — the PostgreSQL schema `ext_<name>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExtensionName(String);

impl ExtensionName {
    /// Parses a name, or says what is wrong with it.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let valid = (1..=32).contains(&raw.len())
            && raw.starts_with(|c: char| c.is_ascii_lowercase())
            && !raw.ends_with('-')
            && !raw.contains("--")
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(format!(
                "invalid extension name {raw:?}: use 1-32 characters of a-z, 0-9 and single '-', \
                 starting with a letter"
            ))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The PostgreSQL schema (and role) of the extension: `ext_<name>` with `-` as `_`.
    pub fn schema(&self) -> String {
        format!("ext_{}", self.0.replace('-', "_"))
    }

    /// The environment variable Cargo sets when the extension's feature is on.
    pub fn cargo_feature_env(&self) -> String {
        format!(
            "CARGO_FEATURE_{}",
            self.0.to_ascii_uppercase().replace('-', "_")
        )
    }
}

impl fmt::Display for ExtensionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A capability an extension asks for, such as `storage.write`: dotted lowercase words.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Permission(String);

impl Permission {
    /// Parses a permission, or says what is wrong with it.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let valid = (3..=64).contains(&raw.len())
            && raw.contains('.')
            && raw.split('.').all(|w| {
                !w.is_empty()
                    && w.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            });
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(format!(
                "invalid permission {raw:?}: use dotted lowercase words such as storage.write"
            ))
        }
    }

    /// The permission as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A parsed, checked manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The extension's name.
    pub name: ExtensionName,
    /// Its version (equal to its crate's).
    pub version: semver::Version,
    /// One line saying what it does.
    pub description: String,
    /// Who wrote it.
    pub authors: Vec<String>,
    /// An SPDX licence expression.
    pub license: Option<String>,
    /// The oldest Solobase version it runs on.
    pub min_host_version: semver::Version,
    /// The permissions it requests, sorted and without duplicates.
    pub permissions: Vec<Permission>,
    /// Other extensions this one needs, each with the versions it accepts.
    pub dependencies: BTreeMap<ExtensionName, semver::VersionReq>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    extension: RawExtension,
    #[serde(default)]
    dependencies: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExtension {
    name: String,
    version: String,
    description: String,
    #[serde(default)]
    authors: Vec<String>,
    license: Option<String>,
    min_host_version: String,
    #[serde(default)]
    permissions: Vec<String>,
}

impl Manifest {
    /// Parses and checks manifest text; the error says what is wrong and where.
    pub fn parse(text: &str) -> Result<Self, String> {
        let raw: RawManifest = toml::from_str(text).map_err(|e| e.message().trim().to_owned())?;
        let e = raw.extension;
        let name = ExtensionName::parse(&e.name)?;
        let version = semver::Version::parse(&e.version)
            .map_err(|err| format!("extension.version {:?} is not semver: {err}", e.version))?;
        let min_host_version = semver::Version::parse(&e.min_host_version).map_err(|err| {
            format!(
                "extension.min_host_version {:?} is not semver: {err}",
                e.min_host_version
            )
        })?;
        if e.description.trim().is_empty() {
            return Err("extension.description is empty: say in one line what it does".into());
        }
        let mut permissions = e
            .permissions
            .iter()
            .map(|p| Permission::parse(p))
            .collect::<Result<Vec<_>, _>>()?;
        permissions.sort();
        permissions.dedup();
        let mut dependencies = BTreeMap::new();
        for (dep, range) in raw.dependencies {
            let dep_name =
                ExtensionName::parse(&dep).map_err(|err| format!("[dependencies]: {err}"))?;
            if dep_name == name {
                return Err(format!("extension {name} depends on itself"));
            }
            let req = semver::VersionReq::parse(&range).map_err(|err| {
                format!("[dependencies] {dep} = {range:?} is not a semver range: {err}")
            })?;
            dependencies.insert(dep_name, req);
        }
        Ok(Self {
            name,
            version,
            description: e.description.trim().to_owned(),
            authors: e.authors,
            license: e.license,
            min_host_version,
            permissions,
            dependencies,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[extension]
name = "web-hooks"
version = "1.2.3"
description = "x"
min_host_version = "0.1.0"
permissions = ["storage.write", "events.publish", "storage.write"]

[dependencies]
analytics = "^0.1"
"#;

    #[test]
    fn parses_a_good_manifest() {
        let m = Manifest::parse(GOOD).expect("parses");
        assert_eq!(m.name.as_str(), "web-hooks");
        assert_eq!(m.name.schema(), "ext_web_hooks");
        assert_eq!(m.name.cargo_feature_env(), "CARGO_FEATURE_WEB_HOOKS");
        assert_eq!(m.permissions.len(), 2);
        assert!(
            m.dependencies
                .contains_key(&ExtensionName::parse("analytics").unwrap())
        );
    }

    #[test]
    fn rejects_bad_manifests_with_a_reason() {
        for (text, expect) in [
            (GOOD.replace("web-hooks", "Web"), "invalid extension name"),
            (GOOD.replace("1.2.3", "one"), "not semver"),
            (GOOD.replace("^0.1", "nonsense!"), "not a semver range"),
            (GOOD.replace("analytics", "web-hooks"), "depends on itself"),
            (
                GOOD.replace("storage.write\",", "Storage\","),
                "invalid permission",
            ),
            (GOOD.replace("description", "descr"), "descr"),
            ("not toml [".to_owned(), ""),
        ] {
            let err = Manifest::parse(&text).expect_err(&text);
            assert!(err.contains(expect), "{err}");
        }
    }

    #[test]
    fn names() {
        for ok in ["a", "analytics", "web-hooks", "x1"] {
            assert!(ExtensionName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1a",
            "-a",
            "a-",
            "a--b",
            "A",
            "a_b",
            "a.b",
            &"a".repeat(33),
        ] {
            assert!(ExtensionName::parse(bad).is_err(), "{bad}");
        }
    }
}
