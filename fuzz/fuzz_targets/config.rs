//! Configuration files: the host's `solobase.toml` (`Config::from_toml`, then the checks of
//! `Config::load`), and an extension's `<name>.toml` (TOML → JSON → the JSON Schema of its
//! typed config → the type), as the host reads them at start-up and on reload. Refusals are
//! messages; an accepted configuration is one the server can run with.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use solobase::config::Config;
use solobase::runtime::{config_file, reconfigure, registrations};
use solobase_ext_webhooks::WebhooksConfig;
use solobase_sdk::{Manifest, Registration};

thread_local! {
    /// The compiled-in extensions, with their names.
    static REGISTRATIONS: Vec<(String, Registration)> = registrations()
        .into_iter()
        .map(|r| {
            let name = Manifest::parse(r.manifest).expect("a shipped manifest").name;
            (name.to_string(), r)
        })
        .collect();
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    REGISTRATIONS.with(|regs| match usize::from(which) % (regs.len() + 1) {
        0 => host(text),
        n => extension(&regs[n - 1].0, &regs[n - 1].1, text),
    });
});

fn host(text: &str) {
    let mut config = match Config::from_toml(text) {
        Ok(config) => config,
        Err(message) => {
            // One line naming the position (when the parser knows it).
            assert!(
                !message.is_empty() && !message.contains('\n'),
                "{message:?}"
            );
            return;
        }
    };
    if let Err(e) = config.check() {
        assert!(!e.to_string().is_empty());
        return;
    }
    // Everything the server derives from an accepted configuration.
    let ext = &config.extensions;
    assert!((1..=1000).contains(&ext.pool_size) && ext.max_in_flight > 0);
    let _ = ext.breaker();
    for name in ext.limits.keys().map(String::as_str).chain(["analytics"]) {
        let limits = ext.resolve(name);
        assert!(limits.max_in_flight > 0);
        assert!((1..=1000).contains(&limits.db.max_connections));
    }
    let _ = config.storage_dir();
}

fn extension(name: &str, registration: &Registration, text: &str) {
    let file = Path::new("config/extensions/x.toml");
    let value = match config_file::parse(file, text) {
        Ok(value) => value,
        Err(message) => {
            assert!(
                message.starts_with("config/extensions/x.toml: "),
                "{message}"
            );
            return;
        }
    };
    assert!(value.is_object(), "a TOML document is a table: {value}");
    match config_file::check(file, registration, &value) {
        Ok(()) => {
            // What the running extension receives parses as its type, and has a tag.
            registration
                .check_config(&value)
                .expect("an accepted configuration parses as the extension's type");
            assert_eq!(reconfigure::etag(&value).len(), 24);
            if name == "webhooks" {
                // The extension's own check refuses nothing the schema accepted (but the
                // `allow` list's syntax, which no schema states).
                let mut config: WebhooksConfig =
                    serde_json::from_value(value).expect("checked above");
                config.allow.clear();
                if let Err(e) = config.check() {
                    panic!("the schema accepts a configuration the extension refuses: {e}");
                }
            }
        }
        Err(message) => {
            for line in message.lines() {
                assert!(line.starts_with("config/extensions/x.toml: "), "{message}");
            }
        }
    }
}
