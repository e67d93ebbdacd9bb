//! A registry: a static `index.json` with the packages and signatures next to it, in a
//! directory (or `file://` URL) or served over `http://`. Nothing runs on the server side:
//! `publish` adds a package to a directory, which any static web server can serve.
//!
//! [`resolve`] picks, for each extension needed, the highest version in the index that
//! satisfies every requirement on it and runs on this Solobase.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use solobase_manifest::{ExtensionName, Manifest};

/// The registry's index file.
pub const INDEX: &str = "index.json";

/// The largest file fetched from a registry over http.
const MAX_FETCH: usize = 128 * 1024 * 1024;

/// `index.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Index {
    /// The index format (1).
    pub format: u32,
    /// Every extension, by name, with its versions.
    pub extensions: BTreeMap<String, Vec<Release>>,
}

/// One published version of an extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    pub version: semver::Version,
    pub description: String,
    /// The Solobase versions it runs on.
    pub host: semver::VersionReq,
    pub tier: Option<String>,
    pub license: Option<String>,
    pub repository: Option<String>,
    pub permissions: Vec<String>,
    /// Other extensions it needs, with the versions it accepts.
    pub dependencies: BTreeMap<String, semver::VersionReq>,
    /// The package file, relative to the index.
    pub package: String,
    /// The package's SHA-256 (hex).
    pub sha256: String,
    /// Its `.minisig` signature file, relative to the index.
    pub signature: String,
}

impl Release {
    pub fn from_manifest(m: &Manifest, package: String, sha256: String) -> Self {
        Self {
            version: m.version.clone(),
            description: m.description.clone(),
            host: m.host.clone(),
            tier: m.tier.map(|t| t.to_string()),
            license: m.license.clone(),
            repository: m.repository.clone(),
            permissions: m.permissions.iter().map(|p| p.to_string()).collect(),
            dependencies: m
                .dependencies
                .iter()
                .map(|(n, r)| (n.to_string(), r.clone()))
                .collect(),
            signature: format!("{package}.minisig"),
            package,
            sha256,
        }
    }
}

/// The registries' HTTP client: https verified (rustls) against the system's CA certificates
/// and, when `SOLOBASE_OUTBOUND_CA_FILE` names one, a PEM file of further ones. (Packages are
/// trusted by their signatures either way; TLS keeps the index private and current.)
fn client() -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder().use_rustls_tls();
    if let Some(file) = std::env::var_os("SOLOBASE_OUTBOUND_CA_FILE").filter(|f| !f.is_empty()) {
        let pem = std::fs::read(&file).map_err(|e| {
            format!(
                "SOLOBASE_OUTBOUND_CA_FILE {}: cannot read it ({e})",
                std::path::Path::new(&file).display()
            )
        })?;
        let roots = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            format!(
                "SOLOBASE_OUTBOUND_CA_FILE {}: not PEM certificates ({e})",
                std::path::Path::new(&file).display()
            )
        })?;
        for root in roots {
            builder = builder.add_root_certificate(root);
        }
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// An error with its causes (a certificate that does not verify is a cause of the send
/// error).
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Where a registry is.
#[derive(Debug, Clone)]
pub enum Location {
    Dir(PathBuf),
    Http(String),
}

