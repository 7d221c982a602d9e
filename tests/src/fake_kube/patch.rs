//! The four PATCH flavours the API server accepts: JSON merge patch (RFC 7386), strategic
//! merge patch (simplified, see [`strategic_merge`]), JSON patch (RFC 6902) and the body of a
//! server-side apply, which the fake treats as a strategic merge.

use serde_json::{Map, Value};

/// Why a patch could not be applied, and the HTTP status a real server answers with.
#[derive(Debug)]
pub(crate) struct PatchError {
    pub code: u16,
    pub message: String,
}

fn invalid(message: impl Into<String>) -> PatchError {
    PatchError {
        code: 422,
        message: message.into(),
    }
}

fn bad_request(message: impl Into<String>) -> PatchError {
    PatchError {
        code: 400,
        message: message.into(),
    }
}

/// RFC 7386: objects merge recursively, `null` removes a key, anything else replaces.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let target = target.as_object_mut().expect("made an object above");
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// The key that identifies items of a list field in a strategic merge, as Kubernetes'
/// `patchMergeKey` tags declare them for the fields Slate and kubectl touch.
fn merge_key(field: &str, item: &Value) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "conditions" => Some("type"),
        "ownerReferences" => Some("uid"),
        "hostAliases" => Some("ip"),
        "ports" if item.get("containerPort").is_some() => Some("containerPort"),
        "ports" => Some("port"),
        _ => None,
    }
}

/// Removes `$patch`, `$setElementOrder/..`, `$retainKeys` and other directives from a value
/// that is inserted as a whole.
fn strip_directives(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

/// A strategic merge patch, simplified: like a merge patch, except that lists of objects
/// under the fields of [`merge_key`] (`containers`, `initContainers`, `volumes`, `env`,
/// `imagePullSecrets` by `name`; `volumeMounts` by `mountPath`; `ports` by `containerPort`
/// or `port`; `conditions` by `type`; `ownerReferences` by `uid`) merge item by item, new
/// items appended; an item `{"<key>": .., "$patch": "delete"}` removes its match, and a map
/// with `"$patch": "replace"` replaces instead of merging. Other lists are replaced; other
/// directives (`$setElementOrder`, `$retainKeys`, `$deleteFromPrimitiveList`) are ignored.
pub(crate) fn strategic_merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = strip_directives(patch);
        return;
    };
    if patch_map.get("$patch").and_then(Value::as_str) == Some("replace") || !target.is_object() {
        *target = strip_directives(patch);
        return;
    }
    let target = target.as_object_mut().expect("checked above");
    for (key, value) in patch_map {
        if key.starts_with('$') {
            continue;
        }
        if value.is_null() {
            target.remove(key);
            continue;
        }
        match (target.get_mut(key), value) {
            (Some(Value::Array(existing)), Value::Array(items)) => {
                merge_list(key, existing, items);
            }
            (Some(existing @ Value::Object(_)), Value::Object(_)) => {
                strategic_merge(existing, value);
            }
            (_, Value::Array(items)) => {
                let mut list = Vec::new();
                merge_list(key, &mut list, items);
                target.insert(key.clone(), Value::Array(list));
            }
            (_, Value::Object(_)) => {
                let mut fresh = Value::Object(Map::new());
                strategic_merge(&mut fresh, value);
                target.insert(key.clone(), fresh);
            }
            _ => {
                target.insert(key.clone(), value.clone());
            }
        }
    }
}

