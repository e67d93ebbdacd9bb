//! `install` and `uninstall`: putting a verified package (and the dependencies it needs)
//! into the project's source tree, and taking one out.
//!
//! Install does all of its checking in memory first — signatures against the trusted keys,
//! hashes, manifests, host compatibility, dependency resolution, free destination folders —
//! and only then writes: each extension into a hidden temporary folder renamed into place,
//! then the root `Cargo.toml` once. A failure while writing removes what it wrote.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use solobase_manifest::{Manifest, Tier};

use super::archive::{self, Unpacked};
use super::minisign::{PublicKey, SignatureFile};
use super::registry::{self, Index, Installed, Location, Release};
use crate::scaffold::root_manifest;
use solobase_manifest::discovery;

/// What install was asked for.
#[derive(Debug)]
pub enum Source {
    /// A `.tar.gz` package with its `.minisig` next to it.
    File(PathBuf),
    /// An extension's source folder (local code: no signature).
    Dir(PathBuf),
    /// `name[@version]` from the registry.
    Spec(String),
}

impl Source {
    pub fn parse(raw: &str) -> Self {
        let path = Path::new(raw);
        if path.is_dir() {
            Self::Dir(path.to_owned())
        } else if raw.ends_with(".tar.gz") || path.is_file() {
            Self::File(path.to_owned())
        } else {
            Self::Spec(raw.to_owned())
        }
    }
}

/// The project's own version: the host the extensions will be built into.
pub fn host_version(root: &Path) -> Result<semver::Version, String> {
    let text = std::fs::read_to_string(root.join("Cargo.toml"))
        .map_err(|e| format!("cannot read {}/Cargo.toml: {e}", root.display()))?;
    let table: toml::Table = text.parse().map_err(|e| format!("Cargo.toml: {e}"))?;
    let version = table
        .get("package")
        .and_then(|p| p.get("version"))
        .and_then(|v| v.as_str())
        .ok_or("Cargo.toml has no [package] version")?;
    semver::Version::parse(version).map_err(|e| format!("Cargo.toml's version: {e}"))
}

/// The extensions in the project, by name: version, tier, folder, manifest.
pub fn installed(root: &Path) -> Result<BTreeMap<String, discovery::Found>, String> {
    let found = discovery::discover(root, |_| {}).map_err(|e| e.join("\n"))?;
    Ok(found
        .into_iter()
        .map(|f| (f.manifest.name.to_string(), f))
        .collect())
}

/// Verifies `package` against its signature and the trusted keys; the error says which
/// check failed and what to do.
pub fn verify(
    what: &str,
    package: &[u8],
    signature: Option<&[u8]>,
    trusted: &[PublicKey],
) -> Result<SignatureFile, String> {
    let signature = signature.ok_or_else(|| {
        format!(
            "{what} is not signed (no .minisig next to it): refused. Ask its author for the \
             signature, or sign your own with `solobase extensions package --key`"
        )
    })?;
    let sig = SignatureFile::parse(&String::from_utf8_lossy(signature))
        .map_err(|e| format!("{what}: {e}"))?;
    if trusted.is_empty() {
        return Err(format!(
            "{what}: no trusted keys are configured: add the author's public key to \
             [extensions] trusted_keys in the configuration file"
        ));
    }
    let key = trusted.iter().find(|k| k.id == sig.key_id).ok_or_else(|| {
        format!(
            "{what} is signed by key {}, which is not in [extensions] trusted_keys: refused. If \
             you trust its author, add their public key there",
            sig.key_id
        )
    })?;
    key.verify(package, &sig)
        .map_err(|e| format!("{what} failed verification: {e}; refused"))?;
    Ok(sig)
}

/// One extension ready to be written.
#[derive(Debug)]
pub struct Planned {
    pub unpacked: Unpacked,
    /// The folder, relative to the root: `extensions/<community|custom>/<name>`.
    pub dir: String,
    /// Where it came from (for the summary).
    pub origin: String,
}

/// Everything an install needs, gathered by the caller.
#[derive(Debug)]
pub struct Request<'a> {
    pub root: &'a Path,
    pub source: Source,
    pub trusted: &'a [PublicKey],
    pub registry: Option<Location>,
}

