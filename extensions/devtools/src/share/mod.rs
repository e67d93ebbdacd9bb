//! Sharing extensions: `keygen | package | verify | publish | install | uninstall | search`,
//! and `info NAME --remote`.
//!
//! - `minisign.rs` — ed25519 keys and signatures in minisign's formats.
//! - `archive.rs` — the reproducible package (`.tar.gz` + `solobase-package.json`) and its
//!   safe, in-memory reading.
//! - `registry.rs` — the static index (`index.json`) in a directory or over http, publishing
//!   into a directory, version resolution.
//! - `install.rs` — install (verify, resolve, then write) and uninstall.
//!
//! These commands work on the source tree and files only: no database.

pub mod archive;
pub mod install;
pub mod minisign;
pub mod registry;

use std::path::{Path, PathBuf};

use solobase_manifest::Manifest;

use crate::{Settings, ToolError};
use minisign::{PublicKey, SecretKey, SignatureFile};
use registry::Location;

/// The trusted keys of the configuration, parsed.
pub fn trusted_keys(config: &Settings) -> Result<Vec<PublicKey>, ToolError> {
    config
        .trusted_keys
        .iter()
        .map(|k| {
            PublicKey::parse(k)
                .map_err(|e| ToolError::Invalid(format!("[extensions] trusted_keys: {k:?}: {e}")))
        })
        .collect()
}

/// The registry from `--registry`, else the configuration's.
pub fn registry(flag: Option<&str>, config: &Settings) -> Result<Option<Location>, ToolError> {
    flag.or(config.registry.as_deref())
        .map(|r| Location::parse(r).map_err(ToolError::Invalid))
        .transpose()
}

fn required_registry(flag: Option<&str>, config: &Settings) -> anyhow::Result<Location> {
    Ok(registry(flag, config)?.ok_or_else(|| {
        ToolError::Invalid(
            "no registry: pass --registry DIR|URL or set [extensions] registry in the \
             configuration file"
                .into(),
        )
    })?)
}

/// `keygen`: writes a new secret key (0600) and its public key next to it.
pub fn keygen(output: &Path, force: bool) -> anyhow::Result<()> {
    let key = SecretKey::generate().map_err(anyhow::Error::msg)?;
    let public = key.public();
    let pub_path = PathBuf::from(format!("{}.pub", output.display()));
    if !force && (output.exists() || pub_path.exists()) {
        return Err(ToolError::Invalid(format!(
            "{} already exists: choose another --output, or --force to replace it (signatures \
             made with the old key will no longer verify with the new one)",
            output.display()
        ))
        .into());
    }
    write_secret(output, key.to_file().as_bytes())?;
    std::fs::write(&pub_path, public.to_file())
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", pub_path.display()))?;
    println!("secret key: {} (keep it private)", output.display());
    println!("public key: {}", pub_path.display());
    println!("key id:     {}", public.id);
    println!();
    println!("{}", public.to_base64());
    println!();
    println!("To trust packages signed with it, add to the configuration file:");
    println!("[extensions]\ntrusted_keys = [\"{}\"]", public.to_base64());
    Ok(())
}

#[cfg(unix)]
fn write_secret(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    file.write_all(bytes)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    Ok(())
}

