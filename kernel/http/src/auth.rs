//! Bearer-token access. A server given a token answers 401 to every
//! request without it, except the health probes (`/v1/health/live` and
//! `/v1/health/ready`, which orchestrators call without credentials).
//! Which addresses need a token is the binary's decision (anything but
//! loopback); this module only checks.

use hyper::header::{AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use hyper::{HeaderMap, StatusCode};

use crate::respond::{HttpResponse, error};

/// Routes anyone may call.
const OPEN_ROUTES: &[&str] = &["/v1/health/live", "/v1/health/ready"];

/// `None` when the request may go on; otherwise the 401 to answer.
pub(crate) fn check(token: Option<&str>, path: &str, headers: &HeaderMap) -> Option<HttpResponse> {
    let token = token?;
    if OPEN_ROUTES.contains(&path) {
        return None;
    }
    let presented = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(presented) if same(presented.as_bytes(), token.as_bytes()) => None,
        Some(_) => Some(unauthorized("the bearer token is not this kernel's")),
        None => Some(unauthorized("this kernel requires a bearer token")),
    }
}

fn unauthorized(message: &str) -> HttpResponse {
    let mut response = error(
        StatusCode::UNAUTHORIZED,
        message.to_owned(),
        "send `Authorization: Bearer TOKEN`; the token is in the run's connection file (`spindle ps` lists them) or was given with --token",
    );
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// Compares in time that does not depend on where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = value {
            headers.insert(AUTHORIZATION, HeaderValue::from_str(value).expect("header"));
        }
        headers
    }

    #[test]
    fn only_the_right_token_passes_and_health_probes_need_none() {
        let token = Some("s3cret");
        assert!(check(None, "/v1/services", &headers(None)).is_none());
        assert!(check(token, "/v1/services", &headers(Some("Bearer s3cret"))).is_none());
        let status =
            |value| check(token, "/v1/services", &headers(value)).map(|response| response.status());
        assert_eq!(status(None), Some(StatusCode::UNAUTHORIZED));
        assert_eq!(status(Some("Bearer s3cre")), Some(StatusCode::UNAUTHORIZED));
        assert_eq!(status(Some("s3cret")), Some(StatusCode::UNAUTHORIZED));
        assert!(check(token, "/v1/health/live", &headers(None)).is_none());
        assert!(check(token, "/v1/health/ready", &headers(None)).is_none());
        assert!(check(token, "/v1/health", &headers(None)).is_some());
    }
}
