//! The diagram as SVG markup. One renderer serves the page (server render and live
//! updates in the browser) and the SVG export, so they always agree. Colours are
//! written as attributes, not CSS, so an exported file looks the same anywhere; every
//! health colour comes with a glyph and a word in the box's title.

use std::fmt::Write as _;

use super::layout::{layout, Layout, BOX_H, BOX_W, LANE_LABEL_W};
use super::{EdgeKind, Health, Source, Topology};

/// Escapes text for XML content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Shortens to `max` characters with an ellipsis.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// What a box says about replicas: "2/3 ready", or its first fact.
pub fn replicas_text(ready: Option<i32>, desired: Option<i32>) -> Option<String> {
    match (ready, desired) {
        (Some(r), Some(d)) => Some(format!("{r}/{d} ready")),
        (None, Some(d)) => Some(format!("{d} desired")),
        _ => None,
    }
}

/// A complete, standalone SVG document. `interactive` adds focus and click targets;
/// `selected` marks one box.
pub fn render_svg(topology: &Topology, interactive: bool, selected: Option<&str>) -> String {
    let l = layout(topology);
    let mut s = String::with_capacity(2048 + l.boxes.len() * 900 + l.curves.len() * 160);
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="diagram" viewBox="0 0 {w:.0} {h:.0}" width="{w:.0}" height="{h:.0}" font-family="system-ui, -apple-system, 'Segoe UI', sans-serif" role="img" aria-labelledby="diagram-title"><title id="diagram-title">{title}</title>"#,
        w = l.width,
        h = l.height,
        title = esc(&format!(
            "Architecture of namespace {} ({})",
            topology.namespace,
            match &topology.source {
                Source::Live { .. } => "live",
                Source::Desired { .. } => "desired state from manifests",
            }
        )),
    );
    s.push_str(r##"<defs><marker id="arrow" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L8,4 L0,8 z" fill="#6b7280"/></marker></defs>"##);
    lanes(&mut s, &l);
    edges(&mut s, &l);
    boxes(&mut s, &l, interactive, selected);
    legend(&mut s, &l);
    s.push_str("</svg>");
    s
}

fn lanes(s: &mut String, l: &Layout<'_>) {
    for (i, lane) in l.lanes.iter().enumerate() {
        let fill = if i % 2 == 0 { "#f7f8fa" } else { "#eef1f5" };
        let _ = write!(
            s,
            r##"<g class="lane" data-layer="{layer}"><rect x="0" y="{y:.0}" width="{w:.0}" height="{h:.0}" fill="{fill}" stroke="#d5dae1"/><text x="16" y="{ty:.0}" font-size="14" font-weight="600" fill="#1f2937">{label}</text><text x="16" y="{sy:.0}" font-size="12" fill="#4b5563">{count}</text>"##,
            layer = lane.layer.label().to_ascii_lowercase(),
            y = lane.y,
            w = l.width,
            h = lane.height,
            ty = lane.y + lane.height / 2.0 - 4.0,
            sy = lane.y + lane.height / 2.0 + 14.0,
            label = lane.layer.label(),
            count = esc(&match lane.health {
                Some(h) => format!("{} {} · {}", h.icon(), h.label(), lane.count),
                None => lane.count.to_string(),
            }),
        );
        let _ = write!(
            s,
            r##"<line x1="{x:.0}" y1="{y:.0}" x2="{x:.0}" y2="{y2:.0}" stroke="#d5dae1"/></g>"##,
            x = LANE_LABEL_W,
            y = lane.y,
            y2 = lane.y + lane.height,
        );
    }
}

