//! `extension.toml`: the manifest every extension crate carries next to its `Cargo.toml`.
//!
//! ```toml
//! [extension]
//! format = 1                        # the manifest format's version (absent: 1)
//! name = "webhooks"                 # 1-32 chars: a-z, 0-9, '-', starting with a letter
//! version = "0.1.0"                 # semver; must equal the crate's version
//! description = "Signed, retried delivery of system events"
//! authors = ["Solobase"]
//! license = "MIT OR Apache-2.0"
//! repository = "https://example.com/solobase-webhooks"
//! tier = "official"                 # official, community or custom (absent: its folder's)
//! host = "^0.1"                     # the Solobase versions it runs on (semver range)
//! permissions = ["events.subscribe", "network.outbound"]
//!
//! [dependencies]                    # other extensions, with semver ranges
//! analytics = "^0.1"
//! ```
//!
//! `min_host_version = "0.1.0"` (the oldest Solobase it runs on) is the older spelling of
//! `host = ">=0.1.0"`; a manifest has one or the other. The published JSON Schema of the file
//! (`extensions/extension.schema.json`) is [`json_schema`], derived from the types below.
//!
//! One parser for everyone who reads a manifest: the host's build script (with the
//! `discovery` feature, which adds the build's rules in [`discovery`]), the SDK (which
//! re-exports this crate as `solobase_sdk::manifest`), the runtime and the developer tools.
//! It depends only on serde, toml, semver and schemars (and walkdir for discovery).

#[cfg(feature = "discovery")]
pub mod discovery;
pub mod migrations;

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
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

/// The newest manifest format this code reads.
pub const FORMAT: u32 = 1;

/// Who maintains an extension, which is also the folder it is installed in:
/// `extensions/<tier>/<name>/` — `official` (maintained with Solobase), `community` (shared
/// by others) or `custom` (your own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(inline)]
// The variants are described above: doc comments on them would make the schema a `oneOf`,
// whose errors say less than an `enum`'s.
#[allow(missing_docs)]
pub enum Tier {
    Official,
    Community,
    Custom,
}

impl Tier {
    /// The tier's name, which is also its folder under `extensions/`.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Official => "official",
            Tier::Community => "community",
            Tier::Custom => "custom",
        }
    }

    /// The tier named `raw`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "official" => Ok(Tier::Official),
            "community" => Ok(Tier::Community),
            "custom" => Ok(Tier::Custom),
            _ => Err(format!(
                "invalid tier {raw:?}: use official, community or custom"
            )),
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed, checked manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The manifest format's version ([`FORMAT`] or older).
    pub format: u32,
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
    /// Where its source is published (a URL).
    pub repository: Option<String>,
    /// Who maintains it, when the manifest says (else the folder it is in decides).
    pub tier: Option<Tier>,
    /// The Solobase versions it runs on.
    pub host: semver::VersionReq,
    /// The permissions it requests, sorted and without duplicates.
    pub permissions: Vec<Permission>,
    /// Other extensions this one needs, each with the versions it accepts.
    pub dependencies: BTreeMap<ExtensionName, semver::VersionReq>,
}

