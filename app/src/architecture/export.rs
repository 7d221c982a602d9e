//! Text exports of the topology: Mermaid (for Markdown renderers) and plain ASCII in
//! the shape of the team's README diagrams: one framed block per layer, boxes in rows,
//! then the connections as arrows.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::diagram::{clip, replicas_text};
use super::{EdgeKind, Health, Layer, Source, Topology};

fn ascii_health(h: Health) -> &'static str {
    match h {
        Health::Healthy => "[ok]",
        Health::Suspended => "[paused]",
        Health::Progressing => "[..]",
        Health::Missing => "[missing]",
        Health::Degraded => "[FAIL]",
        Health::Unknown => "[?]",
    }
}

fn source_line(t: &Topology) -> String {
    let when = t.generated_at.format("%Y-%m-%d %H:%M:%S UTC");
    match &t.source {
        Source::Live {
            unreachable_since: Some(since),
            ..
        } => format!(
            "live, cluster unreachable since {} (last known state), {when}",
            since.format("%Y-%m-%d %H:%M:%S UTC")
        ),
        Source::Live { unwatched, .. } if !unwatched.is_empty() => {
            let kinds: Vec<&str> = unwatched.iter().map(|u| u.kind.as_str()).collect();
            format!("live (not watched: {}), {when}", kinds.join(", "))
        }
        Source::Live { .. } => format!("live, {when}"),
        Source::Desired { why } => format!("desired state from the k8s/ manifests ({why})"),
    }
}

/// A Mermaid flowchart: one subgraph per layer, edges labelled by kind, classes by health.
pub fn mermaid(t: &Topology) -> String {
    let ids: BTreeMap<&str, String> = t
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), format!("n{i}")))
        .collect();
    let quote = |s: &str| s.replace('"', "#quot;").replace(['<', '>'], "");
    let mut s = String::new();
    let _ = writeln!(s, "%% {} · {}", t.namespace, source_line(t));
    s.push_str("flowchart TB\n");
    for layer in Layer::ALL {
        let members: Vec<_> = t.nodes.iter().filter(|n| n.layer == layer).collect();
        if members.is_empty() {
            continue;
        }
        let _ = writeln!(
            s,
            "  subgraph {}[\"{}\"]",
            layer.label().to_ascii_lowercase(),
            layer.label()
        );
        for n in members {
            let mut label = format!("{}<br/>{}", quote(&n.name), quote(&n.kind));
            if let Some(r) = replicas_text(n.ready, n.desired) {
                let _ = write!(label, " · {r}");
            }
            let _ = write!(label, "<br/>{} {}", n.health.icon(), n.health.label());
            if n.gpu {
                label.push_str(" · GPU");
            }
            if let Some(tag) = n.image_tag() {
                let _ = write!(label, "<br/>:{}", quote(tag));
            }
            let _ = writeln!(s, "    {}[\"{}\"]", ids[n.id.as_str()], label);
        }
        s.push_str("  end\n");
    }
    for e in &t.edges {
        let (Some(a), Some(b)) = (ids.get(e.from.as_str()), ids.get(e.to.as_str())) else {
            continue;
        };
        let arrow = match e.kind {
            EdgeKind::Declared | EdgeKind::Config | EdgeKind::Mounts => "-.->",
            _ => "-->",
        };
        let _ = writeln!(s, "  {a} {arrow}|{}| {b}", e.kind.label());
    }
    let mut by_health: BTreeMap<Health, Vec<&str>> = BTreeMap::new();
    for n in &t.nodes {
        by_health
            .entry(n.health)
            .or_default()
            .push(ids[n.id.as_str()].as_str());
    }
    for (h, members) in by_health {
        let (fill, stroke, ink) = h.colours();
        let class = h.label().to_ascii_lowercase();
        let _ = writeln!(
            s,
            "  classDef {class} fill:{fill},stroke:{stroke},color:{ink}\n  class {} {class}",
            members.join(",")
        );
    }
    s
}

const ASCII_BOX: usize = 24;
const ASCII_PER_ROW: usize = 4;

