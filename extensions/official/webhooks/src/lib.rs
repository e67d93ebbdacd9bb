//! `webhooks`: delivers system events to registered HTTP endpoints.
//!
//! This version manages endpoints (`/ext/webhooks/api/endpoints`, admins only) and turns every
//! committed event that an enabled endpoint subscribes to into a pending row of the
//! `deliveries` queue, with the payload a receiver will get. Signing and sending are built on
//! that queue.

use std::sync::Arc;

use serde::Deserialize;
use solobase_sdk::prelude::*;
use solobase_sdk::{EventType, tokio_postgres};
use uuid::Uuid;

/// Configuration: `config/extensions/webhooks.toml`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Most endpoints an instance may register.
    pub max_endpoints: u32,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self { max_endpoints: 100 }
    }
}

/// The extension.
#[derive(Debug)]
pub struct Webhooks {
    ctx: InitContext<WebhooksConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewEndpoint {
    url: String,
    #[serde(default)]
    description: String,
    event_types: Vec<String>,
}

/// Whether `pattern` is an event type or a `prefix.*`/`*` wildcard.
fn valid_pattern(pattern: &str) -> bool {
    pattern == "*" || EventType::parse(pattern.strip_suffix(".*").unwrap_or(pattern)).is_some()
}

fn endpoint_json(row: &tokio_postgres::Row) -> serde_json::Value {
    let id: Uuid = row.get("id");
    let url: String = row.get("url");
    let description: String = row.get("description");
    let event_types: Vec<String> = row.get("event_types");
    let enabled: bool = row.get("enabled");
    serde_json::json!({
        "id": id, "url": url, "description": description,
        "event_types": event_types, "enabled": enabled,
    })
}

impl Webhooks {
    async fn list(self: Arc<Self>, _req: Request) -> Result<Response> {
        let client = self.ctx.db.client().await?;
        let rows = client
            .query("SELECT * FROM endpoints ORDER BY created_at", &[])
            .await?;
        let list: Vec<_> = rows.iter().map(endpoint_json).collect();
        Ok(Response::json(&list))
    }

    async fn create(self: Arc<Self>, req: Request) -> Result<Response> {
        let new: NewEndpoint = req.json()?;
        if !(new.url.starts_with("https://") || new.url.starts_with("http://")) {
            return Err(ExtensionError::InvalidRequest(
                "url must start with https:// or http://".into(),
            ));
        }
        if new.event_types.is_empty() || !new.event_types.iter().all(|p| valid_pattern(p)) {
            return Err(ExtensionError::InvalidRequest(
                "event_types must list event types or wildcards such as user.* or *".into(),
            ));
        }
        let client = self.ctx.db.client().await?;
        let count: i64 = client
            .query_one("SELECT count(*) FROM endpoints", &[])
            .await?
            .get(0);
        if count >= i64::from(self.ctx.config.get().max_endpoints) {
            return Err(ExtensionError::Conflict(
                "the maximum number of endpoints is reached (max_endpoints)".into(),
            ));
        }
        let row = client
            .query_one(
                "INSERT INTO endpoints (id, url, description, event_types) VALUES ($1, $2, $3, $4) \
                 RETURNING *",
                &[
                    &Uuid::new_v4(),
                    &new.url,
                    &new.description,
                    &new.event_types,
                ],
            )
            .await?;
        Ok(Response::json_with(
            StatusCode::CREATED,
            &endpoint_json(&row),
        ))
    }

    async fn delete(self: Arc<Self>, req: Request) -> Result<Response> {
        let id: Uuid = req
            .param("id")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ExtensionError::InvalidRequest("the id is not a UUID".into()))?;
        let client = self.ctx.db.client().await?;
        match client
            .execute("DELETE FROM endpoints WHERE id = $1", &[&id])
            .await?
        {
            0 => Err(ExtensionError::NotFound("no such endpoint".into())),
            _ => Ok(Response::new(StatusCode::NO_CONTENT)),
        }
    }

