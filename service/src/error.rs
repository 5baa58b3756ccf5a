//! The service's two errors: [`ApiError`], why a request was refused, with its one conversion
//! into an HTTP answer; and [`Error`], for everything else (start-up, reload, serving).
//!
//! Every message is fixed text or numbers from the configuration: nothing from a request's
//! values, tokens or credentials ever reaches an answer or a log line through here.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pseudonym_client::wire::{ErrorBody, ErrorDetail};

use crate::auth::Forbidden;

/// Why a whole request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON of the endpoint's shape.
    #[error(
        "request body is not valid JSON for this endpoint ({category} error at line {line}, column {column})"
    )]
    BadJson {
        /// `syntax`, `data` (wrong shape or type) or `eof`.
        category: &'static str,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// An argument with a value that cannot work.
    #[error("{0}")]
    InvalidArgument(&'static str),
    /// No credentials, or unknown ones.
    #[error("missing or unknown API key: send it as `Authorization: Bearer <key>` or `x-api-key`")]
    Unauthorized,
    /// Credentials that do not allow this.
    #[error("{0}")]
    Forbidden(#[from] Forbidden),
    /// More values than `limits.max_values`.
    #[error("too many values in one request: the limit is {max}; split the batch")]
    TooManyValues {
        /// The limit.
        max: usize,
    },
    /// A body larger than `limits.max_body_bytes`.
    #[error("request body too large: the limit is {max} bytes; split the batch")]
    BodyTooLarge {
        /// The limit.
        max: usize,
    },
    /// A value or token longer than allowed.
    #[error("item {index} is longer than the limit of {max} bytes")]
    ValueTooLong {
        /// Index of the first such item.
        index: usize,
        /// The limit.
        max: usize,
    },
    /// The API key has its limit of requests in flight: try again shortly.
    #[error("this API key has {limit} requests in flight, its limit; retry after a short pause")]
    KeyBusy {
        /// The key's limit.
        limit: usize,
    },
    /// The API key has sent its budget of values per second: try again after `retry_after_s`.
    #[error("this API key has sent its values per second; retry after the seconds in Retry-After")]
    KeyOverBudget {
        /// Whole seconds until its budget is out of debt, at least 1.
        retry_after_s: u64,
    },
    /// Too many requests in flight: try again shortly.
    #[error("the service is at its concurrency limit; retry after a short pause")]
    Overloaded,
    /// The request took longer than `limits.request_timeout_ms`.
    #[error("the request took longer than the service's timeout; retry or send smaller batches")]
    Timeout,
    /// No such route.
    #[error("no such route; see /openapi.json")]
    NotFound,
    /// The audit line could not be written and `audit_fail_closed` is set: nothing is answered
    /// without its audit line.
    #[error("the audit log cannot be written, so nothing is re-identified; retry later")]
    AuditUnavailable,
    /// A fault of the service itself.
    #[error("internal error")]
    Internal,
}

/// The error code of an answer, left in the response's extensions for the metrics layer.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

impl ApiError {
    /// The answer's status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadJson { .. } | ApiError::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::TooManyValues { .. } | ApiError::BodyTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::ValueTooLong { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Overloaded | ApiError::Timeout | ApiError::AuditUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::KeyBusy { .. } | ApiError::KeyOverBudget { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadJson { .. } => "bad_json",
            ApiError::InvalidArgument(_) => "invalid_argument",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::TooManyValues { .. } => "too_many_values",
            ApiError::BodyTooLarge { .. } => "body_too_large",
            ApiError::ValueTooLong { .. } => "value_too_long",
            ApiError::Overloaded => "overloaded",
            ApiError::KeyBusy { .. } | ApiError::KeyOverBudget { .. } => "too_many_requests",
            ApiError::Timeout => "timeout",
            ApiError::NotFound => "not_found",
            ApiError::AuditUnavailable => "audit_unavailable",
            ApiError::Internal => "internal",
        }
    }

    /// Describes a JSON error by position only: serde's own message may quote the input.
    pub fn bad_json(error: &serde_json::Error) -> Self {
        use serde_json::error::Category;
        ApiError::BadJson {
            category: match error.classify() {
                Category::Io | Category::Syntax => "syntax",
                Category::Data => "data",
                Category::Eof => "eof",
            },
            line: error.line(),
            column: error.column(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.to_string(),
            },
        };
        let mut response = (self.status(), Json(body)).into_response();
        let headers = response.headers_mut();
        match self {
            ApiError::Overloaded
            | ApiError::Timeout
            | ApiError::AuditUnavailable
            | ApiError::KeyBusy { .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::KeyOverBudget { retry_after_s } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
            }
            ApiError::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response.extensions_mut().insert(ErrorCode(self.code()));
        response
    }
}

/// Everything off the request path that can fail: configuration, keys, the KMS, TLS, a
/// rollout check, the audit log, serving. Messages name files, fields and replicas; never a key
/// or a value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration could not be read or merged.
    #[error("configuration: {0}")]
    ConfigLoad(#[from] Box<figment::Error>),
    /// A configuration field with a value that cannot work.
    #[error("configuration: {field}: {problem}")]
    ConfigInvalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        problem: &'static str,
    },
    /// A `[format_preserving.<domain>]` table that cannot work.
    #[error("configuration: format_preserving.{domain}: {problem}")]
    FormatInvalid {
        /// The table's domain.
        domain: String,
        /// What is wrong.
        problem: String,
    },
    /// The keyring is unusable.
    #[error(transparent)]
    Keyring(#[from] crate::keyring::KeyringError),
    /// The replaced service's key is unusable.
    #[error(transparent)]
    LambdaKey(#[from] crate::lambda::LambdaKeyError),
    /// A keyring is configured but no API key file.
    #[error(
        "configuration: api_keys_file: required when a keyring is configured (create one with `pseudonymd api-key`)"
    )]
    MissingApiKeys,
    /// No keyring, but a production setting: dev mode would serve a throw-away keyring.
    #[error(
        "no keyring configured, but {setting} is: that is not dev mode. Set keyring_file (or PSEUDONYM_KEYRING), or remove {setting} to run in dev mode"
    )]
    KeyringMissing {
        /// The production setting found.
        setting: &'static str,
    },
    /// The API key file lists no key: every request would be refused.
    #[error("API key file {0} lists no keys (add one with `pseudonymd api-key`)")]
    NoApiKeys(std::path::PathBuf),
    /// Dev mode could not write its files.
    #[error("dev mode: cannot write {path}: {source}")]
    DevFiles {
        /// The file or folder.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// `compat_tokens = "lambda"` without the Lambda service's key.
    #[error(
        "configuration: compat_tokens: \"lambda\" needs the Lambda service's key in the keyring (pseudonymd keygen --import-lambda-secret)"
    )]
    LambdaKeyMissing,
    /// Why the KMS could not seal or open a keyring file.
    #[error(transparent)]
    Kms(#[from] crate::kms::KmsError),
    /// Why the TLS settings cannot be served.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// Why a replica refuses a key change (or could not be asked).
    #[error(transparent)]
    Rollout(#[from] crate::rollout::RolloutError),
    /// Why the API key file cannot be used.
    #[error(transparent)]
    ApiKeys(#[from] crate::auth::ApiKeysError),
    /// The audit log could not be opened.
    #[error("audit_log {path}: {source}")]
    Audit {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// An audit line could not be written, or the file reopened.
    #[error("cannot write the audit log: {0}")]
    AuditWrite(std::io::Error),
    /// An operator's request that would break something (e.g. `keygen` on a missing file).
    #[error("{0}")]
    Refused(String),
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_never_quote_the_input() {
        let secret = "WVWZZZ1JZXW000001";
        let body = format!(r#"{{"domain":"vin","values":"{secret}"}}"#);
        let error = serde_json::from_str::<pseudonym_client::wire::PseudonymizeRequest>(&body)
            .expect_err("values must be a list");
        assert!(error.to_string().contains(secret), "serde quotes the input");
        let ours = ApiError::bad_json(&error).to_string();
        assert!(!ours.contains(secret), "{ours}");
        assert!(ours.contains("data error at line 1"), "{ours}");
    }
}
