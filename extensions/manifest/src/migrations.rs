//! An extension's migrations folder, `migrations/`: `V<n>__<name>.sql` numbered 1..n without
//! gaps or duplicates, each with its down script `V<n>__<name>.down.sql`, and no other
//! files. The one reader of the folder: the extension's build script embeds what it finds
//! ([`build`]), `solobase extensions validate` reports what it refuses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One migration found: its version, name and the paths of its two scripts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationFiles {
    /// `n` of `V<n>__<name>.sql`.
    pub version: u32,
    /// `name` of `V<n>__<name>.sql`.
    pub name: String,
    /// The up script.
    pub up: PathBuf,
    /// The down script.
    pub down: PathBuf,
}

/// A problem with the folder: the file (relative to the crate, e.g. `migrations/V1__x.sql`)
/// and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file or folder concerned.
    pub file: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// Reads `<crate>/migrations`: the migrations in version order, and every problem. A crate
/// without the folder has no migrations and no problem.
pub fn read(crate_dir: &Path) -> (Vec<MigrationFiles>, Vec<Problem>) {
    let folder = crate_dir.join("migrations");
    let mut problems = Vec::new();
    let Ok(entries) = std::fs::read_dir(&folder) else {
        return (Vec::new(), problems);
    };
    let mut problem = |file: String, message: String| problems.push(Problem { file, message });
    let mut files: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut ups: BTreeMap<u32, Vec<(String, String)>> = BTreeMap::new();
    let mut downs: BTreeMap<String, String> = BTreeMap::new();
    for file in &files {
        match parse_name(file) {
            Some((version, stem, name, false)) => {
                ups.entry(version).or_default().push((stem, name));
            }
            Some((_, stem, _, true)) => {
                downs.insert(stem, file.clone());
            }
            None => problem(
                format!("migrations/{file}"),
                "not a migration's name: use V<n>__<name>.sql and its down script \
                 V<n>__<name>.down.sql"
                    .into(),
            ),
        }
    }
    for (version, names) in &ups {
        if names.len() > 1 {
            problem(
                format!("migrations/{}.sql", names[1].0),
                format!(
                    "version {version} is also {}.sql: give each its own version",
                    names[0].0
                ),
            );
        }
    }
    let mut expected = 1;
    for version in ups.keys() {
        if *version != expected {
            problem(
                "migrations".into(),
                format!(
                    "versions must run 1, 2, 3 … without gaps: V{expected} is missing before \
                     V{version}"
                ),
            );
        }
        expected = version + 1;
    }
    let mut found = Vec::new();
    for (version, names) in &ups {
        for (stem, name) in names {
            if !downs.contains_key(stem) {
                problem(
                    format!("migrations/{stem}.sql"),
                    format!(
                        "no down script: add migrations/{stem}.down.sql reverting it, so that \
                         it can be rolled back"
                    ),
                );
                continue;
            }
            found.push(MigrationFiles {
                version: *version,
                name: name.clone(),
                up: folder.join(format!("{stem}.sql")),
                down: folder.join(format!("{stem}.down.sql")),
            });
        }
    }
    for (stem, file) in &downs {
        if !ups.values().flatten().any(|(s, _)| s == stem) {
            problem(
                format!("migrations/{file}"),
                format!("a down script without its migration migrations/{stem}.sql"),
            );
        }
    }
    (found, problems)
}

/// `V12__add_things.sql` → `(12, "V12__add_things", "add_things", false)`; `….down.sql` →
/// `(…, true)`.
fn parse_name(file: &str) -> Option<(u32, String, String, bool)> {
    let (stem, down) = match file.strip_suffix(".down.sql") {
        Some(stem) => (stem, true),
        None => (file.strip_suffix(".sql")?, false),
    };
    let (version, name) = stem.strip_prefix('V')?.split_once("__")?;
    let valid_name =
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let valid_version = !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit());
    (valid_name && valid_version)
        .then(|| version.parse().ok())
        .flatten()
        .map(|v| (v, stem.to_owned(), name.to_owned(), down))
}

/// For an extension's `build.rs`: embeds `migrations/` in the crate. Writes
/// `$OUT_DIR/solobase_migrations.rs` (an expression, `&[Migration …]`, that
/// `solobase_sdk::export_extension!` includes) and asks Cargo to run again when the folder
/// changes, so a new migration is never missed. A folder with problems fails the build,
/// each problem on its own line.
///
/// ```text
/// // build.rs
/// fn main() {
///     solobase_manifest::migrations::build();
/// }
/// ```
pub fn build() {
    println!("cargo::rerun-if-changed=migrations");
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run by Cargo"));
    let (found, problems) = read(&dir);
    if !problems.is_empty() {
        for p in &problems {
            println!("cargo::error={}: {}", p.file, p.message);
        }
        std::process::exit(1);
    }
    let mut out = String::from("&[\n");
    // Paths relative to the crate, joined when the crate compiles: a target directory
    // shared by two checkouts (or a moved one) never includes another tree's files.
    let relative = |p: &std::path::Path| {
        p.strip_prefix(&dir)
            .expect("migrations are inside the crate")
            .to_string_lossy()
            .replace('\\', "/")
    };
    for m in &found {
        out.push_str(&format!(
            "    ::solobase_sdk::Migration {{ version: {}, name: {:?}, \
             up: include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/\", {:?})), \
             down: include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/\", {:?})) }},\n",
            m.version,
            m.name,
            relative(&m.up),
            relative(&m.down)
        ));
    }
    out.push(']');
    let target = PathBuf::from(std::env::var("OUT_DIR").expect("run by Cargo"))
        .join("solobase_migrations.rs");
    std::fs::write(&target, out).expect("cannot write solobase_migrations.rs in OUT_DIR");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_names() {
        assert_eq!(
            parse_name("V1__init.sql"),
            Some((1, "V1__init".into(), "init".into(), false))
        );
        assert_eq!(
            parse_name("V12__add_things.down.sql"),
            Some((12, "V12__add_things".into(), "add_things".into(), true))
        );
        for bad in [
            "V1_init.sql",
            "init.sql",
            "V__x.sql",
            "Vx__y.sql",
            "V1__.sql",
            "V1__a-b.sql",
        ] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_folder_is_read_in_order_and_its_problems_named() {
        let dir = std::env::temp_dir().join(format!("solobase-mig-{}", uuid::Uuid::new_v4()));
        let m = dir.join("migrations");
        std::fs::create_dir_all(&m).unwrap();
        for f in ["V1__a.sql", "V1__a.down.sql", "V2__b.sql", "V2__b.down.sql"] {
            std::fs::write(m.join(f), f).unwrap();
        }
        let (found, problems) = read(&dir);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            found
                .iter()
                .map(|f| (f.version, f.name.as_str()))
                .collect::<Vec<_>>(),
            vec![(1, "a"), (2, "b")]
        );
        for f in ["V4__d.sql", "V3__c.sql", "V9__x.down.sql", "notes.txt"] {
            std::fs::write(m.join(f), f).unwrap();
        }
        let (_, problems) = read(&dir);
        let text = format!("{problems:?}");
        for expected in [
            "no down script: add migrations/V3__c.down.sql",
            "a down script without its migration migrations/V9__x.sql",
            "not a migration's name",
        ] {
            assert!(text.contains(expected), "{expected} in {text}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(read(&dir), (Vec::new(), Vec::new()));
    }
}
