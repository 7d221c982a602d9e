//! Label and field selectors as the API server parses them from `labelSelector` and
//! `fieldSelector`, evaluated against stored JSON objects.

use serde_json::Value;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
    GreaterThan(String, i64),
    LessThan(String, i64),
}

/// A parsed `labelSelector`: every requirement must hold (they are comma-joined).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LabelSelector(Vec<Requirement>);

impl LabelSelector {
    /// Parses `a=b,c!=d,e,!f,g in (x,y),h notin (z),i>3`; an error names the bad part.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            requirements.push(parse_requirement(part)?);
        }
        Ok(Self(requirements))
    }

    /// Whether an object with these `metadata.labels` is selected.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        let label = |key: &str| labels.get(key).and_then(Value::as_str);
        self.0.iter().all(|req| match req {
            Requirement::Equals(k, v) => label(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => label(k) != Some(v.as_str()),
            Requirement::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Requirement::NotIn(k, vs) => !label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Requirement::Exists(k) => label(k).is_some(),
            Requirement::NotExists(k) => label(k).is_none(),
            Requirement::GreaterThan(k, n) => label(k)
                .and_then(|l| l.parse::<i64>().ok())
                .is_some_and(|l| l > *n),
            Requirement::LessThan(k, n) => label(k)
                .and_then(|l| l.parse::<i64>().ok())
                .is_some_and(|l| l < *n),
        })
    }
}

/// Splits on commas that are not inside `( )`.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn valid_key(key: &str) -> Result<String, String> {
    let ok = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(key.to_owned())
    } else {
        Err(format!("invalid label key {key:?}"))
    }
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    if let Some(open) = part.find('(') {
        let Some(inner) = part[open + 1..].strip_suffix(')') else {
            return Err(format!("unterminated set in {part:?}"));
        };
        let head: Vec<&str> = part[..open].split_whitespace().collect();
        let values: Vec<String> = inner
            .split(',')
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect();
        return match head.as_slice() {
            [key, "in"] => Ok(Requirement::In(valid_key(key)?, values)),
            [key, "notin"] => Ok(Requirement::NotIn(valid_key(key)?, values)),
            _ => Err(format!(
                "expected `key in (..)` or `key notin (..)`, got {part:?}"
            )),
        };
    }
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement::NotExists(valid_key(key.trim())?));
    }
    for (op, build) in [
        (
            "!=",
            Requirement::NotEquals as fn(String, String) -> Requirement,
        ),
        ("==", Requirement::Equals),
        ("=", Requirement::Equals),
    ] {
        if let Some((key, value)) = part.split_once(op) {
            return Ok(build(valid_key(key.trim())?, value.trim().to_owned()));
        }
    }
    for (op, build) in [
        (
            ">",
            Requirement::GreaterThan as fn(String, i64) -> Requirement,
        ),
        ("<", Requirement::LessThan),
    ] {
        if let Some((key, value)) = part.split_once(op) {
            let n = value
                .trim()
                .parse()
                .map_err(|_| format!("{op} needs an integer in {part:?}"))?;
            return Ok(build(valid_key(key.trim())?, n));
        }
    }
    Ok(Requirement::Exists(valid_key(part)?))
}

/// A parsed `fieldSelector`: comma-joined `path=value`, `path==value`, `path!=value`.
///
/// Any dotted path into the object is accepted (`metadata.name`, `status.phase`,
/// `involvedObject.kind`, `spec.nodeName`, ...), where a real server accepts only a
/// few per kind; a missing field compares as the empty string, as on a real server.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    /// Parses the query value; an error names the bad part.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (path, equal, value) = if let Some((p, v)) = part.split_once("!=") {
                (p, false, v)
            } else if let Some((p, v)) = part.split_once("==") {
                (p, true, v)
            } else if let Some((p, v)) = part.split_once('=') {
                (p, true, v)
            } else {
                return Err(format!("invalid field selector {part:?}"));
            };
            terms.push((path.trim().to_owned(), equal, value.trim().to_owned()));
        }
        Ok(Self(terms))
    }

    /// Whether the object is selected.
    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(path, equal, value)| {
            let mut at = object;
            for step in path.split('.') {
                at = &at[step];
            }
            let actual = match at {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (actual == *value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labelled(labels: Value) -> Value {
        json!({"metadata": {"name": "x", "labels": labels}, "status": {"phase": "Running"}})
    }

    #[test]
    fn label_selectors_follow_kubernetes_semantics() {
        let obj = labelled(json!({"app": "web", "tier": "front", "n": "5"}));
        let ok = |s: &str| LabelSelector::parse(s).expect(s).matches(&obj);
        assert!(ok("app=web"));
        assert!(ok("app==web,tier=front"));
        assert!(!ok("app!=web"));
        assert!(ok("missing!=x"));
        assert!(ok("app"));
        assert!(!ok("!app"));
        assert!(ok("!missing"));
        assert!(ok("app in (api, web)"));
        assert!(!ok("app notin (web)"));
        assert!(ok("missing notin (web)"));
        assert!(!ok("missing in (web)"));
        assert!(ok("n>3,n<6"));
        assert!(ok(""));
        assert!(LabelSelector::parse("app in (web").is_err());
        assert!(LabelSelector::parse("a b").is_err());
    }

    #[test]
    fn field_selectors_read_dotted_paths() {
        let obj = labelled(json!({}));
        let ok = |s: &str| FieldSelector::parse(s).expect(s).matches(&obj);
        assert!(ok("metadata.name=x,status.phase=Running"));
        assert!(!ok("metadata.name!=x"));
        assert!(ok("spec.nodeName="));
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
