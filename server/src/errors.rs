//! Answers for requests that fail before reaching a page or server function: an HTML
//! error page for browsers, the tagged JSON of `AppError` for API clients.

use app::error::AppError;
use askama::Template;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    title: &'a str,
    message: &'a str,
    link_href: &'a str,
    link_text: &'a str,
}

pub fn page(status: StatusCode, title: &str, message: &str) -> Response {
    let (link_href, link_text) = match status {
        StatusCode::UNAUTHORIZED => ("/login", "Sign in"),
        _ => ("/", "Go to the dashboard"),
    };
    let body = ErrorPage {
        status: status.as_u16(),
        title,
        message,
        link_href,
        link_text,
    }
    .render()
    .unwrap_or_else(|_| format!("{status}: {message}"));
    let mut response = (status, Html(body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub fn api(err: &AppError) -> Response {
    let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(err)).into_response()
}

/// An error for `path`: JSON under `/api`, an HTML page elsewhere.
pub fn for_path(path: &str, err: &AppError) -> Response {
    if path.starts_with("/api/") {
        return api(err);
    }
    let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let title = match status {
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::UNAUTHORIZED => "Please sign in",
        StatusCode::SERVICE_UNAVAILABLE => "Temporarily unavailable",
        StatusCode::PAYLOAD_TOO_LARGE => "Too large",
        _ => "Something went wrong",
    };
    page(status, title, &err.to_string())
}