/// Plain ASCII: a framed block per layer with its boxes, then `a --kind--> b` lines.
pub fn ascii(t: &Topology) -> String {
    let inner = ASCII_PER_ROW * (ASCII_BOX + 2) + 2;
    let rule = format!("+{}+\n", "-".repeat(inner));
    let mut s = String::new();
    let _ = writeln!(s, "{} -- {}", t.namespace, source_line(t));
    // The diagram's order: a Service beside its workload, configuration beside its reader.
    let placed = super::layout::layout(t);
    for layer in Layer::ALL {
        let members: Vec<_> = placed
            .boxes
            .iter()
            .map(|b| b.node)
            .filter(|n| n.layer == layer)
            .collect();
        if members.is_empty() {
            continue;
        }
        s.push_str(&rule);
        let title = format!(
            "{} LAYER {}",
            layer.label().to_ascii_uppercase(),
            ascii_health(t.layer_health(layer).unwrap_or(Health::Healthy))
        );
        let _ = writeln!(s, "|{title:^inner$}|");
        for row in members.chunks(ASCII_PER_ROW) {
            let cells: Vec<[String; 3]> = row
                .iter()
                .map(|n| {
                    let second = match replicas_text(n.ready, n.desired) {
                        Some(r) => format!("{} {r}", n.kind),
                        None => n.kind.clone(),
                    };
                    let mut third = ascii_health(n.health).to_owned();
                    if n.gpu {
                        third.push_str(" GPU");
                    }
                    if let Some(tag) = n.image_tag() {
                        let _ = write!(third, " :{tag}");
                    }
                    let w = ASCII_BOX - 2;
                    [clip(&n.name, w), clip(&second, w), clip(&third, w)]
                })
                .collect();
            let line = |f: &dyn Fn(&[String; 3]) -> String| {
                let mut l = String::from("| ");
                for c in &cells {
                    l.push_str(&f(c));
                    l.push_str("  ");
                }
                let used = l.chars().count() - 1;
                l.push_str(&" ".repeat(inner.saturating_sub(used)));
                l.push_str("|\n");
                l
            };
            let border = format!("+{}+", "-".repeat(ASCII_BOX - 2));
            s.push_str(&line(&|_| border.clone()));
            for i in 0..3 {
                s.push_str(&line(&|c| format!("|{:<w$}|", c[i], w = ASCII_BOX - 2)));
            }
            s.push_str(&line(&|_| border.clone()));
        }
        s.push_str(&rule);
    }
    if !t.edges.is_empty() {
        s.push_str("\nConnections:\n");
        let name = |id: &str| {
            t.node(id)
                .map(|n| format!("{} ({})", n.name, n.kind))
                .unwrap_or_else(|| id.to_owned())
        };
        for e in &t.edges {
            let _ = writeln!(
                s,
                "  {} --{}--> {}",
                name(&e.from),
                e.kind.label(),
                name(&e.to)
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::architecture::{TopoEdge, TopoNode};

    fn sample() -> Topology {
        let node = |id: &str, layer, health, gpu| {
            let (kind, name) = id.split_once('/').unwrap();
            TopoNode {
                id: id.into(),
                kind: kind.into(),
                name: name.into(),
                layer,
                health,
                reason: None,
                ready: Some(1),
                desired: Some(1),
                pods: 1,
                gpu,
                images: vec!["comfy:0.3.10".into()],
                facts: vec![],
            }
        };
        Topology {
            version: 3,
            namespace: "ai-film".into(),
            source: Source::Desired {
                why: "no cluster".into(),
            },
            generated_at: chrono::Utc::now(),
            objects: 2,
            folded: false,
            nodes: vec![
                node(
                    "Deployment/comfyui",
                    Layer::Processing,
                    Health::Degraded,
                    true,
                ),
                node("Service/comfyui", Layer::Processing, Health::Healthy, false),
            ],
            edges: vec![TopoEdge {
                from: "Service/comfyui".into(),
                to: "Deployment/comfyui".into(),
                kind: EdgeKind::Selects,
            }],
        }
    }

    #[test]
    fn mermaid_has_subgraphs_edges_and_health_classes() {
        let m = mermaid(&sample());
        assert!(m.contains("flowchart TB"));
        assert!(m.contains("subgraph processing[\"Processing\"]"));
        assert!(m.contains("n1 -->|selects| n0"));
        assert!(m.contains("class n0 degraded"));
        assert!(m.contains("GPU"));
    }

    #[test]
    fn ascii_lines_are_aligned() {
        let a = ascii(&sample());
        let framed: Vec<&str> = a.lines().filter(|l| l.starts_with(['|', '+'])).collect();
        let width = framed[0].chars().count();
        assert!(framed.iter().all(|l| l.chars().count() == width), "{a}");
        assert!(a.contains("PROCESSING LAYER [FAIL]"));
        assert!(a.contains("[FAIL] GPU :0.3.10"));
        assert!(a.contains("comfyui (Service) --selects--> comfyui (Deployment)"));
        assert!(a.is_ascii() || a.contains('…'));
    }
}
