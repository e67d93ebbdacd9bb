//! The management API under `/ext/webhooks/api`, for administrators and holders of the
//! `webhooks.manage` permission: endpoints (with their secrets), deliveries and attempts,
//! resending, replaying and test events.

use std::sync::Arc;

use serde::Deserialize;
use solobase_sdk::EventType;
use solobase_sdk::prelude::*;
use uuid::Uuid;

use crate::Webhooks;
use crate::engine::fail_pending;

mod checks;
mod rows;

use checks::*;
use rows::*;

/// The permission that opens the API to non-administrators.
pub const PERMISSION: &str = "webhooks.manage";

/// The event type of test events (never in the outbox).
pub const TEST_EVENT: &str = "webhooks.test";

pub(crate) fn routes(r: &mut Routes<Webhooks>) {
    let p = PERMISSION;
    r.get("/api/endpoints", Webhooks::list).permission(p);
    r.post("/api/endpoints", Webhooks::create).permission(p);
    r.get("/api/endpoints/{id}", Webhooks::read).permission(p);
    r.patch("/api/endpoints/{id}", Webhooks::update)
        .permission(p);
    r.delete("/api/endpoints/{id}", Webhooks::delete)
        .permission(p);
    r.get("/api/endpoints/{id}/secret", Webhooks::secret)
        .permission(p);
    r.post("/api/endpoints/{id}/rotate", Webhooks::rotate)
        .permission(p);
    r.post("/api/endpoints/{id}/test", Webhooks::test_event)
        .permission(p);
    r.get("/api/deliveries", Webhooks::deliveries).permission(p);
    r.get("/api/deliveries/{id}", Webhooks::delivery)
        .permission(p);
    r.get("/api/deliveries/{id}/attempts", Webhooks::attempts)
        .permission(p);
    r.post("/api/deliveries/{id}/resend", Webhooks::resend)
        .permission(p);
    r.post("/api/replay", Webhooks::replay).permission(p);
    r.get("/api/summary", Webhooks::summary).permission(p);
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewEndpoint {
    url: String,
    #[serde(default)]
    description: String,
    event_types: Vec<String>,
    #[serde(default)]
    headers: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    rate_limit: Option<i32>,
    #[serde(default = "yes")]
    enabled: bool,
}

fn yes() -> bool {
    true
}

/// A partial change: absent fields stay; `rate_limit: null` removes the limit.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointChange {
    url: Option<String>,
    description: Option<String>,
    event_types: Option<Vec<String>>,
    headers: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default, with = "double_option")]
    rate_limit: Option<Option<i32>>,
    enabled: Option<bool>,
}

mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i32>>, D::Error> {
        Option::<i32>::deserialize(d).map(Some)
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Rotation {
    /// Seconds the old secret keeps signing; the configured default when absent.
    overlap_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Replay {
    /// RFC 3339: failed deliveries created since then are sent again.
    since: String,
    endpoint_id: Option<Uuid>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DeliveryFilter {
    endpoint_id: Option<Uuid>,
    status: Option<String>,
    event_type: Option<String>,
    since: Option<String>,
    before_id: Option<i64>,
    limit: Option<i64>,
}

impl Webhooks {
    async fn list(self: Arc<Self>, _req: Request) -> Result<Response> {
        let client = self.ctx.db.client().await?;
        let rows = client
            .query(
                &format!("SELECT {ENDPOINT_COLUMNS} FROM endpoints ORDER BY created_at"),
                &[],
            )
            .await?;
        let list: Vec<_> = rows.iter().map(endpoint_json).collect();
        Ok(Response::json(&list))
    }

    async fn create(self: Arc<Self>, req: Request) -> Result<Response> {
        let new: NewEndpoint = req.json()?;
        let config = self.ctx.config.get();
        check_url_text(&new.url, &self.ctx.http)?;
        check_patterns(&new.event_types)?;
        check_headers(&new.headers)?;
        check_rate(new.rate_limit)?;
        if new.description.len() > 1000 {
            return Err(bad("description: at most 1000 characters"));
        }
        let client = self.ctx.db.client().await?;
        let count: i64 = client
            .query_one("SELECT count(*) FROM endpoints", &[])
            .await?
            .get(0);
        if count >= i64::from(config.max_endpoints) {
            return Err(ExtensionError::Conflict(
                "the maximum number of endpoints is reached (max_endpoints); delete one first"
                    .into(),
            ));
        }
        let secret = new_secret()?;
        let row = client
            .query_one(
                &format!(
                    "INSERT INTO endpoints (id, url, description, event_types, headers, \
                       rate_limit, enabled, secret) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {ENDPOINT_COLUMNS}"
                ),
                &[
                    &Uuid::new_v4(),
                    &new.url,
                    &new.description,
                    &new.event_types,
                    &serde_json::Value::Object(new.headers),
                    &new.rate_limit,
                    &new.enabled,
                    &secret,
                ],
            )
            .await?;
        let mut body = endpoint_json(&row);
        // Shown once here; later only through GET …/secret.
        body["secret"] = secret.into();
        Ok(Response::json_with(StatusCode::CREATED, &body))
    }

    async fn read(self: Arc<Self>, req: Request) -> Result<Response> {
        let id: Uuid = param_id(&req)?;
        let client = self.ctx.db.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE id = $1"),
                &[&id],
            )
            .await?
            .ok_or_else(no_endpoint)?;
        Ok(Response::json(&endpoint_json(&row)))
    }

    async fn update(self: Arc<Self>, req: Request) -> Result<Response> {
        let id: Uuid = param_id(&req)?;
        let change: EndpointChange = req.json()?;
        if let Some(url) = &change.url {
            check_url_text(url, &self.ctx.http)?;
        }
        if let Some(p) = &change.event_types {
            check_patterns(p)?;
        }
        if let Some(h) = &change.headers {
            check_headers(h)?;
        }
        if let Some(r) = change.rate_limit {
            check_rate(r)?;
        }
        let mut client = self.ctx.db.client().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_opt(
                &format!(
                    "UPDATE endpoints SET \
                       url = COALESCE($2, url), description = COALESCE($3, description), \
                       event_types = COALESCE($4, event_types), headers = COALESCE($5, headers), \
                       rate_limit = CASE WHEN $6 THEN $7 ELSE rate_limit END, \
                       enabled = COALESCE($8, enabled), \
                       disabled_reason = CASE WHEN $8 THEN NULL \
                         WHEN $8 = false THEN 'disabled by an administrator' \
                         ELSE disabled_reason END, \
                       failing_since = CASE WHEN $8 THEN NULL ELSE failing_since END, \
                       updated_at = now() \
                     WHERE id = $1 RETURNING {ENDPOINT_COLUMNS}"
                ),
                &[
                    &id,
                    &change.url,
                    &change.description,
                    &change.event_types,
                    &change.headers.map(serde_json::Value::Object),
                    &change.rate_limit.is_some(),
                    &change.rate_limit.flatten(),
                    &change.enabled,
                ],
            )
            .await?
            .ok_or_else(no_endpoint)?;
        if change.enabled == Some(false) {
            fail_pending(&tx, &[id]).await?;
        }
        tx.commit().await?;
        Ok(Response::json(&endpoint_json(&row)))
    }

    async fn delete(self: Arc<Self>, req: Request) -> Result<Response> {
        let id: Uuid = param_id(&req)?;
        let client = self.ctx.db.client().await?;
        match client
            .execute("DELETE FROM endpoints WHERE id = $1", &[&id])
            .await?
        {
            0 => Err(no_endpoint()),
            _ => Ok(Response::new(StatusCode::NO_CONTENT)),
        }
    }

    async fn secret(self: Arc<Self>, req: Request) -> Result<Response> {
        let id: Uuid = param_id(&req)?;
        let client = self.ctx.db.client().await?;
        let row = client
            .query_opt(
                "SELECT secret, CASE WHEN previous_secret_expires_at > now() \
                   THEN previous_secret_expires_at END FROM endpoints WHERE id = $1",
                &[&id],
            )
            .await?
            .ok_or_else(no_endpoint)?;
        Ok(Response::json(&serde_json::json!({
            "secret": row.get::<_, String>(0),
            "previous_secret_expires_at": time_json(row.get(1)),
        })))
    }

    async fn rotate(self: Arc<Self>, req: Request) -> Result<Response> {
        let id: Uuid = param_id(&req)?;
        let rotation: Rotation = if req.body.is_empty() {
            Rotation::default()
        } else {
            req.json()?
        };
        let overlap = rotation
            .overlap_secs
            .unwrap_or(self.ctx.config.get().rotation_overlap_secs);
        if overlap > 30 * 86400 {
            return Err(bad("overlap_secs: at most 30 days (2592000)"));
        }
        let secret = new_secret()?;
        let client = self.ctx.db.client().await?;
        let row = client
            .query_opt(
                "UPDATE endpoints SET previous_secret = secret, \
                   previous_secret_expires_at = now() + $3 * interval '1 second', \
                   secret = $2, updated_at = now() \
                 WHERE id = $1 RETURNING previous_secret_expires_at",
                &[&id, &secret, &(overlap as f64)],
            )
            .await?
            .ok_or_else(no_endpoint)?;
        Ok(Response::json(&serde_json::json!({
            "secret": secret,
            "previous_secret_expires_at": time_json(row.get(0)),
        })))
    }

    async fn test_event(self: Arc<Self>, req: Request) -> Result<Response> {
        let id: Uuid = param_id(&req)?;
        let who = req.identity()?.email.clone();
        let event = Event::new(
            EventType::parse(TEST_EVENT).ok_or_else(|| ExtensionError::internal("test type"))?,
            serde_json::json!({"message": "a test event from Solobase", "requested_by": who}),
        );
        let client = self.ctx.db.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "INSERT INTO deliveries (endpoint_id, event_id, event_type, payload) \
                     SELECT id, $2, $3, $4 FROM endpoints WHERE id = $1 AND enabled \
                     RETURNING {DELIVERY_COLUMNS}"
                ),
                &[&id, &event.id, &TEST_EVENT, &crate::feed::payload(&event)],
            )
            .await?
            .ok_or_else(|| ExtensionError::NotFound("no such enabled endpoint".into()))?;
        self.engine.wake.notify_one();
        Ok(Response::json_with(
            StatusCode::ACCEPTED,
            &delivery_json(&row),
        ))
    }

    async fn deliveries(self: Arc<Self>, req: Request) -> Result<Response> {
        let filter: DeliveryFilter = serde_urlencoded::from_str(&req.head.query).map_err(|e| {
            bad(format!(
                "query: {e}; use endpoint_id, status, event_type, since, before_id, limit"
            ))
        })?;
        if let Some(s) = &filter.status
            && !matches!(s.as_str(), "pending" | "succeeded" | "failed")
        {
            return Err(bad("status is pending, succeeded or failed"));
        }
        let since = filter
            .since
            .as_deref()
            .map(|s| parse_time("since", s))
            .transpose()?;
        let event_like = match filter.event_type.as_deref() {
            None => None,
            Some(p) if valid_pattern(p) => Some(match p.strip_suffix('*') {
                Some(prefix) => format!("{prefix}%"),
                None => p.to_owned(),
            }),
            Some(_) => return Err(bad("event_type is a type or a wildcard such as user.*")),
        };
        let limit = filter.limit.unwrap_or(100).clamp(1, 1000);
        let client = self.ctx.db.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {DELIVERY_COLUMNS} FROM deliveries \
                     WHERE ($1::uuid IS NULL OR endpoint_id = $1) \
                       AND ($2::text IS NULL OR status = $2) \
                       AND ($3::text IS NULL OR event_type LIKE $3) \
                       AND ($4::timestamptz IS NULL OR created_at >= $4) \
                       AND ($5::bigint IS NULL OR id < $5) \
                     ORDER BY id DESC LIMIT $6"
                ),
                &[
                    &filter.endpoint_id,
                    &filter.status,
                    &event_like,
                    &since,
                    &filter.before_id,
                    &limit,
                ],
            )
            .await?;
        let list: Vec<_> = rows.iter().map(delivery_json).collect();
        Ok(Response::json(&list))
    }

    async fn delivery(self: Arc<Self>, req: Request) -> Result<Response> {
        let id: i64 = param_id(&req)?;
        let client = self.ctx.db.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {DELIVERY_COLUMNS}, payload FROM deliveries WHERE id = $1"),
                &[&id],
            )
            .await?
            .ok_or_else(no_delivery)?;
        let mut body = delivery_json(&row);
        body["payload"] = row.get("payload");
        Ok(Response::json(&body))
    }

    async fn attempts(self: Arc<Self>, req: Request) -> Result<Response> {
        let id: i64 = param_id(&req)?;
        let client = self.ctx.db.client().await?;
        if client
            .query_opt("SELECT 1 FROM deliveries WHERE id = $1", &[&id])
            .await?
            .is_none()
        {
            return Err(no_delivery());
        }
        let rows = client
            .query(
                "SELECT attempt, started_at, duration_ms, status_code, response_body, error, \
                   succeeded FROM attempts WHERE delivery_id = $1 ORDER BY id",
                &[&id],
            )
            .await?;
        let list: Vec<_> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "attempt": r.get::<_, i32>(0),
                    "started_at": time_json(r.get(1)),
                    "duration_ms": r.get::<_, i32>(2),
                    "status_code": r.get::<_, Option<i32>>(3),
                    "response_body": r.get::<_, String>(4),
                    "error": r.get::<_, Option<String>>(5),
                    "succeeded": r.get::<_, bool>(6),
                })
            })
            .collect();
        Ok(Response::json(&list))
    }

    async fn resend(self: Arc<Self>, req: Request) -> Result<Response> {
        let id: i64 = param_id(&req)?;
        let client = self.ctx.db.client().await?;
        let row = client
            .query_opt(
                "SELECT e.enabled FROM deliveries d JOIN endpoints e ON e.id = d.endpoint_id \
                 WHERE d.id = $1",
                &[&id],
            )
            .await?
            .ok_or_else(no_delivery)?;
        if !row.get::<_, bool>(0) {
            return Err(ExtensionError::Conflict(
                "the endpoint is disabled; enable it first (PATCH {\"enabled\": true})".into(),
            ));
        }
        let row = client
            .query_one(
                &format!(
                    "UPDATE deliveries SET status = 'pending', next_attempt_at = now(), \
                       retries_from = attempts \
                     WHERE id = $1 RETURNING {DELIVERY_COLUMNS}"
                ),
                &[&id],
            )
            .await?;
        self.engine.wake.notify_one();
        Ok(Response::json_with(
            StatusCode::ACCEPTED,
            &delivery_json(&row),
        ))
    }

    async fn replay(self: Arc<Self>, req: Request) -> Result<Response> {
        let replay: Replay = req.json()?;
        let since = parse_time("since", &replay.since)?;
        let client = self.ctx.db.client().await?;
        let queued = client
            .execute(
                "UPDATE deliveries d SET status = 'pending', next_attempt_at = now(), \
                   retries_from = d.attempts \
                 FROM endpoints e \
                 WHERE e.id = d.endpoint_id AND e.enabled AND d.status = 'failed' \
                   AND d.created_at >= $1 AND ($2::uuid IS NULL OR d.endpoint_id = $2)",
                &[&since, &replay.endpoint_id],
            )
            .await?;
        self.engine.wake.notify_one();
        Ok(Response::json_with(
            StatusCode::ACCEPTED,
            &serde_json::json!({"queued": queued}),
        ))
    }

    /// Per endpoint: deliveries by status over the last 24 hours.
    async fn summary(self: Arc<Self>, _req: Request) -> Result<Response> {
        let client = self.ctx.db.client().await?;
        let rows = client
            .query(
                "SELECT endpoint_id, \
                   count(*) FILTER (WHERE status = 'pending'), \
                   count(*) FILTER (WHERE status = 'succeeded'), \
                   count(*) FILTER (WHERE status = 'failed') \
                 FROM deliveries WHERE created_at > now() - interval '24 hours' \
                 GROUP BY endpoint_id",
                &[],
            )
            .await?;
        let list: Vec<_> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "endpoint_id": r.get::<_, Uuid>(0),
                    "pending": r.get::<_, i64>(1),
                    "succeeded": r.get::<_, i64>(2),
                    "failed": r.get::<_, i64>(3),
                })
            })
            .collect();
        Ok(Response::json(&list))
    }
}

