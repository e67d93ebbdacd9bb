//! The shipped extensions, as their users meet them.

// The analytics extension; its browser test needs the probe feature's harness.
mod analytics;
#[cfg(feature = "webhooks")]
mod webhooks;