impl Location {
    /// A directory, `file://` URL, or `http://` or `https://` URL.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if let Some(path) = raw.strip_prefix("file://") {
            return Ok(Self::Dir(PathBuf::from(path)));
        }
        if raw.starts_with("http://") || raw.starts_with("https://") {
            return Ok(Self::Http(raw.trim_end_matches('/').to_owned()));
        }
        Ok(Self::Dir(PathBuf::from(raw)))
    }

    /// Reads a file of the registry, relative to its index.
    pub async fn fetch(&self, file: &str) -> Result<Vec<u8>, String> {
        if file.contains("..") || file.starts_with('/') || file.contains('\\') {
            return Err(format!("the registry names an unsafe file {file:?}"));
        }
        match self {
            Self::Dir(dir) => std::fs::read(dir.join(file))
                .map_err(|e| format!("cannot read {}: {e}", dir.join(file).display())),
            Self::Http(base) => {
                let url = format!("{base}/{file}");
                let response = client()?
                    .get(&url)
                    .timeout(std::time::Duration::from_secs(60))
                    .send()
                    .await
                    .map_err(|e| {
                        let why = causes(&e);
                        let hint = if why.contains("certificate") {
                            " (a registry whose certificate comes from a private CA: name \
                             that CA's PEM file in SOLOBASE_OUTBOUND_CA_FILE)"
                        } else {
                            ""
                        };
                        format!("cannot fetch {url}: {why}{hint}")
                    })?;
                if !response.status().is_success() {
                    return Err(format!("cannot fetch {url}: {}", response.status()));
                }
                let mut response = response;
                let mut body = Vec::new();
                while let Some(chunk) = response
                    .chunk()
                    .await
                    .map_err(|e| format!("cannot fetch {url}: {}", causes(&e)))?
                {
                    body.extend_from_slice(&chunk);
                    if body.len() > MAX_FETCH {
                        return Err(format!("{url} is larger than {MAX_FETCH} bytes: refused"));
                    }
                }
                Ok(body)
            }
        }
    }

    /// Reads and parses the index.
    pub async fn index(&self) -> Result<Index, String> {
        let bytes = self.fetch(INDEX).await?;
        let index: Index = serde_json::from_slice(&bytes)
            .map_err(|e| format!("the registry's {INDEX} is invalid: {e}"))?;
        if index.format != 1 {
            return Err(format!(
                "the registry's {INDEX} has format {}, which this Solobase does not read",
                index.format
            ));
        }
        Ok(index)
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dir(d) => write!(f, "{}", d.display()),
            Self::Http(u) => f.write_str(u),
        }
    }
}