fn merge_list(field: &str, existing: &mut Vec<Value>, items: &[Value]) {
    let key = items.first().and_then(|item| merge_key(field, item));
    let keyed = key.is_some_and(|k| items.iter().all(|item| item.get(k).is_some()));
    let Some(key) = key.filter(|_| keyed) else {
        *existing = items.iter().map(strip_directives).collect();
        return;
    };
    for item in items {
        let position = existing.iter().position(|e| e.get(key) == item.get(key));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (position, delete) {
            (Some(i), true) => {
                existing.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => strategic_merge(&mut existing[i], item),
            (None, false) => existing.push(strip_directives(item)),
        }
    }
}

/// Splits a JSON pointer (RFC 6901) into unescaped reference tokens.
fn pointer(path: &str) -> Result<Vec<String>, PatchError> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(bad_request(format!("invalid JSON pointer {path:?}")));
    };
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn resolve<'a>(
    doc: &'a mut Value,
    tokens: &[String],
    path: &str,
) -> Result<&'a mut Value, PatchError> {
    let mut at = doc;
    for token in tokens {
        at = match at {
            Value::Object(map) => map.get_mut(token),
            Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| invalid(format!("path {path:?} does not exist")))?;
    }
    Ok(at)
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), PatchError> {
    let tokens = pointer(path)?;
    let Some((last, parent)) = tokens.split_last() else {
        *doc = value;
        return Ok(());
    };
    match resolve(doc, parent, path)? {
        Value::Object(map) => {
            map.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(items) => {
            let index = if last == "-" {
                items.len()
            } else {
                last.parse::<usize>()
                    .ok()
                    .filter(|i| *i <= items.len())
                    .ok_or_else(|| invalid(format!("index out of range in {path:?}")))?
            };
            items.insert(index, value);
            Ok(())
        }
        _ => Err(invalid(format!("parent of {path:?} is not a container"))),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, PatchError> {
    let tokens = pointer(path)?;
    let Some((last, parent)) = tokens.split_last() else {
        return Ok(std::mem::take(doc));
    };
    let missing = || invalid(format!("path {path:?} does not exist"));
    match resolve(doc, parent, path)? {
        Value::Object(map) => map.remove(last).ok_or_else(missing),
        Value::Array(items) => {
            let i = last.parse::<usize>().ok().filter(|i| *i < items.len());
            i.map(|i| items.remove(i)).ok_or_else(missing)
        }
        _ => Err(missing()),
    }
}

/// RFC 6902: `add`, `remove`, `replace`, `move`, `copy`, `test`, applied in order to a
/// copy; a failed `test` or a missing path is a 422, a malformed operation a 400.
pub(crate) fn json_patch(doc: &Value, operations: &Value) -> Result<Value, PatchError> {
    let Some(operations) = operations.as_array() else {
        return Err(bad_request("a JSON patch must be an array of operations"));
    };
    let mut doc = doc.clone();
    for op in operations {
        let field = |name: &str| {
            op.get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| bad_request(format!("operation {op} lacks {name:?}")))
        };
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| bad_request(format!("operation {op} lacks \"value\"")))
        };
        let path = field("path")?;
        match field("op")? {
            "add" => add(&mut doc, path, value()?)?,
            "remove" => {
                remove(&mut doc, path)?;
            }
            "replace" => {
                let tokens = pointer(path)?;
                *resolve(&mut doc, &tokens, path)? = value()?;
            }
            "move" => {
                let from = field("from")?;
                if path.starts_with(&format!("{from}/")) {
                    return Err(invalid(format!("cannot move {from:?} into itself")));
                }
                let moved = remove(&mut doc, from)?;
                add(&mut doc, path, moved)?;
            }
            "copy" => {
                let from = field("from")?;
                let tokens = pointer(from)?;
                let copied = resolve(&mut doc, &tokens, from)?.clone();
                add(&mut doc, path, copied)?;
            }
            "test" => {
                let tokens = pointer(path)?;
                let expected = value()?;
                let actual = resolve(&mut doc, &tokens, path)?;
                if *actual != expected {
                    return Err(invalid(format!(
                        "test operation for path {path:?} failed: expected {expected}, found {actual}"
                    )));
                }
            }
            other => {
                return Err(bad_request(format!(
                    "unknown JSON patch operation {other:?}"
                )));
            }
        }
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge_patch(&mut doc, &json!({"a": "z", "c": {"f": null}, "l": [3]}));
        assert_eq!(doc, json!({"a": "z", "c": {"d": "e"}, "l": [3]}));
    }

    #[test]
    fn strategic_merge_merges_named_lists() {
        let mut doc = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "b:1"}
        ], "tolerations": [{"key": "k"}]}});
        strategic_merge(
            &mut doc,
            &json!({"spec": {"containers": [
                {"name": "a", "env": [{"name": "Y", "value": "2"}]},
                {"name": "b", "$patch": "delete"},
                {"name": "c", "image": "c:1"}
            ], "tolerations": [{"key": "t"}], "$setElementOrder/containers": []}}),
        );
        assert_eq!(
            doc,
            json!({"spec": {"containers": [
                {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]},
                {"name": "c", "image": "c:1"}
            ], "tolerations": [{"key": "t"}]}})
        );
    }

    #[test]
    fn json_patch_follows_rfc_6902() {
        let doc = json!({"metadata": {"annotations": {"a/b": "1"}}, "l": [1, 2, 3]});
        let out = json_patch(
            &doc,
            &json!([
                {"op": "test", "path": "/metadata/annotations/a~1b", "value": "1"},
                {"op": "replace", "path": "/metadata/annotations/a~1b", "value": "2"},
                {"op": "add", "path": "/l/-", "value": 4},
                {"op": "remove", "path": "/l/0"},
                {"op": "copy", "from": "/l", "path": "/m"},
                {"op": "move", "from": "/m", "path": "/n"},
                {"op": "add", "path": "/l/0", "value": 0}
            ]),
        )
        .expect("applies");
        assert_eq!(
            out,
            json!({"metadata": {"annotations": {"a/b": "2"}}, "l": [0, 2, 3, 4], "n": [2, 3, 4]})
        );
        let failed = json_patch(&doc, &json!([{"op": "test", "path": "/l/0", "value": 9}]));
        assert_eq!(failed.expect_err("test fails").code, 422);
        let missing = json_patch(&doc, &json!([{"op": "remove", "path": "/nope"}]));
        assert_eq!(missing.expect_err("missing path").code, 422);
    }
}
