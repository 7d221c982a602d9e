//! Folding a large namespace: configuration and single-workload Services go into the
//! workloads that use them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use app::architecture::{EdgeKind, Health, TopoEdge, TopoNode};

/// Above this many boxes, configuration and single-workload Services are folded into
/// the workloads that use them, so that a large namespace stays readable.
pub const FOLD_ABOVE: usize = 80;

pub(super) fn fold(nodes: &mut Vec<TopoNode>, edges: &mut BTreeSet<TopoEdge>) {
    let by_id: HashMap<String, TopoNode> =
        nodes.iter().map(|n| (n.id.clone(), n.clone())).collect();
    let mut gone: BTreeSet<String> = BTreeSet::new();
    let mut facts: BTreeMap<String, BTreeMap<&'static str, usize>> = BTreeMap::new();
    // Existing ConfigMaps and Secrets become counts on their readers (missing ones stay
    // drawn: they are a problem to see).
    for n in by_id.values() {
        if (n.kind == "ConfigMap" || n.kind == "Secret") && n.health != Health::Missing {
            let readers: Vec<&TopoEdge> = edges
                .iter()
                .filter(|e| e.kind == EdgeKind::Config && e.to == n.id)
                .collect();
            if readers.is_empty() {
                continue;
            }
            for e in readers {
                let label = if n.kind == "Secret" {
                    "Secrets"
                } else {
                    "ConfigMaps"
                };
                *facts
                    .entry(e.from.clone())
                    .or_default()
                    .entry(label)
                    .or_default() += 1;
            }
            gone.insert(n.id.clone());
        }
    }
    // A healthy Service in front of exactly one workload folds into it.
    let mut moved: HashMap<String, String> = HashMap::new();
    for n in by_id
        .values()
        .filter(|n| n.kind == "Service" && n.health == Health::Healthy)
    {
        let selected: Vec<&TopoEdge> = edges
            .iter()
            .filter(|e| e.kind == EdgeKind::Selects && e.from == n.id)
            .collect();
        if let [only] = selected.as_slice() {
            moved.insert(n.id.clone(), only.to.clone());
            *facts
                .entry(only.to.clone())
                .or_default()
                .entry("Service")
                .or_default() += 1;
            gone.insert(n.id.clone());
        }
    }
    let old = std::mem::take(edges);
    for mut e in old {
        if gone.contains(&e.from) && !moved.contains_key(&e.from) {
            continue;
        }
        if let Some(w) = moved.get(&e.to) {
            e.to = w.clone();
        }
        if let Some(w) = moved.get(&e.from) {
            if e.kind == EdgeKind::Selects {
                continue;
            }
            e.from = w.clone();
        }
        if gone.contains(&e.to) || e.from == e.to {
            continue;
        }
        edges.insert(e);
    }
    nodes.retain(|n| !gone.contains(&n.id));
    for n in nodes.iter_mut() {
        if let Some(counts) = facts.get(&n.id) {
            let text = counts
                .iter()
                .map(|(label, count)| match (*label, count) {
                    ("Service", _) => "Service".to_owned(),
                    (label, 1) => format!("1 {}", label.trim_end_matches('s')),
                    (label, c) => format!("{c} {label}"),
                })
                .collect::<Vec<_>>()
                .join(", ");
            n.facts.push(format!("+ {text}"));
        }
    }
}
