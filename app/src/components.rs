//! Small building blocks shared by the pages: headers, notices, empty states, badges, times,
//! progress bars.

use chrono::{DateTime, Utc};
use leptos::prelude::*;
use leptos_meta::Title;

use crate::accounts::Role;
use crate::error::AppError;

#[component]
pub fn PageHeader(
    #[prop(into)] title: String,
    #[prop(into, optional)] subtitle: Option<String>,
) -> impl IntoView {
    view! {
        <Title text=title.clone()/>
        <header class="page-header">
            <h1>{title}</h1>
            {subtitle.map(|s| view! { <p class="subtitle">{s}</p> })}
        </header>
    }
}

/// An error as a person should read it: what happened, not how.
#[component]
pub fn ErrorNote(error: AppError) -> impl IntoView {
    let title = match &error {
        AppError::Unauthenticated(_) => "You are signed out",
        AppError::Forbidden(_) => "Not allowed",
        AppError::NotFound(_) => "Not found",
        AppError::Invalid(_)
        | AppError::BadRequest(_)
        | AppError::TooLarge(_)
        | AppError::Conflict(_) => "Please check the form",
        AppError::TooManyRequests(_) => "Slow down",
        AppError::Unavailable(_) => "Temporarily unavailable",
        AppError::Internal(_) | AppError::Transport(_) => "Something went wrong",
    };
    view! {
        <div class="notice error" role="alert">
            <strong>{title}</strong>
            <span>{error.to_string()}</span>
        </div>
    }
}

#[component]
pub fn EmptyState(#[prop(into)] title: String, children: Children) -> impl IntoView {
    view! {
        <div class="empty-state">
            <p class="empty-title">{title}</p>
            <div class="empty-body">{children()}</div>
        </div>
    }
}

#[component]
pub fn RoleBadge(role: Role) -> impl IntoView {
    view! { <span class=format!("badge role-{}", role.as_str())>{role.label()}</span> }
}

/// A moment in UTC, the same on server and client so hydration matches.
pub fn format_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

#[component]
pub fn Time(at: DateTime<Utc>) -> impl IntoView {
    view! { <time datetime=at.to_rfc3339()>{format_time(at)}</time> }
}

/// How far along, as the percent a bar shows: clamped to 0–100, nothing for NaN.
pub fn progress_percent(fraction: f64) -> f64 {
    if fraction.is_nan() {
        0.0
    } else {
        (fraction * 100.0).clamp(0.0, 100.0)
    }
}

/// The one progress bar of the app: a native `<progress>` drawn by the stylesheet. Its
/// value is an attribute, which the Content-Security-Policy (`style-src 'self'`, no
/// inline styles) lets through; a width in a `style` attribute would be refused and the
/// bar drawn full. `fraction` is 0–1 and may change live.
#[component]
pub fn ProgressBar(
    #[prop(into)] fraction: Signal<f64>,
    /// What is progressing, for assistive technology.
    #[prop(into)]
    label: String,
    /// Extra classes, e.g. for the colour of a state.
    #[prop(into, optional)]
    class: Option<String>,
    #[prop(into, optional)] id: Option<String>,
) -> impl IntoView {
    let class = match class {
        Some(extra) => format!("progress {extra}"),
        None => "progress".to_owned(),
    };
    view! {
        <progress class=class id=id max="100" aria-label=label
            value=move || format!("{:.1}", progress_percent(fraction.get()))></progress>
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass through).
pub fn encode_query_value(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Bumps `refresh` whenever the event stream at `url` sends an `event` whose data
/// `wanted` accepts, and each time the stream (re)opens: whatever changed between the
/// page's own fetch and the subscription, or while the connection was down, would
/// otherwise never be announced. The stream is opened in the browser only, and closed
/// (its listeners freed) when the page is left.
pub fn follow_events(
    url: &'static str,
    event: &'static str,
    wanted: fn(&str) -> bool,
    refresh: RwSignal<u64>,
) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::closure::Closure;
        use wasm_bindgen::JsCast as _;
        Effect::new(move |_| {
            let Ok(source) = web_sys::EventSource::new(url) else {
                return;
            };
            let on_event =
                Closure::<dyn Fn(web_sys::MessageEvent)>::new(move |e: web_sys::MessageEvent| {
                    if wanted(&e.data().as_string().unwrap_or_default()) {
                        refresh.update(|n| *n += 1);
                    }
                });
            let on_open = Closure::<dyn Fn(web_sys::Event)>::new(move |_: web_sys::Event| {
                refresh.update(|n| *n += 1);
            });
            let _ =
                source.add_event_listener_with_callback(event, on_event.as_ref().unchecked_ref());
            let _ =
                source.add_event_listener_with_callback("open", on_open.as_ref().unchecked_ref());
            let kept = send_wrapper::SendWrapper::new((source, on_event, on_open));
            on_cleanup(move || {
                let (source, on_event, on_open) = kept.take();
                source.close();
                drop(on_event);
                drop(on_open);
            });
        });
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (url, event, wanted, refresh);
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode_query_value("user.create"), "user.create");
        assert_eq!(encode_query_value("a b&c@d"), "a%20b%26c%40d");
    }

    #[test]
    fn progress_is_a_percent_within_bounds() {
        assert_eq!(progress_percent(0.25), 25.0);
        assert_eq!(progress_percent(1.7), 100.0);
        assert_eq!(progress_percent(-0.1), 0.0);
        assert_eq!(progress_percent(f64::NAN), 0.0);
    }

    #[test]
    fn times_render_in_utc_to_the_minute() {
        let at = Utc.with_ymd_and_hms(2026, 11, 26, 8, 5, 59).unwrap();
        assert_eq!(format_time(at), "2026-11-26 08:05 UTC");
    }
}
