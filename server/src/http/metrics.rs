//! HTTP metrics in the Prometheus text format: request counts and latency histograms
//! by method, route (the matched pattern, never the raw path) and status.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default)]
struct Series {
    count: u64,
    sum: f64,
    /// Non-cumulative counts per bucket; the last slot is +Inf.
    buckets: [u64; BUCKETS.len() + 1],
}

#[derive(Default)]
pub struct HttpMetrics {
    series: Mutex<BTreeMap<(String, String, u16), Series>>,
}

impl HttpMetrics {
    pub fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let s = series
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default();
        s.count += 1;
        s.sum += seconds;
        let slot = BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(BUCKETS.len());
        s.buckets[slot] += 1;
    }

    pub fn render(&self, out: &mut String) {
        let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        out.push_str("# HELP slate_http_requests_total HTTP requests answered.\n");
        out.push_str("# TYPE slate_http_requests_total counter\n");
        for ((method, route, status), s) in series.iter() {
            let labels = labels(method, route, *status);
            let _ = writeln!(out, "slate_http_requests_total{{{labels}}} {}", s.count);
        }
        out.push_str("# HELP slate_http_request_duration_seconds Time to answer HTTP requests.\n");
        out.push_str("# TYPE slate_http_request_duration_seconds histogram\n");
        for ((method, route, status), s) in series.iter() {
            let labels = labels(method, route, *status);
            let mut cumulative = 0;
            for (i, bound) in BUCKETS.iter().enumerate() {
                cumulative += s.buckets[i];
                let _ = writeln!(out, "slate_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
            }
            let _ = writeln!(
                out,
                "slate_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "slate_http_request_duration_seconds_sum{{{labels}}} {}",
                s.sum
            );
            let _ = writeln!(
                out,
                "slate_http_request_duration_seconds_count{{{labels}}} {}",
                s.count
            );
        }
    }
}

fn labels(method: &str, route: &str, status: u16) -> String {
    format!(
        "method=\"{}\",route=\"{}\",status=\"{status}\"",
        escape(method),
        escape(route)
    )
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The route label: the matched pattern, so ids in paths do not explode the series.
fn route_of(req: &Request) -> String {
    if let Some(matched) = req.extensions().get::<MatchedPath>() {
        return matched.as_str().to_owned();
    }
    if req.uri().path().starts_with("/pkg/") {
        "/pkg/{file}".to_owned()
    } else {
        "unmatched".to_owned()
    }
}

pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = route_of(&req);
    let response = next.run(req).await;
    state.metrics.observe(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

pub async fn serve(State(state): State<AppState>) -> Response {
    let mut out = String::with_capacity(4096);
    out.push_str("# HELP slate_up Whether this Slate process is serving.\n# TYPE slate_up gauge\nslate_up 1\n");
    out.push_str("# HELP slate_start_time_seconds When this process started (Unix time).\n# TYPE slate_start_time_seconds gauge\n");
    let _ = writeln!(
        out,
        "slate_start_time_seconds {}",
        state.started_at.timestamp()
    );
    out.push_str("# HELP slate_db_up Whether the database answered the last check.\n# TYPE slate_db_up gauge\n");
    let _ = writeln!(out, "slate_db_up {}", u8::from(state.db_health.is_up()));
    out.push_str("# HELP slate_db_pool_connections Database connections by state.\n# TYPE slate_db_pool_connections gauge\n");
    let idle = state.pool.num_idle();
    let _ = writeln!(out, "slate_db_pool_connections{{state=\"idle\"}} {idle}");
    let _ = writeln!(
        out,
        "slate_db_pool_connections{{state=\"busy\"}} {}",
        (state.pool.size() as usize).saturating_sub(idle)
    );
    state.metrics.render(&mut out);
    let mut response = out.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_counted() {
        let m = HttpMetrics::default();
        m.observe("GET", "/", 200, 0.003);
        m.observe("GET", "/", 200, 0.2);
        m.observe("GET", "/", 200, 30.0);
        let mut out = String::new();
        m.render(&mut out);
        assert!(
            out.contains("slate_http_requests_total{method=\"GET\",route=\"/\",status=\"200\"} 3")
        );
        assert!(out.contains("le=\"0.005\"} 1\n"));
        assert!(out.contains("le=\"0.25\"} 2\n"));
        assert!(out.contains("le=\"10\"} 2\n"));
        assert!(out.contains("le=\"+Inf\"} 3\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c"), "a\\\"b\\\\c");
    }
}