/// `extension.toml`, as written: the JSON Schema is derived from these types.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "Solobase extension manifest (extension.toml)",
    description = "The manifest every Solobase extension carries next to its Cargo.toml. \
                   Reference: extensions/README.md, section \"The manifest\"."
)]
struct RawManifest {
    /// What the extension is.
    extension: RawExtension,
    /// Other extensions this one needs: name = semver range of the versions it accepts,
    /// e.g. `analytics = "^0.1"`.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    dependencies: BTreeMap<String, String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Extension")]
struct RawExtension {
    /// The manifest format's version; absent means 1, the only one so far.
    #[schemars(range(min = 1, max = 1))]
    format: Option<u32>,
    /// 1-32 characters of a-z, 0-9 and single '-', starting with a letter; equal to the
    /// extension's folder name. It names the Cargo feature, the URL prefix /ext/<name>/ and
    /// the PostgreSQL schema ext_<name>.
    #[schemars(length(min = 1, max = 32), pattern(r"^[a-z]([a-z0-9]|-[a-z0-9])*$"))]
    name: String,
    /// The extension's version (semver), equal to its crate's version.
    #[schemars(pattern(r"^\d+\.\d+\.\d+"))]
    version: String,
    /// One line saying what it does.
    #[schemars(length(min = 1))]
    description: String,
    /// Who wrote it, e.g. "Ada <ada@example.com>".
    #[serde(default)]
    authors: Vec<String>,
    /// An SPDX licence expression, e.g. "MIT OR Apache-2.0".
    license: Option<String>,
    /// Where its source is published (a URL).
    repository: Option<String>,
    /// Who maintains it: official, community or custom (absent: the folder it is in decides).
    tier: Option<Tier>,
    /// The Solobase versions it runs on, as a semver range, e.g. "^0.1".
    host: Option<String>,
    /// The older spelling of host = ">=VERSION": the oldest Solobase it runs on. Give host or
    /// this, not both.
    min_host_version: Option<String>,
    /// The permissions it asks an administrator for: users.read, storage.read,
    /// storage.write, events.publish, events.subscribe, network.outbound.
    #[serde(default)]
    #[schemars(inner(pattern(r"^[a-z0-9_]+(\.[a-z0-9_]+)+$")))]
    permissions: Vec<String>,
}

/// The JSON Schema of `extension.toml` (as JSON, the TOML file's data model), derived from
/// the types the parser reads. It is published as `extensions/extension.schema.json`.
pub fn json_schema() -> schemars::Schema {
    schemars::schema_for!(RawManifest)
}

impl Manifest {
    /// Parses and checks manifest text; the error says what is wrong and where.
    pub fn parse(text: &str) -> Result<Self, String> {
        let raw: RawManifest = toml::from_str(text).map_err(|e| e.message().trim().to_owned())?;
        let e = raw.extension;
        let name = ExtensionName::parse(&e.name)?;
        let version = semver::Version::parse(&e.version)
            .map_err(|err| format!("extension.version {:?} is not semver: {err}", e.version))?;
        let format = e.format.unwrap_or(1);
        if format == 0 || format > FORMAT {
            return Err(format!(
                "extension.format {format} is not one this Solobase reads (1 to {FORMAT}): \
                 upgrade Solobase, or write the manifest in format {FORMAT}"
            ));
        }
        let host = match (&e.host, &e.min_host_version) {
            (Some(range), None) => semver::VersionReq::parse(range)
                .map_err(|err| format!("extension.host {range:?} is not a semver range: {err}"))?,
            (None, Some(min)) => {
                let min = semver::Version::parse(min).map_err(|err| {
                    format!("extension.min_host_version {min:?} is not semver: {err}")
                })?;
                semver::VersionReq {
                    comparators: vec![semver::Comparator {
                        op: semver::Op::GreaterEq,
                        major: min.major,
                        minor: Some(min.minor),
                        patch: Some(min.patch),
                        pre: min.pre,
                    }],
                }
            }
            (Some(_), Some(_)) => {
                return Err(
                    "extension has both host and min_host_version: keep host (a semver range \
                     such as \"^0.1\")"
                        .into(),
                );
            }
            (None, None) => {
                return Err(
                    "extension.host is missing: add the Solobase versions it runs on, e.g. \
                     host = \"^0.1\""
                        .into(),
                );
            }
        };
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
            format,
            name,
            version,
            description: e.description.trim().to_owned(),
            authors: e.authors,
            license: e.license,
            repository: e.repository,
            tier: e.tier,
            host,
            permissions,
            dependencies,
        })
    }
}

/// A JSON Pointer into a TOML file's value as its TOML key path, for messages:
/// `/endpoints/0/url` → ``key `endpoints[0].url` ``.
pub fn toml_key_path(pointer: &str) -> String {
    let mut out = String::new();
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&segment);
        }
    }
    if out.is_empty() {
        "(top level)".into()
    } else {
        format!("key `{out}`")
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
    fn host_ranges_format_and_tier() {
        let m = Manifest::parse(&GOOD.replace(
            "min_host_version = \"0.1.0\"",
            "format = 1\nhost = \"^0.2\"\ntier = \"community\"\nrepository = \"https://x\"",
        ))
        .unwrap();
        assert!(m.host.matches(&semver::Version::new(0, 2, 5)));
        assert!(!m.host.matches(&semver::Version::new(0, 3, 0)));
        assert_eq!(m.tier, Some(Tier::Community));
        assert_eq!(m.repository.as_deref(), Some("https://x"));
        // The older spelling: the oldest host.
        let legacy = Manifest::parse(GOOD).unwrap();
        assert_eq!(legacy.format, 1);
        assert!(legacy.host.matches(&semver::Version::new(0, 1, 0)));
        assert!(legacy.host.matches(&semver::Version::new(3, 0, 0)));
        assert!(!legacy.host.matches(&semver::Version::new(0, 0, 9)));
        for (text, expect) in [
            (
                GOOD.replace("min_host_version", "format = 2\nmin_host_version"),
                "format 2",
            ),
            (
                GOOD.replace("min_host_version", "host = \"^0.1\"\nmin_host_version"),
                "both",
            ),
            (
                GOOD.replace("min_host_version = \"0.1.0\"", ""),
                "host is missing",
            ),
            (
                GOOD.replace("min_host_version = \"0.1.0\"", "host = \"soon\""),
                "semver range",
            ),
            (
                GOOD.replace("min_host_version", "tier = \"gold\"\nmin_host_version"),
                "gold",
            ),
        ] {
            let err = Manifest::parse(&text).expect_err(&text);
            assert!(err.contains(expect), "{err}");
        }
    }

    /// The published schema, `extensions/extension.schema.json`, is the one derived here.
    /// `UPDATE_SCHEMA=1 cargo test -p solobase-manifest` rewrites it.
    #[test]
    fn the_published_json_schema_is_current() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../extension.schema.json");
        let mut generated = serde_json::to_string_pretty(&json_schema()).unwrap();
        generated.push('\n');
        if std::env::var_os("UPDATE_SCHEMA").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let published = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            published == generated,
            "{} is not the schema derived from solobase-manifest: run UPDATE_SCHEMA=1 cargo test \
             -p solobase-manifest, and commit it",
            path.display()
        );
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