/// Checks and resolves everything, writing nothing: the extensions to write, in the order
/// their dependencies need.
pub async fn plan(req: &Request<'_>) -> Result<Vec<Planned>, String> {
    let host = host_version(req.root)?;
    let present = installed(req.root)?;
    let installed_versions: BTreeMap<String, Installed> = present
        .iter()
        .map(|(n, f)| {
            (
                n.clone(),
                Installed {
                    version: f.manifest.version.clone(),
                },
            )
        })
        .collect();
    let mut given: Option<(Unpacked, String)> = None;
    let roots = match &req.source {
        Source::File(path) => {
            let bytes =
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let sig_path = PathBuf::from(format!("{}.minisig", path.display()));
            let sig = std::fs::read(&sig_path).ok();
            let what = path.display().to_string();
            verify(&what, &bytes, sig.as_deref(), req.trusted)?;
            let unpacked = archive::unpack(&bytes).map_err(|e| format!("{what}: {e}"))?;
            given = Some((unpacked, what));
            None
        }
        Source::Dir(dir) => {
            let files = archive::collect(dir)?;
            let text = files
                .get("extension.toml")
                .ok_or_else(|| format!("{} has no extension.toml", dir.display()))?;
            let manifest = Manifest::parse(&String::from_utf8_lossy(text))
                .map_err(|e| format!("{}/extension.toml: {e}", dir.display()))?;
            let bytes = archive::pack(&manifest, &files)?;
            let unpacked = archive::unpack(&bytes)?;
            given = Some((
                unpacked,
                format!("{} (local source, unsigned)", dir.display()),
            ));
            None
        }
        Source::Spec(spec) => {
            let (name, range) = registry::parse_spec(spec)?;
            Some((name.to_string(), range, "you".to_owned()))
        }
    };
    let mut fixed = BTreeMap::new();
    let mut roots: Vec<_> = roots.into_iter().collect();
    if let Some((u, _)) = &given {
        let m = &u.manifest;
        roots.push((
            m.name.to_string(),
            semver::VersionReq::parse(&format!("={}", m.version)).map_err(|e| e.to_string())?,
            "you".to_owned(),
        ));
        fixed.insert(
            m.name.to_string(),
            Release::from_manifest(m, String::new(), String::new()),
        );
    }
    for (name, _, _) in &roots {
        if let Some(f) = present.get(name) {
            return Err(format!(
                "{name} {} is already installed in {}: uninstall it first (`solobase \
                 extensions uninstall {name}`)",
                f.manifest.version, f.dir
            ));
        }
    }
    // A package given as a file may need nothing from the registry: an unreachable one is
    // only an error when a dependency has to come from it.
    let empty = Index {
        format: 1,
        ..Index::default()
    };
    let (index, unavailable) = match &req.registry {
        Some(location) => match location.index().await {
            Ok(index) => (index, None),
            Err(e) if given.is_some() => (empty, Some(e)),
            Err(e) => return Err(e),
        },
        None => (
            empty,
            Some("no registry is configured: set [extensions] registry or pass --registry".into()),
        ),
    };
    let chosen =
        registry::resolve(&index, &installed_versions, &roots, &fixed, &host).map_err(|e| {
            match &unavailable {
                Some(why) => format!("{e} ({why})"),
                None => e,
            }
        })?;
    let mut planned = Vec::new();
    for (name, release) in &chosen {
        let (unpacked, origin) = if fixed.contains_key(name) {
            given
                .take()
                .ok_or("internal: the given package was used twice")?
        } else {
            let location = req.registry.as_ref().ok_or("no registry")?;
            let what = format!("{name} {} from the registry {location}", release.version);
            let bytes = location.fetch(&release.package).await?;
            if archive::sha256_hex(&bytes) != release.sha256 {
                return Err(format!(
                    "{what}: its SHA-256 differs from the registry's index: refused"
                ));
            }
            let sig = location.fetch(&release.signature).await.ok();
            verify(&what, &bytes, sig.as_deref(), req.trusted)?;
            let unpacked = archive::unpack(&bytes).map_err(|e| format!("{what}: {e}"))?;
            if unpacked.manifest.name.as_str() != name
                || unpacked.manifest.version != release.version
            {
                return Err(format!(
                    "{what}: the package is {} {}, not what the index says",
                    unpacked.manifest.name, unpacked.manifest.version
                ));
            }
            (unpacked, format!("the registry {location}"))
        };
        let m = &unpacked.manifest;
        if !m.host.matches(&host) {
            return Err(format!(
                "{origin}: {} {} runs on Solobase {}, and this project is Solobase {host}",
                m.name, m.version, m.host
            ));
        }
        let tier = match m.tier {
            Some(Tier::Official) => {
                return Err(format!(
                    "{origin}: {} is an official extension, which ships with Solobase and is \
                     not installed",
                    m.name
                ));
            }
            Some(Tier::Custom) => "custom",
            Some(Tier::Community) | None => "community",
        };
        let dir = format!("extensions/{tier}/{}", m.name);
        if req.root.join(&dir).exists() {
            return Err(format!(
                "{dir} already exists: move it away, or uninstall {} first",
                m.name
            ));
        }
        planned.push(Planned {
            unpacked,
            dir,
            origin,
        });
    }
    // Dependencies first.
    planned.sort_by_key(|p| chosen_depth(&p.unpacked.manifest.name.to_string(), &chosen));
    Ok(planned)
}

