//! The host's JSON API under `/api/v1` (and the probes `/healthz`, `/readyz`, `/metrics`):
//! one module per area, each with its handlers and their `#[utoipa::path]` declarations.

pub(crate) mod audit;
pub(crate) mod auth;
pub(crate) mod buckets;
pub(crate) mod extensions;
pub(crate) mod metrics;
pub(crate) mod permissions;
pub(crate) mod probes;
pub(crate) mod storage;
pub(crate) mod users;

use super::Api;

/// Every host route: a handler and its `#[utoipa::path]` declaration, which gives the method
/// and path it is mounted at and documents it (see [`Api`]).
pub(crate) fn routes(api: &mut Api) {
    // First: the benchmark's route is matched before any other.
    api.add(probes::__path_healthz, probes::healthz)
        .add(probes::__path_readyz, probes::readyz)
        .add(metrics::__path_for_admins, metrics::for_admins)
        .add(super::openapi::__path_openapi, super::openapi::openapi);
    auth::routes(api);
    users::routes(api);
    storage::routes(api);
    buckets::routes(api);
    audit::routes(api);
    permissions::routes(api);
    extensions::routes(api);
}
