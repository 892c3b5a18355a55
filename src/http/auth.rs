//! `--http-token-file`: the API routes (`/api/*`) answer only requests carrying
//! `Authorization: Bearer <token>`; everything else gets 401 with `WWW-Authenticate: Bearer`.
//! `/metrics` and `/healthz` stay open, as Prometheus scrapers and health probes expect.
//!
//! The token is compared in constant time, so the answer's timing does not reveal how many
//! leading bytes of a guess were right.

use std::path::Path;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use super::error;
use crate::error::UsageError;

/// The secret that API clients present. No `Debug`: a log line or a failed assertion must
/// never print it.
pub struct BearerToken(Box<[u8]>);

/// What a request presented.
#[derive(Debug, PartialEq)]
enum Presented {
    Right,
    Wrong,
    Missing,
}

impl BearerToken {
    /// Reads the token file: one token, surrounding whitespace ignored.
    pub fn load(path: &Path) -> Result<BearerToken, UsageError> {
        let fail = |msg: String| UsageError(format!("--http-token-file {}: {msg}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        BearerToken::parse(&text).map_err(fail)
    }

    fn parse(text: &str) -> Result<BearerToken, String> {
        let token = text.trim();
        if token.is_empty() {
            return Err("the file is empty; it must hold the token".into());
        }
        // A header value cannot carry whitespace inside a token or control characters: a client
        // could never present such a token.
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the token must be one word of visible ASCII characters".into());
        }
        Ok(BearerToken(token.as_bytes().into()))
    }

    fn judge(&self, headers: &HeaderMap) -> Presented {
        let Some(value) = headers.get(header::AUTHORIZATION) else { return Presented::Missing };
        let text = value.as_bytes();
        let Some(space) = text.iter().position(|&b| b == b' ') else { return Presented::Missing };
        let (scheme, given) = text.split_at(space);
        if !scheme.eq_ignore_ascii_case(b"Bearer") {
            return Presented::Missing;
        }
        match bool::from(given.trim_ascii().ct_eq(&self.0)) {
            true => Presented::Right,
            false => Presented::Wrong,
        }
    }
}

/// Middleware of the API routes.
pub async fn require_token(State(token): State<Arc<BearerToken>>, request: Request, next: Next) -> Response {
    let (message, challenge) = match token.judge(request.headers()) {
        Presented::Right => return next.run(request).await,
        Presented::Missing => ("missing `Authorization: Bearer <token>`", r#"Bearer realm="vigil""#),
        Presented::Wrong => ("wrong bearer token", r#"Bearer realm="vigil", error="invalid_token""#),
    };
    let mut response = error(StatusCode::UNAUTHORIZED, message);
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presenting(authorization: Option<&str>) -> Presented {
        let token = BearerToken::parse(" s3cret-Token_1\n").unwrap();
        let mut headers = HeaderMap::new();
        if let Some(value) = authorization {
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        }
        token.judge(&headers)
    }

    #[test]
    fn only_the_exact_token_is_right() {
        assert_eq!(presenting(Some("Bearer s3cret-Token_1")), Presented::Right);
        assert_eq!(presenting(Some("bearer  s3cret-Token_1 ")), Presented::Right);
        assert_eq!(presenting(Some("Bearer s3cret-Token_2")), Presented::Wrong);
        assert_eq!(presenting(Some("Bearer s3cret-Token_")), Presented::Wrong);
        assert_eq!(presenting(Some("Bearer s3cret-Token_11")), Presented::Wrong);
        assert_eq!(presenting(Some("Bearer ")), Presented::Wrong);
        assert_eq!(presenting(Some("Basic czNjcmV0")), Presented::Missing);
        assert_eq!(presenting(Some("s3cret-Token_1")), Presented::Missing);
        assert_eq!(presenting(None), Presented::Missing);
    }

    #[test]
    fn token_files_hold_one_visible_word() {
        assert!(BearerToken::parse(" \n\t").err().unwrap().contains("empty"));
        assert!(BearerToken::parse("two words").err().unwrap().contains("one word"));
        let dir = tempfile::tempdir().unwrap();
        let err = BearerToken::load(&dir.path().join("absent")).err().unwrap();
        assert!(err.0.starts_with("--http-token-file "), "{}", err.0);
    }
}
