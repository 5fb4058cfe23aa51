//! One bounded HTTP client per master for the provider's API and metadata service: connect and
//! total timeouts from the config, no proxy taken from the environment (metadata must never go
//! through one), and the provider's request id kept with every answer and error.

use crate::config::Timeouts;

use super::CallError;

/// An answer, with the request id the provider gave it.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: String,
    /// `x-amzn-requestid`, `x-request-id`, … when the provider sent one.
    pub request_id: Option<String>,
}

/// The client.
#[derive(Debug, Clone)]
pub struct Http {
    client: reqwest::Client,
}

/// Headers providers name their request ids in.
const REQUEST_ID_HEADERS: &[&str] = &["x-amzn-requestid", "x-amz-request-id", "x-correlation-id", "x-request-id"];

/// An answer larger than this is refused: no API answer vipctl reads comes near it.
const MAX_BODY: usize = 4 << 20;

impl Http {
    /// A client bounded by `t`.
    pub fn new(t: Timeouts) -> Result<Http, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(t.connect)
            .timeout(t.total)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("vipctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        Ok(Http { client })
    }

    /// Sends `req`; `what` names the call in errors. Any answer is returned, error statuses too:
    /// the caller reads the provider's error body.
    pub async fn send(&self, what: &str, req: reqwest::RequestBuilder) -> Result<Answer, CallError> {
        let resp = req.send().await.map_err(|e| CallError::transport(what, &e))?;
        let status = resp.status().as_u16();
        let request_id = REQUEST_ID_HEADERS
            .iter()
            .find_map(|h| resp.headers().get(*h))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if resp.content_length().is_some_and(|l| l > MAX_BODY as u64) {
            return Err(CallError::new(what, "the answer is too large", request_id, false));
        }
        let bytes = resp.bytes().await.map_err(|e| CallError::transport(what, &e))?;
        if bytes.len() > MAX_BODY {
            return Err(CallError::new(what, "the answer is too large", request_id, false));
        }
        Ok(Answer { status, body: String::from_utf8_lossy(&bytes).into_owned(), request_id })
    }

    /// A request builder.
    pub fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        self.client.request(method, url)
    }
}

impl CallError {
    fn transport(what: &str, e: &reqwest::Error) -> CallError {
        let why = if e.is_timeout() {
            "no answer in time (cloud timeout_ms / connect_timeout_ms)".to_string()
        } else if e.is_connect() {
            format!("cannot connect: {}", source_chain(e))
        } else {
            source_chain(e)
        };
        CallError::new(what, &why, None, true)
    }
}

/// The error with its causes, which reqwest keeps apart.
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// Whether an answer's status is worth another try (throttling, the provider's own trouble).
pub fn retryable(status: u16) -> bool {
    status == 429 || status >= 500
}