#[cfg(not(unix))]
fn write_secret(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

/// The folder of extension `what`: a path, or a name found in the project at `root`.
fn extension_dir(what: &str, root: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = Path::new(what);
    if path.is_dir() {
        return Ok(path.to_owned());
    }
    let root = project(root)?;
    let found = install::installed(&root).map_err(ToolError::Invalid)?;
    let f = found.get(what).ok_or_else(|| {
        ToolError::Invalid(format!(
            "{what} is neither a folder nor an extension of {}",
            root.display()
        ))
    })?;
    Ok(root.join(&f.dir))
}

fn project(root: Option<&Path>) -> Result<PathBuf, ToolError> {
    use crate::scaffold::project_root;
    match root {
        Some(dir) => project_root(dir, false),
        None => project_root(
            &std::env::current_dir()
                .map_err(|e| ToolError::Invalid(format!("no current directory: {e}")))?,
            true,
        ),
    }
}

/// `package`: validates the folder, packs it reproducibly, signs it; prints the SHA-256.
pub fn package(what: &str, key: &Path, output: &Path, root: Option<&Path>) -> anyhow::Result<()> {
    let dir = extension_dir(what, root)?;
    let key_text = std::fs::read_to_string(key)
        .map_err(|e| ToolError::Invalid(format!("cannot read the key {}: {e}", key.display())))?;
    let key = SecretKey::parse(&key_text)
        .map_err(|e| ToolError::Invalid(format!("{}: {e}", key.display())))?;
    let report = crate::validate::validate(&dir, crate::validate::compiled().as_deref());
    if !report.problems.is_empty() {
        eprint!("{}", crate::validate::render(&report));
        return Err(ToolError::Invalid(format!(
            "{} has problems (listed above): fix them before packaging",
            dir.display()
        ))
        .into());
    }
    let files = archive::collect(&dir).map_err(ToolError::Invalid)?;
    let text = String::from_utf8_lossy(files.get("extension.toml").map_or(&[][..], |v| v));
    let manifest = Manifest::parse(&text).map_err(ToolError::Invalid)?;
    let bytes = archive::pack(&manifest, &files).map_err(anyhow::Error::msg)?;
    let sha = archive::sha256_hex(&bytes);
    let file_name = format!("{}-{}.tar.gz", manifest.name, manifest.version);
    std::fs::create_dir_all(output)?;
    let path = output.join(&file_name);
    let comment = format!(
        "solobase package {file_name} {}@{} sha256:{sha}",
        manifest.name, manifest.version
    );
    registry::write_atomic(&path, &bytes).map_err(anyhow::Error::msg)?;
    let sig_path = PathBuf::from(format!("{}.minisig", path.display()));
    registry::write_atomic(&sig_path, key.sign(&bytes, &comment).as_bytes())
        .map_err(anyhow::Error::msg)?;
    println!("package:   {}", path.display());
    println!("signature: {} (key {})", sig_path.display(), key.id);
    println!("files:     {}", files.len());
    println!("sha256:    {sha}");
    Ok(())
}

/// Reads a package and its `.minisig` and checks them against the trusted keys.
fn read_verified(
    file: &Path,
    trusted: &[PublicKey],
) -> anyhow::Result<(Vec<u8>, String, SignatureFile, archive::Unpacked)> {
    let bytes = std::fs::read(file)
        .map_err(|e| ToolError::Invalid(format!("cannot read {}: {e}", file.display())))?;
    let sig_path = PathBuf::from(format!("{}.minisig", file.display()));
    let sig_text = std::fs::read_to_string(&sig_path).ok();
    let what = file.display().to_string();
    let sig = install::verify(
        &what,
        &bytes,
        sig_text.as_deref().map(str::as_bytes),
        trusted,
    )
    .map_err(ToolError::Refused)?;
    let unpacked =
        archive::unpack(&bytes).map_err(|e| ToolError::Refused(format!("{what}: {e}")))?;
    Ok((bytes, sig_text.unwrap_or_default(), sig, unpacked))
}

/// `verify`: checks a package's signature and contents, prints what it is.
pub fn verify(file: &Path, config: &Settings) -> anyhow::Result<()> {
    let trusted = trusted_keys(config)?;
    let (bytes, _, sig, unpacked) = read_verified(file, &trusted)?;
    let m = &unpacked.manifest;
    println!("{}: signature OK (key {})", file.display(), sig.key_id);
    println!("trusted comment: {}", sig.trusted_comment);
    println!("extension: {} {} (host {})", m.name, m.version, m.host);
    println!("files: {}", unpacked.files.len());
    println!("sha256: {}", archive::sha256_hex(&bytes));
    Ok(())
}

/// `publish`: verifies a package and adds it to a directory registry.
pub fn publish(file: &Path, registry_dir: Option<&Path>, config: &Settings) -> anyhow::Result<()> {
    let dir = match registry_dir {
        Some(d) => d.to_owned(),
        None => match required_registry(None, config)? {
            Location::Dir(d) => d,
            Location::Http(url) => {
                return Err(ToolError::Invalid(format!(
                    "the registry {url} is served over http: publish into its directory with \
                     --registry DIR"
                ))
                .into());
            }
        },
    };
    let trusted = trusted_keys(config)?;
    let (bytes, sig_text, _, unpacked) = read_verified(file, &trusted)?;
    let release = registry::publish(&dir, &unpacked.manifest, &bytes, &sig_text)
        .map_err(anyhow::Error::msg)?;
    println!(
        "published {} {} into {} ({})",
        unpacked.manifest.name,
        unpacked.manifest.version,
        dir.display(),
        release.package
    );
    Ok(())
}

/// `install`.
pub async fn install(
    what: &str,
    root: Option<&Path>,
    registry_flag: Option<&str>,
    config: &Settings,
) -> anyhow::Result<()> {
    let root = project(root)?;
    let trusted = trusted_keys(config)?;
    let request = install::Request {
        root: &root,
        source: install::Source::parse(what),
        trusted: &trusted,
        registry: registry(registry_flag, config)?,
    };
    let planned = install::plan(&request).await.map_err(ToolError::Refused)?;
    install::write(&root, &planned).map_err(anyhow::Error::msg)?;
    for p in &planned {
        let m = &p.unpacked.manifest;
        println!(
            "installed {} {} into {} (from {})",
            m.name, m.version, p.dir, p.origin
        );
    }
    let features: Vec<&str> = planned
        .iter()
        .map(|p| p.unpacked.manifest.name.as_str())
        .collect();
    println!();
    println!("Build the server with it:");
    println!("  cargo build --release --features {}", features.join(","));
    println!("  (or ./compile.sh, which builds every extension in the tree)");
    Ok(())
}

/// `uninstall`.
pub fn uninstall(name: &str, root: Option<&Path>) -> anyhow::Result<()> {
    let root = project(root)?;
    let dir = install::uninstall(&root, name).map_err(ToolError::Refused)?;
    println!("uninstalled {name}: removed {dir} and its Cargo.toml entries");
    println!("Rebuild the server without it: cargo build --release (or ./compile.sh)");
    Ok(())
}

/// `search`.
pub async fn search(
    text: &str,
    registry_flag: Option<&str>,
    config: &Settings,
    json: bool,
) -> anyhow::Result<()> {
    let location = required_registry(registry_flag, config)?;
    let index = location.index().await.map_err(anyhow::Error::msg)?;
    let found = registry::search(&index, text);
    if json {
        let list: Vec<_> = found
            .iter()
            .map(|(name, r)| serde_json::json!({"name": name, "release": r}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    if found.is_empty() {
        println!("nothing in {location} matches {text:?}");
    }
    for (name, r) in found {
        println!("{name} {} — {}", r.version, r.description);
    }
    Ok(())
}

/// `info NAME --remote`: every version of `name` in the registry.
pub async fn info_remote(
    name: &str,
    registry_flag: Option<&str>,
    config: &Settings,
    json: bool,
) -> anyhow::Result<()> {
    let location = required_registry(registry_flag, config)?;
    let index = location.index().await.map_err(anyhow::Error::msg)?;
    let releases = index
        .extensions
        .get(name)
        .ok_or_else(|| ToolError::Refused(format!("{name} is not in the registry {location}")))?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"name": name, "versions": releases}))?
        );
        return Ok(());
    }
    println!("{name} in {location}");
    for r in releases.iter().rev() {
        println!("  {} — {}", r.version, r.description);
        println!("    host: {}", r.host);
        if !r.dependencies.is_empty() {
            let deps: Vec<String> = r
                .dependencies
                .iter()
                .map(|(n, req)| format!("{n} {req}"))
                .collect();
            println!("    dependencies: {}", deps.join(", "));
        }
        if !r.permissions.is_empty() {
            println!("    permissions: {}", r.permissions.join(", "));
        }
        if let Some(l) = &r.license {
            println!("    license: {l}");
        }
        if let Some(repo) = &r.repository {
            println!("    repository: {repo}");
        }
        println!("    package: {} (sha256 {})", r.package, r.sha256);
    }
    Ok(())
}
