//! The shipped extensions, as their users meet them.

// The analytics extension; its browser test needs the probe feature's harness.
mod analytics;
#[cfg(feature = "webhooks")]
mod webhooks;
// The webhooks dashboard in headless Chromium, under its Content-Security-Policy.
#[cfg(all(feature = "webhooks", feature = "probe"))]
mod webhooks_dashboard;
// The webhooks extension's SSRF guard, attacked through IPv6 forms of 127.0.0.1.
#[cfg(feature = "webhooks")]
mod webhooks_ssrf;
