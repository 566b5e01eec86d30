//! Client helpers for the CLI (`reverie submit|status|cancel|refine`): they talk to a running
//! scheduler's HTTP API (plain HTTP/1.1 through hyper; TLS is the ingress controller's business).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;

use crate::api::{ConsentView, GenerationStatus, IDEMPOTENCY_HEADER};
use crate::error::{Result, SchedulerError};
use crate::replies::Reply;
use crate::tenants::ForgetReport;

/// An API client bound to one scheduler and one tenant token.
#[derive(Clone)]
pub struct ApiClient {
    base: String,
    token: String,
    http: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("base", &self.base)
            .finish()
    }
}

/// An answer the API gave: its status and body (a `Reply` for errors and submissions).
#[derive(Debug, Clone)]
pub struct ApiAnswer<T> {
    pub status: StatusCode,
    pub body: T,
}

impl ApiClient {
    /// `base` is like `http://127.0.0.1:8080`; `token` is `TENANT:SECRET`.
    pub fn new(base: &str, token: &str) -> ApiClient {
        ApiClient {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    fn failed(&self, detail: impl std::fmt::Display) -> SchedulerError {
        SchedulerError::Client {
            address: self.base.clone(),
            detail: detail.to_string(),
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        idempotency_key: Option<&str>,
    ) -> Result<ApiAnswer<T>> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json");
        if let Some(key) = idempotency_key {
            builder = builder.header(IDEMPOTENCY_HEADER, key);
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| self.failed(e))?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| self.failed(e))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| self.failed(e))?
            .to_bytes();
        let body = serde_json::from_slice(&bytes).map_err(|e| {
            self.failed(format!(
                "HTTP {status}: unreadable answer ({e}): {}",
                String::from_utf8_lossy(&bytes)
            ))
        })?;
        Ok(ApiAnswer { status, body })
    }

    /// Submits a request (a schema v1 JSON object). `idempotency_key` makes resubmission safe.
    pub async fn submit(
        &self,
        request: &serde_json::Value,
        idempotency_key: Option<&str>,
    ) -> Result<ApiAnswer<Reply>> {
        let body = serde_json::to_vec(request).map_err(|e| self.failed(e))?;
        self.call(Method::POST, "/v1/generations", Some(body), idempotency_key)
            .await
    }

    /// Refines request `id` with a new request (its prompt and any overrides).
    pub async fn refine(
        &self,
        id: &str,
        request: &serde_json::Value,
        idempotency_key: Option<&str>,
    ) -> Result<ApiAnswer<Reply>> {
        let body = serde_json::to_vec(request).map_err(|e| self.failed(e))?;
        self.call(
            Method::POST,
            &format!("/v1/generations/{id}/refine"),
            Some(body),
            idempotency_key,
        )
        .await
    }

    /// The state of request `id`; `Err` carries the API's rejection when it is not found.
    pub async fn status(
        &self,
        id: &str,
    ) -> Result<std::result::Result<GenerationStatus, ApiAnswer<Reply>>> {
        self.status_like(Method::GET, id).await
    }

    /// Cancels request `id`.
    pub async fn cancel(
        &self,
        id: &str,
    ) -> Result<std::result::Result<GenerationStatus, ApiAnswer<Reply>>> {
        self.status_like(Method::DELETE, id).await
    }

    async fn status_like(
        &self,
        method: Method,
        id: &str,
    ) -> Result<std::result::Result<GenerationStatus, ApiAnswer<Reply>>> {
        let answer: ApiAnswer<serde_json::Value> = self
            .call(method, &format!("/v1/generations/{id}"), None, None)
            .await?;
        if answer.status.is_success() {
            let status = serde_json::from_value(answer.body).map_err(|e| self.failed(e))?;
            Ok(Ok(status))
        } else {
            let reply = serde_json::from_value(answer.body).map_err(|e| self.failed(e))?;
            Ok(Err(ApiAnswer {
                status: answer.status,
                body: reply,
            }))
        }
    }

    /// The tenant's consent per source.
    pub async fn consent_show(&self) -> Result<ConsentView> {
        self.expect_ok(self.call(Method::GET, "/v1/consents", None, None).await?)
    }

    /// Grants consent for `source` (`library` or `album:NAME`).
    pub async fn consent_grant(&self, source: &str) -> Result<ConsentView> {
        let path = format!("/v1/consents/{}", percent_encode(source));
        self.expect_ok(self.call(Method::PUT, &path, None, None).await?)
    }

    /// Revokes consent for `source`; the answer counts the jobs it cancelled.
    pub async fn consent_revoke(&self, source: &str) -> Result<ConsentView> {
        let path = format!("/v1/consents/{}", percent_encode(source));
        self.expect_ok(self.call(Method::DELETE, &path, None, None).await?)
    }

    /// Forgets the token's tenant entirely and reports what was deleted.
    pub async fn forget(&self) -> Result<ForgetReport> {
        self.expect_ok(self.call(Method::DELETE, "/v1/tenant", None, None).await?)
    }

    fn expect_ok<T: DeserializeOwned>(&self, answer: ApiAnswer<serde_json::Value>) -> Result<T> {
        if !answer.status.is_success() {
            return Err(self.failed(format!("HTTP {}: {}", answer.status, answer.body)));
        }
        serde_json::from_value(answer.body).map_err(|e| self.failed(e))
    }

    /// Polls request `id` until every job finished or `timeout` passes (`--wait`).
    pub async fn wait(
        &self,
        id: &str,
        poll: Duration,
        timeout: Duration,
    ) -> Result<GenerationStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let status = match self.status(id).await? {
                Ok(status) => status,
                Err(answer) => {
                    return Err(self.failed(format!("HTTP {}: {:?}", answer.status, answer.body)))
                }
            };
            if status.state.is_final() {
                return Ok(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(self.failed(format!(
                    "request {id} still {} after {timeout:?}",
                    status.state.label()
                )));
            }
            tokio::time::sleep(poll).await;
        }
    }
}

/// Percent-encodes a path segment (album names have spaces and more).
fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b':') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn album_sources_are_encoded_for_paths() {
        assert_eq!(percent_encode("album:Italy 2023"), "album:Italy%202023");
        assert_eq!(percent_encode("library"), "library");
        assert_eq!(percent_encode("a/b"), "a%2Fb");
    }
}