fn chosen_depth(name: &str, chosen: &BTreeMap<String, Release>) -> usize {
    fn depth(name: &str, chosen: &BTreeMap<String, Release>, left: usize) -> usize {
        match chosen.get(name) {
            Some(r) if left > 0 => r
                .dependencies
                .keys()
                .map(|d| 1 + depth(d, chosen, left - 1))
                .max()
                .unwrap_or(0),
            _ => 0,
        }
    }
    depth(name, chosen, chosen.len())
}

/// Writes the planned extensions and their Cargo.toml entries; on failure removes what it
/// wrote.
pub fn write(root: &Path, planned: &[Planned]) -> Result<(), String> {
    let cargo_path = root.join("Cargo.toml");
    let original = std::fs::read_to_string(&cargo_path)
        .map_err(|e| format!("cannot read {}: {e}", cargo_path.display()))?;
    let mut cargo = original.clone();
    for p in planned {
        cargo = root_manifest::add_extension(&cargo, p.unpacked.manifest.name.as_str(), &p.dir)
            .map_err(|e| format!("Cargo.toml: {e}"))?;
    }
    let mut written: Vec<PathBuf> = Vec::new();
    let result = (|| {
        for p in planned {
            let target = root.join(&p.dir);
            let parent = target.parent().ok_or("no parent folder")?;
            let tmp = parent.join(format!(".{}.installing", p.unpacked.manifest.name));
            let _ = std::fs::remove_dir_all(&tmp);
            for (rel, bytes) in &p.unpacked.files {
                let file = tmp.join(rel);
                if let Some(dir) = file.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                }
                std::fs::write(&file, bytes)
                    .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
            }
            std::fs::rename(&tmp, &target)
                .map_err(|e| format!("cannot move {} into place: {e}", target.display()))?;
            written.push(target);
        }
        registry::write_atomic(&cargo_path, cargo.as_bytes())
    })();
    if let Err(e) = result {
        for dir in written {
            let _ = std::fs::remove_dir_all(dir);
        }
        return Err(e);
    }
    Ok(())
}

/// Removes an installed community or custom extension; refused while another extension
/// depends on it.
pub fn uninstall(root: &Path, name: &str) -> Result<String, String> {
    let present = installed(root)?;
    let found = present.get(name).ok_or_else(|| {
        format!(
            "{name} is not installed in {}: `solobase extensions list` shows what is",
            root.display()
        )
    })?;
    if found.tier != "community" && found.tier != "custom" {
        return Err(format!(
            "{name} is in {}: only extensions under extensions/community/ and extensions/custom/ \
             are uninstalled",
            found.dir
        ));
    }
    let dependents: Vec<String> = present
        .values()
        .filter_map(|f| {
            f.manifest
                .dependencies
                .iter()
                .find(|(dep, _)| dep.as_str() == name)
                .map(|(_, req)| format!("{} ({} needs {name} {req})", f.manifest.name, f.dir))
        })
        .collect();
    if !dependents.is_empty() {
        return Err(format!(
            "{name} is needed by {}: uninstall {} first",
            dependents.join(", "),
            if dependents.len() == 1 { "it" } else { "them" }
        ));
    }
    let cargo_path = root.join("Cargo.toml");
    let text = std::fs::read_to_string(&cargo_path)
        .map_err(|e| format!("cannot read {}: {e}", cargo_path.display()))?;
    let edited = root_manifest::remove_extension(&text, name, &found.dir)
        .map_err(|e| format!("Cargo.toml: {e}"))?;
    registry::write_atomic(&cargo_path, edited.as_bytes())?;
    std::fs::remove_dir_all(root.join(&found.dir))
        .map_err(|e| format!("cannot remove {}: {e}", found.dir))?;
    Ok(found.dir.clone())
}