    async fn deliveries(self: Arc<Self>, _req: Request) -> Result<Response> {
        let client = self.ctx.db.client().await?;
        let rows = client
            .query(
                "SELECT id, endpoint_id, event_id, event_type, status FROM deliveries \
                 ORDER BY id DESC LIMIT 100",
                &[],
            )
            .await?;
        let list: Vec<_> = rows
            .iter()
            .map(|r| {
                let id: i64 = r.get(0);
                let endpoint: Uuid = r.get(1);
                let event: Uuid = r.get(2);
                let event_type: String = r.get(3);
                let status: String = r.get(4);
                serde_json::json!({"id": id, "endpoint_id": endpoint, "event_id": event,
                    "event_type": event_type, "status": status})
            })
            .collect();
        Ok(Response::json(&list))
    }

    /// Queues `event` for every enabled endpoint subscribed to it.
    async fn enqueue(&self, event: &Event) -> Result<u64> {
        let client = self.ctx.db.client().await?;
        let endpoints = client
            .query("SELECT id, event_types FROM endpoints WHERE enabled", &[])
            .await?;
        let payload = serde_json::json!({
            "type": event.event_type,
            "timestamp": event.occurred_at.unix_timestamp(),
            "data": event.data,
        });
        let mut queued = 0;
        for row in endpoints {
            let patterns: Vec<String> = row.get(1);
            if patterns.iter().any(|p| event.event_type.matches(p)) {
                let id: Uuid = row.get(0);
                queued += client
                    .execute(
                        "INSERT INTO deliveries (endpoint_id, event_id, event_type, payload) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                        &[&id, &event.id, &event.event_type.as_str(), &payload],
                    )
                    .await?;
            }
        }
        Ok(queued)
    }
}

impl Extension for Webhooks {
    type Config = WebhooksConfig;

    async fn initialize(ctx: InitContext<WebhooksConfig>) -> Result<Self> {
        Ok(Self { ctx })
    }

    fn routes(&self, routes: &mut Routes<Self>) {
        routes.get("/api/endpoints", Self::list).admin();
        routes.post("/api/endpoints", Self::create).admin();
        routes.delete("/api/endpoints/{id}", Self::delete).admin();
        routes.get("/api/deliveries", Self::deliveries).admin();
    }

    fn hooks(&self) -> HookSet {
        HookSet::new().events("*")
    }

    async fn on_event(&self, event: &Event) {
        if let Err(e) = self.enqueue(event).await {
            solobase_sdk::tracing::warn!(error = %e, event = %event.id, "cannot queue deliveries");
        }
    }

    fn migrations() -> Vec<Migration> {
        vec![Migration {
            version: 1,
            name: "endpoints",
            up: include_str!("../migrations/V1__endpoints.sql"),
            down: include_str!("../migrations/V1__endpoints.down.sql"),
        }]
    }

    fn required_permissions() -> Vec<&'static str> {
        vec!["events.subscribe"]
    }
}

solobase_sdk::export_extension!(Webhooks);

#[cfg(test)]
mod tests {
    use solobase_sdk::testing::{TestHarness, identity};

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

    #[tokio::test]
    async fn endpoints_are_for_admins_and_are_validated_before_storage() {
        let harness = TestHarness::<Webhooks>::builder("webhooks")
            .build()
            .await
            .unwrap();
        let body = serde_json::json!({"url": "ftp://example.com", "event_types": ["user.*"]});
        let user = identity("u@example.com", Role::User);
        let res = harness
            .call(
                Request::new(Method::POST, "/api/endpoints")
                    .with_json(&body)
                    .with_identity(user),
            )
            .await;
        assert_eq!(res.status, StatusCode::FORBIDDEN);
        let admin = identity("a@example.com", Role::Admin);
        let res = harness
            .call(
                Request::new(Method::POST, "/api/endpoints")
                    .with_json(&body)
                    .with_identity(admin.clone()),
            )
            .await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST);
        let bad_types = serde_json::json!({"url": "https://example.com", "event_types": ["Nope"]});
        let res = harness
            .call(
                Request::new(Method::POST, "/api/endpoints")
                    .with_json(&bad_types)
                    .with_identity(admin),
            )
            .await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST);
    }
}
