//! The migrations check: `migrations/V<n>__<name>.sql` numbered 1..n without gaps or
//! duplicates, each with its down script `V<n>__<name>.down.sql` (as the SDK's `Migration`
//! and `solobase extensions rollback` expect), and no other files.

use std::collections::BTreeMap;
use std::path::Path;

use super::Report;

/// `migrations/`: `V<n>__<name>.sql` numbered 1..n without gaps or duplicates, each with its
/// `V<n>__<name>.down.sql`.
pub(super) fn check(dir: &Path, report: &mut Report) {
    let folder = dir.join("migrations");
    let Ok(entries) = std::fs::read_dir(&folder) else {
        report
            .notes
            .push("no migrations/ folder: no migrations".into());
        return;
    };
    let mut files: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut ups: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let mut downs: BTreeMap<String, String> = BTreeMap::new();
    for file in &files {
        let rel = format!("migrations/{file}");
        match parse_migration_name(file) {
            Some((version, _, false)) => ups.entry(version).or_default().push(file.clone()),
            Some((_, stem, true)) => {
                downs.insert(stem, file.clone());
            }
            None => report.problem(
                "migrations",
                &rel,
                None,
                "not a migration's name: use V<n>__<name>.sql and its down script \
                 V<n>__<name>.down.sql"
                    .into(),
            ),
        }
    }
    for (version, names) in &ups {
        if names.len() > 1 {
            report.problem(
                "migrations",
                &format!("migrations/{}", names[1]),
                None,
                format!(
                    "version {version} is also {}: give each its own version",
                    names[0]
                ),
            );
        }
    }
    let mut expected = 1;
    for version in ups.keys() {
        if *version != expected {
            report.problem(
                "migrations",
                "migrations",
                None,
                format!(
                    "versions must run 1, 2, 3 … without gaps: V{expected} is missing before \
                     V{version}"
                ),
            );
        }
        expected = version + 1;
    }
    let up_stems: Vec<String> = ups
        .values()
        .flatten()
        .map(|f| f.trim_end_matches(".sql").to_owned())
        .collect();
    for stem in &up_stems {
        if !downs.contains_key(stem) {
            report.problem(
                "migrations",
                &format!("migrations/{stem}.sql"),
                None,
                format!(
                    "no down script: add migrations/{stem}.down.sql reverting it, so that it can \
                     be rolled back"
                ),
            );
        }
    }
    for (stem, file) in &downs {
        if !up_stems.contains(stem) {
            report.problem(
                "migrations",
                &format!("migrations/{file}"),
                None,
                format!("a down script without its migration migrations/{stem}.sql"),
            );
        }
    }
    report.notes.push(format!(
        "{} migration{} checked",
        ups.len(),
        if ups.len() == 1 { "" } else { "s" }
    ));
}

/// `V12__add_things.sql` → `(12, "V12__add_things", false)`; `….down.sql` → `(…, true)`.
fn parse_migration_name(file: &str) -> Option<(u32, String, bool)> {
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
        .map(|v| (v, stem.to_owned(), down))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_names() {
        assert_eq!(
            parse_migration_name("V1__init.sql"),
            Some((1, "V1__init".into(), false))
        );
        assert_eq!(
            parse_migration_name("V12__add_things.down.sql"),
            Some((12, "V12__add_things".into(), true))
        );
        for bad in [
            "V1_init.sql",
            "init.sql",
            "V__x.sql",
            "Vx__y.sql",
            "V1__.sql",
            "V1__a-b.sql",
        ] {
            assert_eq!(parse_migration_name(bad), None, "{bad}");
        }
    }
}
