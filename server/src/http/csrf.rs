//! Cross-site request forgery: a state-changing request that rides on the session
//! cookie must come from Slate's own pages. Browsers say where a request comes from
//! (`Origin`, `Sec-Fetch-Site`); requests with a bearer token carry no ambient
//! credentials and are exempt.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;

use app::error::AppError;

use super::{errors, AppState};

pub async fn protect(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // A bearer token or a webhook signature carries no ambient credentials: a browser on
    // another site cannot make either up.
    let signed_webhook = req.uri().path() == crate::colab::webhook::PATH;
    if is_safe_method(req.method())
        || req.headers().contains_key(header::AUTHORIZATION)
        || signed_webhook
    {
        return next.run(req).await;
    }
    if same_origin(req.headers(), &state.config.public_origin) {
        next.run(req).await
    } else {
        tracing::warn!(path = %req.uri().path(), origin = ?req.headers().get(header::ORIGIN), "cross-site request refused");
        errors::for_path(
            req.uri().path(),
            &AppError::Forbidden(
                "Cross-site request refused: this form was not sent from Slate.".into(),
            ),
        )
    }
}

fn is_safe_method(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// `public_origin` is `scheme://host[:port]` of SLATE_PUBLIC_URL.
pub fn same_origin(headers: &HeaderMap, public_origin: &str) -> bool {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let host = text(header::HOST);
    let matches_us = |origin: &str| {
        let origin = origin.trim_end_matches('/');
        origin.eq_ignore_ascii_case(public_origin)
            || host.is_some_and(|h| {
                origin
                    .strip_prefix("http://")
                    .or_else(|| origin.strip_prefix("https://"))
                    .is_some_and(|rest| rest.eq_ignore_ascii_case(h))
            })
    };
    if let Some(origin) = text(header::ORIGIN) {
        return origin != "null" && matches_us(origin);
    }
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site")) {
        return matches!(site, "same-origin" | "none");
    }
    if let Some(referer) = text(header::REFERER) {
        return url::Url::parse(referer)
            .map(|u| matches_us(&u.origin().ascii_serialization()))
            .unwrap_or(false);
    }
    // Not a browser: nothing for a forged request to ride on.
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    const US: &str = "https://slate.studio.example";

    #[test]
    fn same_origin_requests_pass() {
        assert!(same_origin(
            &headers(&[("origin", "https://slate.studio.example")]),
            US
        ));
        assert!(same_origin(
            &headers(&[
                ("origin", "http://127.0.0.1:3000"),
                ("host", "127.0.0.1:3000")
            ]),
            US
        ));
        assert!(same_origin(
            &headers(&[("sec-fetch-site", "same-origin")]),
            US
        ));
        assert!(same_origin(
            &headers(&[("referer", "https://slate.studio.example/admin")]),
            US
        ));
        assert!(same_origin(&headers(&[]), US));
    }

    #[test]
    fn cross_site_requests_are_refused() {
        assert!(!same_origin(
            &headers(&[
                ("origin", "https://evil.example"),
                ("host", "127.0.0.1:3000")
            ]),
            US
        ));
        assert!(!same_origin(&headers(&[("origin", "null")]), US));
        assert!(!same_origin(
            &headers(&[("sec-fetch-site", "cross-site")]),
            US
        ));
        assert!(!same_origin(
            &headers(&[("referer", "https://evil.example/x")]),
            US
        ));
    }
}
