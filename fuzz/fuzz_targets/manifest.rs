//! `extension.toml`: `Manifest::parse` and the pieces it is made of. An accepted manifest
//! holds only valid parts, and written out again it parses to the same manifest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use solobase_sdk::manifest::{ExtensionName, FORMAT, Manifest, Permission, Tier};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    pieces(text);
    match Manifest::parse(text) {
        Ok(manifest) => accepted(&manifest),
        Err(message) => assert!(!message.trim().is_empty(), "an empty error for {text:?}"),
    }
});

/// The name, permission and tier parsers on their own (each line of the input).
fn pieces(text: &str) {
    for line in text.lines().take(8) {
        if let Ok(name) = ExtensionName::parse(line) {
            let schema = name.schema();
            assert!(schema.len() <= 36, "{schema}");
            assert!(
                schema
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "schema {schema:?} is not a plain PostgreSQL identifier"
            );
            assert_eq!(ExtensionName::parse(name.as_str()).as_ref(), Ok(&name));
        }
        if let Ok(p) = Permission::parse(line) {
            assert_eq!(p.as_str(), line);
            assert!(!p.as_str().starts_with('.') && !p.as_str().ends_with('.'));
        }
        if let Ok(tier) = Tier::parse(line) {
            assert_eq!(tier.as_str(), line);
        }
    }
}

fn accepted(m: &Manifest) {
    assert!((1..=FORMAT).contains(&m.format));
    assert_eq!(ExtensionName::parse(m.name.as_str()).as_ref(), Ok(&m.name));
    assert!(!m.description.is_empty());
    assert_eq!(m.description, m.description.trim());
    assert!(
        m.permissions.windows(2).all(|w| w[0] < w[1]),
        "permissions are not sorted and unique: {:?}",
        m.permissions
    );
    assert!(!m.dependencies.contains_key(&m.name), "depends on itself");
    let again = Manifest::parse(&render(m))
        .unwrap_or_else(|e| panic!("an accepted manifest, written out, is refused: {e}"));
    assert_eq!(&again, m, "parse(render(manifest)) differs");
}

/// The manifest as `extension.toml` text.
fn render(m: &Manifest) -> String {
    let mut ext = toml::Table::new();
    let mut put = |k: &str, v: toml::Value| {
        ext.insert(k.into(), v);
    };
    put("format", toml::Value::Integer(m.format.into()));
    put("name", m.name.as_str().into());
    put("version", m.version.to_string().into());
    put("description", m.description.as_str().into());
    put(
        "authors",
        toml::Value::Array(m.authors.iter().map(|a| a.as_str().into()).collect()),
    );
    if let Some(license) = &m.license {
        put("license", license.as_str().into());
    }
    if let Some(repository) = &m.repository {
        put("repository", repository.as_str().into());
    }
    if let Some(tier) = m.tier {
        put("tier", tier.as_str().into());
    }
    put("host", m.host.to_string().into());
    put(
        "permissions",
        toml::Value::Array(m.permissions.iter().map(|p| p.as_str().into()).collect()),
    );
    let deps: toml::Table = m
        .dependencies
        .iter()
        .map(|(name, req)| (name.as_str().to_owned(), req.to_string().into()))
        .collect();
    let mut root = toml::Table::new();
    root.insert("extension".into(), ext.into());
    root.insert("dependencies".into(), deps.into());
    toml::to_string(&root).expect("a table serializes")
}
