//! Endpoints and deliveries as the management API shows them: rows of
//! `ext_webhooks.endpoints` and `deliveries` to JSON.

use solobase_sdk::{serde_json, tokio_postgres};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::feed::rfc3339;

pub(super) fn time_json(t: Option<OffsetDateTime>) -> serde_json::Value {
    t.map_or(serde_json::Value::Null, |t| rfc3339(t).into())
}

pub(super) const ENDPOINT_COLUMNS: &str = "id, url, description, event_types, enabled, headers, rate_limit, \
    disabled_reason, failing_since, created_at, updated_at, \
    previous_secret_expires_at > now() AS rotating";

pub(super) fn endpoint_json(row: &tokio_postgres::Row) -> serde_json::Value {
    serde_json::json!({
        "id": row.get::<_, Uuid>("id"),
        "url": row.get::<_, String>("url"),
        "description": row.get::<_, String>("description"),
        "event_types": row.get::<_, Vec<String>>("event_types"),
        "enabled": row.get::<_, bool>("enabled"),
        "headers": row.get::<_, serde_json::Value>("headers"),
        "rate_limit": row.get::<_, Option<i32>>("rate_limit"),
        "disabled_reason": row.get::<_, Option<String>>("disabled_reason"),
        "failing_since": time_json(row.get("failing_since")),
        "rotating": row.get::<_, Option<bool>>("rotating").unwrap_or(false),
        "created_at": time_json(row.get("created_at")),
        "updated_at": time_json(row.get("updated_at")),
    })
}

pub(super) const DELIVERY_COLUMNS: &str = "id, endpoint_id, event_id, event_type, status, attempts, \
    next_attempt_at, last_attempt_at, last_status, last_error, delivered_at, created_at";

pub(super) fn delivery_json(row: &tokio_postgres::Row) -> serde_json::Value {
    let status: String = row.get("status");
    serde_json::json!({
        "id": row.get::<_, i64>("id"),
        "endpoint_id": row.get::<_, Uuid>("endpoint_id"),
        "event_id": row.get::<_, Uuid>("event_id"),
        "message_id": crate::message_id(row.get("event_id")),
        "event_type": row.get::<_, String>("event_type"),
        "attempts": row.get::<_, i32>("attempts"),
        "next_attempt_at": if status == "pending" { time_json(row.get("next_attempt_at")) } else { serde_json::Value::Null },
        "status": status,
        "last_attempt_at": time_json(row.get("last_attempt_at")),
        "last_status": row.get::<_, Option<i32>>("last_status"),
        "last_error": row.get::<_, Option<String>>("last_error"),
        "delivered_at": time_json(row.get("delivered_at")),
        "created_at": time_json(row.get("created_at")),
    })
}