/// Adds a package (already verified) and its signature to the directory registry `dir`.
pub fn publish(
    dir: &Path,
    manifest: &Manifest,
    package: &[u8],
    signature: &str,
) -> Result<Release, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let index_path = dir.join(INDEX);
    let mut index = match std::fs::read(&index_path) {
        Ok(bytes) => serde_json::from_slice::<Index>(&bytes)
            .map_err(|e| format!("{} is invalid: {e}", index_path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Index {
            format: 1,
            ..Index::default()
        },
        Err(e) => return Err(format!("cannot read {}: {e}", index_path.display())),
    };
    let file = format!("{}-{}.tar.gz", manifest.name, manifest.version);
    let release =
        Release::from_manifest(manifest, file.clone(), super::archive::sha256_hex(package));
    let versions = index
        .extensions
        .entry(manifest.name.to_string())
        .or_default();
    if let Some(old) = versions.iter().find(|r| r.version == manifest.version) {
        if old.sha256 != release.sha256 {
            return Err(format!(
                "{} {} is already published with other content: publish a new version",
                manifest.name, manifest.version
            ));
        }
        return Ok(release);
    }
    versions.push(release.clone());
    versions.sort_by(|a, b| a.version.cmp(&b.version));
    write_atomic(&dir.join(&file), package)?;
    write_atomic(&dir.join(&release.signature), signature.as_bytes())?;
    let mut json = serde_json::to_vec_pretty(&index).map_err(|e| e.to_string())?;
    json.push(b'\n');
    write_atomic(&index_path, &json)?;
    Ok(release)
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// An extension already in the project: its version is fixed.
#[derive(Debug, Clone)]
pub struct Installed {
    pub version: semver::Version,
}

/// Who asked for what: `(who, range)`.
type Wants = Vec<(String, semver::VersionReq)>;

/// Chooses a release for every extension the `roots` need (directly or through their
/// dependencies) that is not `installed`: the highest version satisfying every requirement
/// and `host`. Roots are `(name, range)` asked for by the user. The error names who needs
/// what.
pub fn resolve(
    index: &Index,
    installed: &BTreeMap<String, Installed>,
    roots: &[(String, semver::VersionReq, String)],
    fixed: &BTreeMap<String, Release>,
    host: &semver::Version,
) -> Result<BTreeMap<String, Release>, String> {
    let mut chosen: BTreeMap<String, Release> = fixed.clone();
    for _round in 0..100 {
        // Every requirement, from the roots and the current choices.
        let mut wants: BTreeMap<String, Wants> = BTreeMap::new();
        for (name, req, who) in roots {
            wants
                .entry(name.clone())
                .or_default()
                .push((who.clone(), req.clone()));
        }
        for (name, r) in &chosen {
            for (dep, req) in &r.dependencies {
                wants
                    .entry(dep.clone())
                    .or_default()
                    .push((format!("{name} {}", r.version), req.clone()));
            }
        }
        let mut next: BTreeMap<String, Release> = BTreeMap::new();
        for (name, list) in &wants {
            if let Some(have) = installed.get(name) {
                if let Some((who, req)) = list.iter().find(|(_, req)| !req.matches(&have.version)) {
                    return Err(format!(
                        "{who} needs {name} {req}, but {name} {} is installed: {}",
                        have.version,
                        explain(list)
                    ));
                }
                continue;
            }
            if let Some(f) = fixed.get(name) {
                if let Some((who, req)) = list.iter().find(|(_, req)| !req.matches(&f.version)) {
                    return Err(format!(
                        "{who} needs {name} {req}, but the package given is {name} {}: {}",
                        f.version,
                        explain(list)
                    ));
                }
                next.insert(name.clone(), f.clone());
                continue;
            }
            let releases = index.extensions.get(name).ok_or_else(|| {
                format!(
                    "{} needs {name}, which is neither installed nor in the registry",
                    list.iter()
                        .map(|(w, _)| w.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            let best = releases
                .iter()
                .filter(|r| list.iter().all(|(_, req)| req.matches(&r.version)))
                .filter(|r| r.host.matches(host))
                // Installed extensions are not changed: skip versions that need others.
                .filter(|r| {
                    r.dependencies.iter().all(|(dep, req)| {
                        installed.get(dep).is_none_or(|i| req.matches(&i.version))
                    })
                })
                .max_by(|a, b| a.version.cmp(&b.version));
            match best {
                Some(r) => {
                    next.insert(name.clone(), r.clone());
                }
                None => {
                    let why: Vec<String> = releases
                        .iter()
                        .map(|r| format!("{} {}", r.version, why_not(r, list, installed, host)))
                        .collect();
                    return Err(format!(
                        "no version of {name} satisfies every requirement on it ({}); in the \
                         registry: {}",
                        explain(list),
                        why.join("; ")
                    ));
                }
            }
        }
        if next == chosen {
            return Ok(chosen);
        }
        chosen = next;
    }
    Err("the dependencies did not settle after 100 rounds: report this index".into())
}

/// Why release `r` cannot be chosen.
fn why_not(
    r: &Release,
    list: &Wants,
    installed: &BTreeMap<String, Installed>,
    host: &semver::Version,
) -> String {
    if let Some((who, req)) = list.iter().find(|(_, req)| !req.matches(&r.version)) {
        return format!("is not {req} (needed by {who})");
    }
    if !r.host.matches(host) {
        return format!("runs on Solobase {}, not {host}", r.host);
    }
    for (dep, req) in &r.dependencies {
        if let Some(i) = installed.get(dep).filter(|i| !req.matches(&i.version)) {
            return format!("needs {dep} {req}, but {dep} {} is installed", i.version);
        }
    }
    "fits".into()
}

fn explain(list: &Wants) -> String {
    list.iter()
        .map(|(who, req)| format!("{who} needs {req}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Releases whose name or description contains `text` (case-insensitive): the newest of
/// each extension.
pub fn search<'a>(index: &'a Index, text: &str) -> Vec<(&'a str, &'a Release)> {
    let text = text.to_lowercase();
    index
        .extensions
        .iter()
        .filter_map(|(name, releases)| {
            let newest = releases.iter().max_by(|a, b| a.version.cmp(&b.version))?;
            (name.contains(&text) || newest.description.to_lowercase().contains(&text))
                .then_some((name.as_str(), newest))
        })
        .collect()
}

/// Checks that `name` is a valid extension name (for messages before resolving).
pub fn parse_spec(spec: &str) -> Result<(ExtensionName, semver::VersionReq), String> {
    let (name, version) = match spec.split_once('@') {
        Some((n, v)) => (n, Some(v)),
        None => (spec, None),
    };
    let name = ExtensionName::parse(name)?;
    let req = match version {
        None => semver::VersionReq::STAR,
        Some(v) => match semver::Version::parse(v) {
            Ok(exact) => {
                semver::VersionReq::parse(&format!("={exact}")).map_err(|e| e.to_string())?
            }
            Err(_) => semver::VersionReq::parse(v)
                .map_err(|e| format!("{spec}: {v:?} is neither a version nor a range: {e}"))?,
        },
    };
    Ok((name, req))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(version: &str, deps: &[(&str, &str)]) -> Release {
        Release {
            version: semver::Version::parse(version).unwrap(),
            description: "d".into(),
            host: semver::VersionReq::parse("^0.1").unwrap(),
            tier: None,
            license: None,
            repository: None,
            permissions: vec![],
            dependencies: deps
                .iter()
                .map(|(n, r)| (n.to_string(), semver::VersionReq::parse(r).unwrap()))
                .collect(),
            package: String::new(),
            sha256: String::new(),
            signature: String::new(),
        }
    }

    fn index() -> Index {
        Index {
            format: 1,
            extensions: BTreeMap::from([
                (
                    "base".into(),
                    vec![
                        release("0.1.0", &[]),
                        release("0.2.0", &[]),
                        release("1.0.0", &[]),
                    ],
                ),
                (
                    "top".into(),
                    vec![
                        release("0.1.0", &[("base", "^0.1")]),
                        release("0.2.0", &[("base", "^0.2")]),
                    ],
                ),
            ]),
        }
    }

    fn req(r: &str) -> semver::VersionReq {
        semver::VersionReq::parse(r).unwrap()
    }

    #[test]
    fn picks_the_highest_compatible_versions() {
        let host = semver::Version::new(0, 1, 0);
        let roots = vec![("top".to_owned(), req("*"), "you".to_owned())];
        let got = resolve(&index(), &BTreeMap::new(), &roots, &BTreeMap::new(), &host).unwrap();
        assert_eq!(got["top"].version.to_string(), "0.2.0");
        assert_eq!(got["base"].version.to_string(), "0.2.0");
        let roots = vec![("top".to_owned(), req("=0.1.0"), "you".to_owned())];
        let got = resolve(&index(), &BTreeMap::new(), &roots, &BTreeMap::new(), &host).unwrap();
        assert_eq!(got["base"].version.to_string(), "0.1.0");
    }

    #[test]
    fn conflicts_name_who_needs_what() {
        let host = semver::Version::new(0, 1, 0);
        let roots = vec![
            ("top".to_owned(), req("=0.2.0"), "you".to_owned()),
            ("base".to_owned(), req("^0.1"), "you".to_owned()),
        ];
        let err = resolve(&index(), &BTreeMap::new(), &roots, &BTreeMap::new(), &host).unwrap_err();
        assert!(
            err.contains("top 0.2.0 needs ^0.2") && err.contains("you needs ^0.1"),
            "{err}"
        );
        let installed = BTreeMap::from([(
            "base".to_owned(),
            Installed {
                version: semver::Version::new(0, 1, 5),
            },
        )]);
        let roots = vec![("top".to_owned(), req("=0.2.0"), "you".to_owned())];
        let err = resolve(&index(), &installed, &roots, &BTreeMap::new(), &host).unwrap_err();
        assert!(err.contains("base 0.1.5 is installed"), "{err}");
    }

    #[test]
    fn specs() {
        assert_eq!(parse_spec("a@1.2.3").unwrap().1, req("=1.2.3"));
        assert_eq!(parse_spec("a@^1").unwrap().1, req("^1"));
        assert_eq!(parse_spec("a").unwrap().1, req("*"));
        assert!(parse_spec("A@1").is_err());
    }
}
