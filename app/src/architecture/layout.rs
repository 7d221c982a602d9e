//! Places the topology on a canvas: one horizontal swimlane per layer, boxes in rows
//! inside their lane (a Service next to the workload it selects, configuration after
//! its consumers), edges as curves between box borders. Pure arithmetic, so the server
//! render, the browser and the exports draw exactly the same picture.

use std::collections::BTreeMap;

use super::{EdgeKind, Health, Layer, TopoNode, Topology};

pub const BOX_W: f64 = 208.0;
pub const BOX_H: f64 = 88.0;
pub const GAP_X: f64 = 22.0;
pub const GAP_Y: f64 = 20.0;
pub const LANE_LABEL_W: f64 = 132.0;
pub const LANE_PAD: f64 = 18.0;
pub const COLUMNS: usize = 6;
pub const LEGEND_H: f64 = 40.0;

#[derive(Clone, Debug, PartialEq)]
pub struct Lane {
    pub layer: Layer,
    pub y: f64,
    pub height: f64,
    pub health: Option<Health>,
    pub count: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Placed<'a> {
    pub node: &'a TopoNode,
    pub x: f64,
    pub y: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Curve {
    pub from: String,
    pub to: String,
    pub kind: EdgeKind,
    /// SVG path data.
    pub d: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Layout<'a> {
    pub width: f64,
    pub height: f64,
    pub lanes: Vec<Lane>,
    pub boxes: Vec<Placed<'a>>,
    pub curves: Vec<Curve>,
    /// Where the legend starts.
    pub legend_y: f64,
}

/// Rank of kinds inside a group: the workload first, then what fronts it.
fn kind_rank(kind: &str) -> u8 {
    match kind {
        "Ingress" => 0,
        "Deployment" | "StatefulSet" | "DaemonSet" | "Job" | "ReplicaSet" | "Pod" => 1,
        "Service" => 2,
        "PersistentVolumeClaim" => 3,
        "ConfigMap" => 4,
        "Secret" => 5,
        _ => 6,
    }
}

pub fn layout(topology: &Topology) -> Layout<'_> {
    // Group each non-workload with the first workload it is attached to, so related
    // boxes sit side by side.
    let mut anchor: BTreeMap<&str, &str> = BTreeMap::new();
    for e in &topology.edges {
        match e.kind {
            EdgeKind::Selects => {
                anchor.entry(e.from.as_str()).or_insert(e.to.as_str());
            }
            EdgeKind::Mounts | EdgeKind::Config => {
                anchor.entry(e.to.as_str()).or_insert(e.from.as_str());
            }
            _ => {}
        }
    }
    let group_of = |n: &TopoNode| -> String {
        anchor
            .get(n.id.as_str())
            .map(|a| a.split_once('/').map_or(*a, |(_, name)| name).to_owned())
            .unwrap_or_else(|| n.name.clone())
    };

    let mut lanes = Vec::new();
    let mut boxes = Vec::new();
    let mut y = 0.0;
    for layer in Layer::ALL {
        let mut members: Vec<&TopoNode> =
            topology.nodes.iter().filter(|n| n.layer == layer).collect();
        if members.is_empty() {
            continue;
        }
        members.sort_by_cached_key(|n| (group_of(n), kind_rank(&n.kind), n.name.clone()));
        let rows = members.len().div_ceil(COLUMNS);
        let height = LANE_PAD * 2.0 + rows as f64 * BOX_H + (rows as f64 - 1.0) * GAP_Y;
        for (i, node) in members.iter().enumerate() {
            let (row, col) = (i / COLUMNS, i % COLUMNS);
            boxes.push(Placed {
                node,
                x: LANE_LABEL_W + GAP_X + col as f64 * (BOX_W + GAP_X),
                y: y + LANE_PAD + row as f64 * (BOX_H + GAP_Y),
            });
        }
        lanes.push(Lane {
            layer,
            y,
            height,
            health: topology.layer_health(layer),
            count: members.len(),
        });
        y += height;
    }
    let columns = topology
        .nodes
        .iter()
        .fold(BTreeMap::<Layer, usize>::new(), |mut m, n| {
            *m.entry(n.layer).or_default() += 1;
            m
        })
        .values()
        .map(|c| (*c).min(COLUMNS))
        .max()
        .unwrap_or(1)
        .max(4);
    let width = LANE_LABEL_W + GAP_X + columns as f64 * (BOX_W + GAP_X);