fn edges(s: &mut String, l: &Layout<'_>) {
    s.push_str(r#"<g class="edges" fill="none">"#);
    for c in &l.curves {
        let (colour, dash) = c.kind.stroke();
        let _ = write!(
            s,
            r#"<path class="edge edge-{kind}" data-from="{from}" data-to="{to}" d="{d}" stroke="{colour}" stroke-width="1.6"{dash} marker-end="url(#arrow)"><title>{from} {kind} {to}</title></path>"#,
            kind = c.kind.label(),
            from = esc(&c.from),
            to = esc(&c.to),
            d = c.d,
            dash = if dash.is_empty() {
                String::new()
            } else {
                format!(r#" stroke-dasharray="{dash}""#)
            },
        );
    }
    s.push_str("</g>");
}

fn boxes(s: &mut String, l: &Layout<'_>, interactive: bool, selected: Option<&str>) {
    for b in &l.boxes {
        let n = b.node;
        let (fill, stroke, ink) = n.health.colours();
        let title = match &n.reason {
            Some(r) => format!("{} {}: {} — {}", n.kind, n.name, n.health.label(), r),
            None => format!("{} {}: {}", n.kind, n.name, n.health.label()),
        };
        let focus = if interactive {
            format!(
                r#" tabindex="0" role="button" aria-label="{}" data-node="{}""#,
                esc(&title),
                esc(&n.id)
            )
        } else {
            String::new()
        };
        let _ = write!(
            s,
            r#"<g class="node health-{health}{chosen}" data-id="{id}" data-health="{health}" transform="translate({x:.0},{y:.0})"{focus}><title>{title}</title><rect width="{w:.0}" height="{h:.0}" rx="8" fill="{fill}" stroke="{stroke}" stroke-width="{sw}"/>"#,
            health = n.health.label().to_ascii_lowercase(),
            chosen = if selected == Some(n.id.as_str()) {
                " selected"
            } else {
                ""
            },
            id = esc(&n.id),
            x = b.x,
            y = b.y,
            title = esc(&title),
            w = BOX_W,
            h = BOX_H,
            sw = if n.health == Health::Healthy {
                "1.2"
            } else {
                "2.4"
            },
        );
        // Health glyph in a circle, top right.
        let _ = write!(
            s,
            r##"<circle cx="{cx:.0}" cy="16" r="10" fill="{stroke}"/><text x="{cx:.0}" y="20.5" font-size="12" text-anchor="middle" fill="#ffffff" font-weight="700">{icon}</text>"##,
            cx = BOX_W - 16.0,
            icon = n.health.icon(),
        );
        let _ = write!(
            s,
            r#"<text x="12" y="22" font-size="13.5" font-weight="600" fill="{ink}">{name}</text><text x="12" y="40" font-size="11.5" fill="{ink}">{kind}</text>"#,
            name = esc(&clip(&n.name, 22)),
            kind = esc(&clip(
                &match replicas_text(n.ready, n.desired) {
                    Some(r) => format!("{} · {r}", n.kind),
                    None => n.kind.clone(),
                },
                30
            )),
        );
        // The reason when something needs attention, else the facts.
        let third = match (&n.reason, n.health) {
            (
                Some(reason),
                Health::Degraded | Health::Missing | Health::Progressing | Health::Suspended,
            ) => reason.clone(),
            _ if !n.facts.is_empty() => n.facts.join(" · "),
            (Some(reason), _) => reason.clone(),
            (None, _) => String::new(),
        };
        if !third.is_empty() {
            let _ = write!(
                s,
                r#"<text x="12" y="57" font-size="11" fill="{ink}">{}</text>"#,
                esc(&clip(&third, 32))
            );
        }
        if let Some(tag) = n.image_tag() {
            let _ = write!(
                s,
                r##"<text x="12" y="77" font-size="11" fill="#374151" font-family="ui-monospace, monospace">{}</text>"##,
                esc(&clip(&format!(":{tag}"), if n.gpu { 20 } else { 28 }))
            );
        }
        if n.gpu {
            let _ = write!(
                s,
                r##"<g class="gpu-badge"><rect x="{x:.0}" y="64" width="40" height="17" rx="4" fill="#111827"/><text x="{tx:.0}" y="76.5" font-size="10.5" font-weight="700" text-anchor="middle" fill="#fde047">GPU</text></g>"##,
                x = BOX_W - 50.0,
                tx = BOX_W - 30.0,
            );
        }
        s.push_str("</g>");
    }
}

fn legend(s: &mut String, l: &Layout<'_>) {
    let y = l.legend_y;
    s.push_str(r##"<g class="legend" font-size="11.5" fill="#374151">"##);
    let mut x = 16.0;
    for kind in EdgeKind::ALL {
        let (colour, dash) = kind.stroke();
        let _ = write!(
            s,
            r#"<line x1="{x:.0}" y1="{ly:.0}" x2="{x2:.0}" y2="{ly:.0}" stroke="{colour}" stroke-width="2"{dash}/><text x="{tx:.0}" y="{ty:.0}">{label}</text>"#,
            ly = y + 8.0,
            x2 = x + 28.0,
            tx = x + 34.0,
            ty = y + 12.0,
            label = kind.label(),
            dash = if dash.is_empty() {
                String::new()
            } else {
                format!(r#" stroke-dasharray="{dash}""#)
            },
        );
        x += 100.0;
    }
    for h in [
        Health::Healthy,
        Health::Progressing,
        Health::Suspended,
        Health::Missing,
        Health::Degraded,
        Health::Unknown,
    ] {
        let (_, stroke, _) = h.colours();
        let _ = write!(
            s,
            r##"<circle cx="{cx:.0}" cy="{cy:.0}" r="7" fill="{stroke}"/><text x="{cx:.0}" y="{iy:.0}" font-size="9" text-anchor="middle" fill="#ffffff">{icon}</text><text x="{tx:.0}" y="{ty:.0}">{label}</text>"##,
            cx = x + 7.0,
            cy = y + 8.0,
            iy = y + 11.0,
            icon = h.icon(),
            tx = x + 18.0,
            ty = y + 12.0,
            label = h.label(),
        );
        x += 96.0;
    }
    s.push_str("</g>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_clipped() {
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
        assert_eq!(
            replicas_text(Some(1), Some(2)).as_deref(),
            Some("1/2 ready")
        );
    }
}
