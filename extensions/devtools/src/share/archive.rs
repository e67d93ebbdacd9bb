//! The package: a reproducible `.tar.gz` of an extension's crate, and reading one back
//! safely.
//!
//! Entries are `<name>/<path>`, sorted, regular files only, each with mode 0644, mtime 0,
//! uid/gid 0 and no user names; `target/` and dotfiles are left out, symlinks refused. The
//! last entry is `<name>/solobase-package.json` ([`Metadata`]: name, version, the SHA-256 of
//! every file and of the whole tree). gzip's header carries no time and no file name, so the
//! same tree always gives the same bytes.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use solobase_manifest::Manifest;

/// The metadata file inside every package.
pub const METADATA: &str = "solobase-package.json";

/// Largest unpacked package accepted (the sum of its files).
const MAX_UNPACKED: u64 = 64 * 1024 * 1024;

/// `solobase-package.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// The package format (1).
    pub format: u32,
    pub name: String,
    pub version: String,
    /// SHA-256 of the lines `<sha256 of the file>  <path>\n`, in path order.
    pub tree_sha256: String,
    /// Every file of the crate (path relative to its folder) and its SHA-256.
    pub files: BTreeMap<String, String>,
}

/// A package read back: its files (relative paths) and what they say.
#[derive(Debug)]
pub struct Unpacked {
    pub metadata: Metadata,
    pub manifest: Manifest,
    pub files: BTreeMap<String, Vec<u8>>,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn tree_sha256(files: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (path, sum) in files {
        h.update(format!("{sum}  {path}\n"));
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The crate's files: every regular file under `dir` except `target/` and dotfiles, by
/// relative path (with `/`).
pub fn collect(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let mut files = BTreeMap::new();
    let walk = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            let name = e.file_name().to_string_lossy();
            !(name.starts_with('.') || (e.depth() == 1 && name == "target"))
        });
    for entry in walk {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let rel = entry
            .path()
            .strip_prefix(dir)
            .map_err(|e| e.to_string())?
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        if entry.path_is_symlink() {
            return Err(format!(
                "{rel} is a symbolic link: packages hold regular files only; copy the file in"
            ));
        }
        if entry.file_type().is_file() {
            let bytes = std::fs::read(entry.path())
                .map_err(|e| format!("cannot read {}: {e}", entry.path().display()))?;
            files.insert(rel, bytes);
        }
    }
    Ok(files)
}

/// Packs the crate files of extension `manifest` into a reproducible `.tar.gz`.
pub fn pack(manifest: &Manifest, files: &BTreeMap<String, Vec<u8>>) -> Result<Vec<u8>, String> {
    let sums: BTreeMap<String, String> = files
        .iter()
        .map(|(path, bytes)| (path.clone(), sha256_hex(bytes)))
        .collect();
    let metadata = Metadata {
        format: 1,
        name: manifest.name.to_string(),
        version: manifest.version.to_string(),
        tree_sha256: tree_sha256(&sums),
        files: sums,
    };
    let mut json = serde_json::to_vec_pretty(&metadata).map_err(|e| e.to_string())?;
    json.push(b'\n');
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let entries = files
        .iter()
        .map(|(p, b)| (p.as_str(), b.as_slice()))
        .chain([(METADATA, json.as_slice())]);
    for (path, bytes) in entries {
        let mut header = tar::Header::new_ustar();
        header
            .set_path(format!("{}/{path}", manifest.name))
            .map_err(|e| format!("{path}: {e}"))?;
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_cksum();
        tar.append(&header, bytes)
            .map_err(|e| format!("cannot pack {path}: {e}"))?;
    }
    let gz = tar.into_inner().map_err(|e| e.to_string())?;
    let mut out = gz.finish().map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    Ok(out)
}

/// Reads a package in memory and checks it: only regular files under `<name>/`, no path
/// leaving it, the metadata's hashes equal to the files, the manifest valid and equal to the
/// metadata's name and version. Nothing touches the disk.
pub fn unpack(bytes: &[u8]) -> Result<Unpacked, String> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut files = BTreeMap::new();
    let mut top: Option<String> = None;
    let mut total = 0u64;
    for entry in archive
        .entries()
        .map_err(|e| format!("not a .tar.gz package: {e}"))?
    {
        let mut entry = entry.map_err(|e| format!("the package is damaged: {e}"))?;
        let path = entry
            .path()
            .map_err(|e| format!("the package has an unreadable path: {e}"))?
            .into_owned();
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() {
            return Err(format!(
                "the package holds {} which is not a regular file (links are refused)",
                path.display()
            ));
        }
        let mut parts = Vec::new();
        for c in path.components() {
            match c {
                Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
                _ => {
                    return Err(format!(
                        "the package holds the unsafe path {}: refused",
                        path.display()
                    ));
                }
            }
        }
        if parts.len() < 2 {
            return Err(format!(
                "the package holds {} outside its folder",
                path.display()
            ));
        }
        let first = parts.remove(0);
        match &top {
            Some(t) if *t != first => {
                return Err(format!("the package holds two folders, {t} and {first}"));
            }
            _ => top = Some(first),
        }
        total += entry.size();
        if total > MAX_UNPACKED {
            return Err(format!(
                "the package unpacks to more than {MAX_UNPACKED} bytes"
            ));
        }
        let mut content = Vec::new();
        entry
            .read_to_end(&mut content)
            .map_err(|e| format!("the package is damaged: {e}"))?;
        if files.insert(parts.join("/"), content).is_some() {
            return Err(format!("the package holds {} twice", path.display()));
        }
    }
    let meta_bytes = files.remove(METADATA).ok_or_else(|| {
        format!("the package has no {METADATA}: it was not made by `solobase extensions package`")
    })?;
    let metadata: Metadata = serde_json::from_slice(&meta_bytes)
        .map_err(|e| format!("the package's {METADATA} is invalid: {e}"))?;
    let sums: BTreeMap<String, String> = files
        .iter()
        .map(|(p, b)| (p.clone(), sha256_hex(b)))
        .collect();
    if sums != metadata.files || tree_sha256(&sums) != metadata.tree_sha256 {
        return Err(format!(
            "the package's files do not match its {METADATA}: it was altered"
        ));
    }
    let manifest_text = files
        .get("extension.toml")
        .ok_or("the package has no extension.toml")?;
    let manifest = Manifest::parse(&String::from_utf8_lossy(manifest_text))
        .map_err(|e| format!("the package's extension.toml is invalid: {e}"))?;
    if top.as_deref() != Some(manifest.name.as_str())
        || metadata.name != manifest.name.as_str()
        || metadata.version != manifest.version.to_string()
    {
        return Err(format!(
            "the package's folder, {METADATA} and extension.toml disagree on its name or version"
        ));
    }
    Ok(Unpacked {
        metadata,
        manifest,
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest::parse(
            "[extension]\nname = \"demo\"\nversion = \"1.0.0\"\ndescription = \"d\"\nhost = \"^0.1\"\n",
        )
        .unwrap()
    }

    fn files() -> BTreeMap<String, Vec<u8>> {
        let m = "[extension]\nname = \"demo\"\nversion = \"1.0.0\"\ndescription = \"d\"\nhost = \"^0.1\"\n";
        BTreeMap::from([
            ("extension.toml".to_owned(), m.as_bytes().to_vec()),
            ("src/lib.rs".to_owned(), b"// code\n".to_vec()),
        ])
    }

    #[test]
    fn packing_is_reproducible_and_reads_back() {
        let a = pack(&manifest(), &files()).unwrap();
        let b = pack(&manifest(), &files()).unwrap();
        assert_eq!(a, b);
        // gzip header: no mtime (bytes 4..8), OS "unknown".
        assert_eq!(&a[4..8], &[0, 0, 0, 0]);
        let back = unpack(&a).unwrap();
        assert_eq!(back.files, files());
        assert_eq!(back.metadata.name, "demo");
    }

    /// A tarball with one entry whose name is written raw (the tar crate's own setters
    /// refuse `..` and absolute paths), and whose type is `kind`.
    fn raw_tar(name: &str, kind: tar::EntryType) -> Vec<u8> {
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_entry_type(kind);
        header.set_size(if kind.is_file() { 2 } else { 0 });
        header.set_mode(0o644);
        if kind.is_symlink() {
            header.set_link_name("/etc/passwd").unwrap();
        }
        header.set_cksum();
        let gz = flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        let body: &[u8] = if kind.is_file() { b"x\n" } else { b"" };
        tar.append(&header, body).unwrap();
        tar.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn unsafe_paths_and_links_are_refused() {
        for (name, kind, expect) in [
            ("demo/../../evil.rs", tar::EntryType::Regular, "unsafe path"),
            ("/etc/cron.d/evil", tar::EntryType::Regular, "unsafe path"),
            (
                "demo/src/link",
                tar::EntryType::Symlink,
                "not a regular file",
            ),
            ("demo/src/hard", tar::EntryType::Link, "not a regular file"),
            ("evil.rs", tar::EntryType::Regular, "outside its folder"),
        ] {
            let err = unpack(&raw_tar(name, kind)).unwrap_err();
            assert!(err.contains(expect), "{name}: {err}");
        }
    }

    #[test]
    fn an_altered_file_is_caught_by_the_metadata() {
        let mut changed = files();
        let good = pack(&manifest(), &files()).unwrap();
        let meta = unpack(&good).unwrap().metadata;
        changed.insert("src/lib.rs".into(), b"// evil\n".to_vec());
        // Repack the altered files with the old metadata.
        let gz = flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        let json = serde_json::to_vec(&meta).unwrap();
        for (path, bytes) in changed
            .iter()
            .map(|(p, b)| (p.as_str(), b.clone()))
            .chain([(METADATA, json)])
        {
            let mut h = tar::Header::new_ustar();
            h.set_path(format!("demo/{path}")).unwrap();
            h.set_size(bytes.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append(&h, bytes.as_slice()).unwrap();
        }
        let bytes = tar.into_inner().unwrap().finish().unwrap();
        assert!(unpack(&bytes).unwrap_err().contains("altered"));
    }
}