    let at: BTreeMap<&str, (f64, f64)> = boxes
        .iter()
        .map(|b| (b.node.id.as_str(), (b.x, b.y)))
        .collect();
    let curves = topology
        .edges
        .iter()
        .filter_map(|e| {
            let from = at.get(e.from.as_str())?;
            let to = at.get(e.to.as_str())?;
            Some(Curve {
                from: e.from.clone(),
                to: e.to.clone(),
                kind: e.kind,
                d: curve(*from, *to),
            })
        })
        .collect();

    Layout {
        width,
        height: y + LEGEND_H,
        lanes,
        boxes,
        curves,
        legend_y: y + 12.0,
    }
}

/// A curve from one box to another: vertical between rows, an arch above within a row.
fn curve((x1, y1): (f64, f64), (x2, y2): (f64, f64)) -> String {
    let (cx1, cx2) = (x1 + BOX_W / 2.0, x2 + BOX_W / 2.0);
    if (y1 - y2).abs() < 1.0 {
        let (ax, bx) = if x1 < x2 {
            (x1 + BOX_W, x2)
        } else {
            (x1, x2 + BOX_W)
        };
        if (ax - bx).abs() <= GAP_X + 1.0 {
            // Neighbours: a short straight line between facing sides.
            let my = y1 + BOX_H / 2.0;
            return format!("M{ax:.0},{my:.0} L{bx:.0},{my:.0}");
        }
        let lift = (18.0 + (cx1 - cx2).abs() / 12.0).min(LANE_PAD + GAP_Y);
        return format!(
            "M{cx1:.0},{y1:.0} C{cx1:.0},{a:.0} {cx2:.0},{a:.0} {cx2:.0},{y2:.0}",
            a = y1 - lift
        );
    }
    let (sy, ty) = if y1 < y2 {
        (y1 + BOX_H, y2)
    } else {
        (y1, y2 + BOX_H)
    };
    let mid = (sy + ty) / 2.0;
    format!("M{cx1:.0},{sy:.0} C{cx1:.0},{mid:.0} {cx2:.0},{mid:.0} {cx2:.0},{ty:.0}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::architecture::{Source, TopoEdge};

    fn node(id: &str, layer: Layer) -> TopoNode {
        let (kind, name) = id.split_once('/').unwrap();
        TopoNode {
            id: id.into(),
            kind: kind.into(),
            name: name.into(),
            layer,
            health: Health::Healthy,
            reason: None,
            ready: None,
            desired: None,
            pods: 0,
            gpu: false,
            images: vec![],
            facts: vec![],
        }
    }

    #[test]
    fn lanes_stack_in_order_and_boxes_never_overlap() {
        let mut nodes: Vec<TopoNode> = (0..15)
            .map(|i| node(&format!("Deployment/app{i:02}"), Layer::Application))
            .collect();
        nodes.push(node("PersistentVolumeClaim/models", Layer::Storage));
        nodes.push(node("Service/app03", Layer::Application));
        let topology = Topology {
            version: 1,
            namespace: "ai-film".into(),
            source: Source::Desired { why: "test".into() },
            generated_at: chrono::Utc::now(),
            objects: nodes.len(),
            folded: false,
            edges: vec![TopoEdge {
                from: "Service/app03".into(),
                to: "Deployment/app03".into(),
                kind: EdgeKind::Selects,
            }],
            nodes,
        };
        let l = layout(&topology);
        assert_eq!(
            l.lanes.iter().map(|l| l.layer).collect::<Vec<_>>(),
            [Layer::Application, Layer::Storage]
        );
        // 16 application boxes in rows of six: three rows.
        assert_eq!(
            l.lanes[0].height,
            LANE_PAD * 2.0 + 3.0 * BOX_H + 2.0 * GAP_Y
        );
        for (i, a) in l.boxes.iter().enumerate() {
            for b in &l.boxes[i + 1..] {
                let apart = a.x + BOX_W <= b.x
                    || b.x + BOX_W <= a.x
                    || a.y + BOX_H <= b.y
                    || b.y + BOX_H <= a.y;
                assert!(apart, "{} overlaps {}", a.node.id, b.node.id);
            }
            assert!(a.x + BOX_W <= l.width && a.y + BOX_H <= l.height);
        }
        // The Service sits right after the workload it selects.
        let order: Vec<&str> = l.boxes.iter().map(|b| b.node.id.as_str()).collect();
        let at = order
            .iter()
            .position(|id| *id == "Deployment/app03")
            .unwrap();
        assert_eq!(order[at + 1], "Service/app03");
        assert_eq!(l.curves.len(), 1);
        assert!(l.curves[0].d.starts_with('M'));
    }
}
