//! What an extension may ask of the host's services: the permissions its manifest requests
//! and an administrator granted (`solobase.extension_grants`, see [`super::control`]). A call
//! outside them fails with the typed `ExtensionError::PermissionDenied`, is counted, logged
//! and audited (sampled). Grants change at run time: every instance applies them when told.

use std::collections::BTreeSet;
use std::sync::RwLock;
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
    requested: Vec<String>,
    /// Requested and granted.
    granted: RwLock<BTreeSet<String>>,
    denied: AtomicU64,
    sampler: Sampler,
    pool: Option<Pool>,
}

impl Grants {
    /// The permissions of an extension requesting `requested`, of which `granted` are.
    pub(crate) fn new(
        extension: ExtensionName,
        requested: Vec<String>,
        granted: &BTreeSet<String>,
        pool: Option<Pool>,
    ) -> Self {
        let grants = Self {
            extension,
            requested,
            granted: RwLock::default(),
            denied: AtomicU64::new(0),
            sampler: Sampler::default(),
            pool,
        };
        grants.set(granted);
        grants
    }

    /// Replaces the granted set (only requested permissions count).
    pub(crate) fn set(&self, granted: &BTreeSet<String>) {
        let effective = self
            .requested
            .iter()
            .filter(|p| granted.contains(*p))
            .cloned()
            .collect();
        *self.granted.write().unwrap_or_else(|e| e.into_inner()) = effective;
    }

    /// Whether `permission` is granted.
    pub fn allows(&self, permission: &str) -> bool {
        self.granted
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(permission)
    }

    /// What the manifest requests.
    pub(crate) fn requested(&self) -> &[String] {
        &self.requested
    }

    /// The granted permissions.
    pub(crate) fn granted(&self) -> Vec<String> {
        let granted = self.granted.read().unwrap_or_else(|e| e.into_inner());
        granted.iter().cloned().collect()
    }

    /// Requested and not granted.
    pub(crate) fn pending(&self) -> Vec<String> {
        let granted = self.granted.read().unwrap_or_else(|e| e.into_inner());
        self.requested
            .iter()
            .filter(|p| !granted.contains(*p))
            .cloned()
            .collect()
    }

    /// Calls refused so far.
    pub(crate) fn denied(&self) -> u64 {
        self.denied.load(Ordering::Relaxed)
    }

    /// `Ok` when `permission` is granted; otherwise the refusal, counted, logged and audited.
    pub(crate) fn require(&self, permission: &str) -> Result<(), ExtensionError> {
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
        let requested = vec!["events.publish".to_owned(), "users.read".to_owned()];
        let granted = ["users.read".to_owned(), "storage.write".to_owned()].into();
        let grants = Grants::new(
            ExtensionName::parse("g").unwrap(),
            requested,
            &granted,
            None,
        );
        assert!(grants.require("users.read").is_ok());
        // Granted but not requested: does not count.
        assert!(grants.require("storage.write").is_err());
        let e = grants.require("events.publish").unwrap_err();
        assert!(
            matches!(e, ExtensionError::PermissionDenied { ref permission } if permission == "events.publish")
        );
        assert_eq!(grants.denied(), 2);
        assert_eq!(grants.pending(), ["events.publish"]);
        grants.set(&["events.publish".to_owned()].into());
        assert!(grants.require("events.publish").is_ok());
        assert!(grants.require("users.read").is_err());
    }
}