fn no_endpoint() -> ExtensionError {
    ExtensionError::NotFound("no such endpoint".into())
}

fn no_delivery() -> ExtensionError {
    ExtensionError::NotFound("no such delivery".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_patterns() {
        for ok in ["*", "user.*", "user.created", "extension.analytics.*"] {
            assert!(valid_pattern(ok), "{ok}");
        }
        for bad in ["", "user.", "User.*", "a b", "*.created"] {
            assert!(!valid_pattern(bad), "{bad}");
        }
    }

    #[test]
    fn hop_by_hop_content_and_signature_headers_are_refused() {
        for name in [
            "Connection",
            "transfer-encoding",
            "Host",
            "webhook-id",
            "Webhook-Signature",
            "content-type",
        ] {
            assert!(refused_header(name), "{name}");
        }
        let ok: serde_json::Map<_, _> =
            serde_json::json!({"authorization": "Bearer x", "x-tenant": "7"})
                .as_object()
                .unwrap()
                .clone();
        check_headers(&ok).unwrap();
        for bad in [
            serde_json::json!({"webhook-id": "x"}),
            serde_json::json!({"bad name": "x"}),
            serde_json::json!({"x-a": 1}),
            serde_json::json!({"x-a": "line\nbreak"}),
        ] {
            assert!(check_headers(bad.as_object().unwrap()).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_are_absolute_http_and_then_the_host_s_to_judge() {
        use solobase_sdk::outbound::{Http, HttpClient, NoHttp, OutboundError};
        /// The host's guard, as far as this test needs it: refuses one address.
        struct Guard;
        impl HttpClient for Guard {
            fn send(
                &self,
                r: solobase_sdk::outbound::Request,
            ) -> solobase_sdk::services::BoxFuture<
                '_,
                std::result::Result<solobase_sdk::outbound::Response, OutboundError>,
            > {
                NoHttp.send(r)
            }
            fn check(&self, url: &str) -> std::result::Result<(), OutboundError> {
                match url.contains("127.0.0.1") {
                    true => Err(OutboundError::Refused("refused to call 127.0.0.1".into())),
                    false => Ok(()),
                }
            }
        }
        let http = Http::new(std::sync::Arc::new(Guard));
        check_url_text("https://example.com/hook", &http).unwrap();
        check_url_text("HTTP://example.com/hook", &http).unwrap();
        let long = format!("https://example.com/{}", "a".repeat(2048));
        for bad in ["ftp://example.com", "example.com/hook", long.as_str()] {
            assert!(check_url_text(bad, &http).is_err(), "{bad}");
        }
        let refused = check_url_text("http://127.0.0.1:9000/", &http).unwrap_err();
        assert!(refused.to_string().contains("refused to call"), "{refused}");
    }

    #[test]
    fn secrets_are_whsec_with_32_random_bytes() {
        let a = new_secret().unwrap();
        let parsed: solobase_sdk::webhooks::Secret = a.parse().unwrap();
        assert_eq!(parsed.as_bytes().len(), 32);
        assert!(a.starts_with("whsec_"));
        assert_ne!(a, new_secret().unwrap());
    }
}
