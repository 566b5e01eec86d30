//! HTTP requests for a tenant another scheduler follows are passed to it whole (method, path, query,
//! headers, a streamed body both ways), so a client may call any scheduler of the farm.

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response, Uri, Version};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Set on a forwarded request (the forwarding scheduler's id): a scheduler never forwards a request
/// again, so two schedulers that disagree for a moment about the owner cannot bounce it between them.
pub const FORWARDED_BY_HEADER: &str = "x-reverie-forwarded-by";

pub type ProxyClient = Client<HttpConnector, Body>;

pub fn client() -> ProxyClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(std::time::Duration::from_secs(2)));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// How long the holder may take to start answering (an event stream's body may then go on for as
/// long as the request runs).
const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Why a request could not be passed on.
#[derive(Debug)]
pub enum ForwardError {
    /// The holder could not be reached: nothing was sent, so the client may simply retry.
    Unreachable(String),
    /// Sent, but no answer came back: the holder may have acted on it (retry with the same
    /// idempotency key).
    NoAnswer(String),
}

/// Headers that describe one connection, not the request (RFC 9110, 7.6.1): never passed on.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut axum::http::HeaderMap) {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    for name in HOP_BY_HOP.iter().copied().map(str::to_string).chain(named) {
        headers.remove(name.as_str());
    }
}

/// Sends `request` to the scheduler at `base_url` and returns its answer, or why it could not.
pub async fn forward(
    client: &ProxyClient,
    base_url: &str,
    forwarded_by: &str,
    request: Request<Body>,
) -> Result<Response<Body>, ForwardError> {
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |path| path.as_str());
    let uri: Uri = format!("{}{path}", base_url.trim_end_matches('/'))
        .parse()
        .map_err(|e| ForwardError::Unreachable(format!("holder URL {base_url:?}: {e}")))?;
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    parts.headers.remove(header::HOST);
    strip_hop_by_hop(&mut parts.headers);
    let by = HeaderValue::from_str(forwarded_by)
        .map_err(|e| ForwardError::Unreachable(e.to_string()))?;
    parts.headers.insert(FORWARDED_BY_HEADER, by);
    let sent = tokio::time::timeout(
        ANSWER_WITHIN,
        client.request(Request::from_parts(parts, body)),
    );
    let mut response = match sent.await {
        Ok(Ok(response)) => response,
        Ok(Err(error)) if error.is_connect() => {
            return Err(ForwardError::Unreachable(format!("{base_url}: {error}")))
        }
        Ok(Err(error)) => return Err(ForwardError::NoAnswer(format!("{base_url}: {error}"))),
        Err(_) => {
            return Err(ForwardError::NoAnswer(format!(
                "{base_url}: no answer within {ANSWER_WITHIN:?}"
            )))
        }
    };
    strip_hop_by_hop(response.headers_mut());
    Ok(response.map(Body::new))
}
