//! [`JsonBytes`]: an optional JSON body read as bytes, for handlers that parse it themselves
//! (an empty body means "the defaults"). Like `web::Json`, it holds to `server.max_json_bytes`
//! and to the body deadline, wants `Content-Type: application/json` when there is a body, and
//! answers every failure in the common error shape.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};

use crate::error::{ApiError, ErrorCode, payload_error};

/// The raw body; empty or blank when the client sent none.
#[derive(Debug)]
pub(crate) struct JsonBytes(pub web::Bytes);

impl std::ops::Deref for JsonBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// Whether `req` says its body is JSON (`application/json`, or a `+json` type).
fn says_json(req: &HttpRequest) -> bool {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return false;
    };
    let essence = value
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl FromRequest for JsonBytes {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let json = says_json(req);
        let limit = req
            .app_data::<web::Data<super::AppState>>()
            .map_or(0, |state| state.config.server.max_json_bytes);
        let reading = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            let body = reading
                .await
                .map_err(|e| match e.as_error::<PayloadError>() {
                    Some(PayloadError::Overflow) => ApiError::new(
                        ErrorCode::PayloadTooLarge,
                        format!("JSON body larger than {limit} bytes (server.max_json_bytes)"),
                    ),
                    Some(e) => payload_error(e),
                    None => ApiError::invalid(format!("cannot read the body: {e}")),
                })?;
            if !json && !body.iter().all(u8::is_ascii_whitespace) {
                return Err(ApiError::new(
                    ErrorCode::UnsupportedMediaType,
                    "expected Content-Type: application/json",
                ));
            }
            Ok(Self(body))
        })
    }
}
