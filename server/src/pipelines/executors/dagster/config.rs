//! A dagster stage's inputs as a Dagster run config: an input's name is a path into the
//! config, its dots separating the levels (`ops.render_shot.config.frames: 5` becomes
//! `{"ops": {"render_shot": {"config": {"frames": 5}}}}`); an input named without a dot
//! is a top-level key (`resources`, or a whole `ops` mapping). Inputs that share a prefix
//! are merged; one that would replace another's value is refused, naming both.

use serde_json::{Map, Value};

/// The run config the bound inputs make.
pub fn run_config(inputs: &Map<String, Value>) -> Result<Value, String> {
    let mut config = Map::new();
    for (name, value) in inputs {
        let path: Vec<&str> = name.split('.').collect();
        if path.iter().any(|p| p.is_empty()) {
            return Err(format!(
                "input \"{name}\" is not a path into the run config (a name between every two dots)"
            ));
        }
        let (last, parents) = path.split_last().ok_or("an input with no name")?;
        let mut at = &mut config;
        for (depth, part) in parents.iter().enumerate() {
            let entry = at
                .entry((*part).to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            at = match entry {
                Value::Object(inner) => inner,
                _ => {
                    return Err(format!(
                        "input \"{name}\" goes inside \"{}\", which another input sets to a value",
                        path[..=depth].join(".")
                    ))
                }
            };
        }
        match at.get_mut(*last) {
            None => {
                at.insert((*last).to_owned(), value.clone());
            }
            Some(existing) => merge(existing, value).map_err(|inner| {
                let at = if inner.is_empty() {
                    name.clone()
                } else {
                    format!("{name}.{inner}")
                };
                format!("input \"{name}\" sets \"{at}\", which another input sets too")
            })?,
        }
    }
    Ok(Value::Object(config))
}

/// Merges `value` into `into` (both mappings, recursively); the key both set otherwise.
fn merge(into: &mut Value, value: &Value) -> Result<(), String> {
    match (into, value) {
        (Value::Object(into), Value::Object(value)) => {
            for (k, v) in value {
                match into.get_mut(k) {
                    None => {
                        into.insert(k.clone(), v.clone());
                    }
                    Some(existing) => merge(existing, v).map_err(|inner| {
                        if inner.is_empty() {
                            k.clone()
                        } else {
                            format!("{k}.{inner}")
                        }
                    })?,
                }
            }
            Ok(())
        }
        _ => Err(String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn inputs(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn dotted_names_are_paths_into_the_run_config() {
        let config = run_config(&inputs(json!({
            "ops.render_shot.config.frames": 5,
            "ops.render_shot.config.shot": "sc01_sh010",
            "ops.check_shot.config": {"strict": true},
            "resources": {"io_manager": {"config": {"base_dir": "/w"}}},
        })))
        .unwrap();
        assert_eq!(
            config,
            json!({
                "ops": {
                    "render_shot": {"config": {"frames": 5, "shot": "sc01_sh010"}},
                    "check_shot": {"config": {"strict": true}},
                },
                "resources": {"io_manager": {"config": {"base_dir": "/w"}}},
            })
        );
    }

    #[test]
    fn a_mapping_and_paths_inside_it_merge() {
        let config = run_config(&inputs(json!({
            "ops.a": {"config": {"x": 1}},
            "ops.a.config.y": 2,
        })))
        .unwrap();
        assert_eq!(config, json!({"ops": {"a": {"config": {"x": 1, "y": 2}}}}));
    }

    #[test]
    fn conflicts_and_empty_levels_are_refused_by_name() {
        let e = run_config(&inputs(json!({"ops.a": 5, "ops.a.config.x": 1}))).unwrap_err();
        assert!(
            e.contains("ops.a.config.x") && e.contains("\"ops.a\""),
            "{e}"
        );
        let e = run_config(&inputs(
            json!({"ops.a": {"config": {"x": 1}}, "ops": {"a": {"config": {"x": 2}}}}),
        ))
        .unwrap_err();
        assert!(e.contains("a.config.x"), "{e}");
        let e = run_config(&inputs(json!({"ops..x": 1}))).unwrap_err();
        assert!(e.contains("ops..x"), "{e}");
        assert_eq!(run_config(&Map::new()).unwrap(), json!({}));
    }
}
