//! What an extension may ask of the host's services: the permissions granted to it (today,
//! those its manifest requests). A call outside them fails with the typed
//! `ExtensionError::PermissionDenied`, is counted, logged and audited (sampled).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};

use deadpool_postgres::Pool;
use serde_json::json;
use solobase_sdk::{ExtensionError, ExtensionName};

use super::faults::{Sampler, audit_later};
use crate::audit::{Actor, Entry, Outcome};

/// The permissions of one extension and the calls refused for want of one.
#[derive(Debug)]
pub struct Grants {
    extension: ExtensionName,
    granted: BTreeSet<String>,
    denied: AtomicU64,
    sampler: Sampler,
    pool: Option<Pool>,
}

impl Grants {
    pub fn new(
        extension: ExtensionName,
        granted: impl IntoIterator<Item = String>,
        pool: Option<Pool>,
    ) -> Self {
        Self {
            extension,
            granted: granted.into_iter().collect(),
            denied: AtomicU64::new(0),
            sampler: Sampler::default(),
            pool,
        }
    }

    /// Whether `permission` is granted.
    pub fn allows(&self, permission: &str) -> bool {
        self.granted.contains(permission)
    }

    /// The granted permissions.
    pub fn granted(&self) -> impl Iterator<Item = &str> {
        self.granted.iter().map(String::as_str)
    }

    /// Calls refused so far.
    pub fn denied(&self) -> u64 {
        self.denied.load(Ordering::Relaxed)
    }

    /// `Ok` when `permission` is granted; otherwise the refusal, counted, logged and audited.
    pub fn require(&self, permission: &str) -> Result<(), ExtensionError> {
        if self.allows(permission) {
            return Ok(());
        }
        self.denied.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(extension = %self.extension, permission, "service call refused: permission not granted");
        if let (Some(pool), Some(held_back)) = (&self.pool, self.sampler.due()) {
            let entry = Entry::new(
                Actor::System,
                "extension.permission_denied",
                Outcome::Denied,
            )
            .extension(self.extension.as_str())
            .detail(json!({"permission": permission, "unaudited_before": held_back}));
            audit_later(pool, entry);
        }
        Err(ExtensionError::PermissionDenied {
            permission: permission.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_granted_permissions_pass_and_refusals_are_counted() {
        let grants = Grants::new(
            ExtensionName::parse("g").unwrap(),
            ["users.read".to_owned()],
            None,
        );
        assert!(grants.require("users.read").is_ok());
        let e = grants.require("events.publish").unwrap_err();
        assert!(
            matches!(e, ExtensionError::PermissionDenied { ref permission } if permission == "events.publish")
        );
        assert_eq!(grants.denied(), 1);
    }
}
