//! Storage paths: `ObjectPath::parse` (plain) and `ObjectPath::parse_encoded` (from a URL),
//! bucket names, and the lookup that joins them onto the storage root. An accepted path,
//! joined to the root, stays lexically inside it; parsing is idempotent; the real lookup
//! (`FileStore::locate`) only ever answers a location under the root.
#![no_main]

use std::path::{Component, Path};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use solobase::storage::{Bucket, ObjectPath, FileStore, StorageError};
use solobase_sdk::storage::{MAX_PATH_BYTES, MAX_SEGMENTS};

/// A storage root with one bucket directory (`files`) holding one directory (`dir`).
fn storage() -> &'static FileStore {
    static STORAGE: OnceLock<FileStore> = OnceLock::new();
    STORAGE.get_or_init(|| {
        let root =
            std::env::temp_dir().join(format!("solobase-fuzz-storage-{}", std::process::id()));
        std::fs::create_dir_all(root.join("files/dir")).expect("a temporary directory");
        FileStore::open(&root).expect("the storage root opens")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The first line may name a bucket; the rest is the path.
    let (bucket, path) = text.split_once('\n').unwrap_or(("files", text));
    let bucket = match Bucket::parse(bucket) {
        Ok(b) => {
            let b_path = Path::new(b.as_str());
            assert!(
                matches!(
                    b_path.components().collect::<Vec<_>>()[..],
                    [Component::Normal(_)]
                ),
                "bucket {:?} is not one plain directory name",
                b.as_str()
            );
            b
        }
        Err(e) => {
            assert!(e.to_string().contains("invalid bucket name"));
            Bucket::parse("files").expect("a valid bucket")
        }
    };
    for parsed in [ObjectPath::parse(path), ObjectPath::parse_encoded(path)] {
        match parsed {
            Ok(p) => accepted(&bucket, &p),
            Err(e) => assert!(e.to_string().starts_with("invalid object path: ")),
        }
    }
});

fn accepted(bucket: &Bucket, p: &ObjectPath) {
    let joined = p.as_string();
    assert!(
        !joined.is_empty() && joined.len() <= MAX_PATH_BYTES,
        "{joined:?}"
    );
    assert!(!joined.contains(['\0', '\\']), "{joined:?}");
    let segments: Vec<&str> = joined.split('/').collect();
    assert!(segments.len() <= MAX_SEGMENTS);
    // Lexically inside the root: only plain names, no `..`, `.`, root or prefix.
    let relative = Path::new(&joined);
    assert!(
        relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
            && relative.components().count() == segments.len(),
        "{joined:?} has a component other than a plain name"
    );
    let root = storage().root();
    let lexical = root.join(bucket.as_str()).join(relative);
    assert!(lexical.starts_with(root.join(bucket.as_str())));
    // Idempotent: the decoded form parses to itself, and so does its encoding.
    assert_eq!(ObjectPath::parse(&joined).as_ref(), Ok(p), "{joined:?}");
    assert_eq!(
        ObjectPath::parse_encoded(&encode(&joined)).as_ref(),
        Ok(p),
        "{joined:?}"
    );
    // The real lookup (no directories created) stays under the bucket.
    match storage().locate(bucket, p, false) {
        Ok(location) => {
            assert!(
                location.starts_with(root.join(bucket.as_str())),
                "{location:?}"
            );
            assert_eq!(location, lexical);
        }
        Err(StorageError::NotFound) => {}
        Err(e) => panic!("lookup of {joined:?}: {e}"),
    }
}

/// Percent-encodes everything but unreserved characters and `/`.
fn encode(path: &str) -> String {
    let mut out = String::new();
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
