//! Parameter values: the one check the form in the browser and the server both apply.

use super::{ParamType, Parameter, MAX_SEED};

impl Parameter {
    pub fn label(&self) -> &str {
        self.label.as_deref().unwrap_or(&self.name)
    }

    /// Checks one value (as JSON) against the parameter; the browser and the server use
    /// the same rules. Asset ids are checked for shape here; that they exist, are of the
    /// kind and may be used is the server's part.
    pub fn check(&self, value: &serde_json::Value) -> Result<(), String> {
        use serde_json::Value;
        let label = self.label();
        match (&self.ty, value) {
            (_, Value::Null) if self.required && self.ty != ParamType::Seed => {
                Err(format!("{label} is required"))
            }
            (_, Value::Null) => Ok(()),
            (
                ParamType::String { max_length } | ParamType::Text { max_length },
                Value::String(s),
            ) => {
                if matches!(self.ty, ParamType::String { .. }) && s.contains('\n') {
                    return Err(format!("{label} is one line"));
                }
                if self.required && s.trim().is_empty() {
                    return Err(format!("{label} is required"));
                }
                match max_length {
                    Some(m) if s.chars().count() > *m => {
                        Err(format!("{label} is longer than {m} characters"))
                    }
                    _ => Ok(()),
                }
            }
            (ParamType::Integer { min, max }, Value::Number(n)) => {
                let Some(v) = n.as_i64() else {
                    return Err(format!("{label} must be a whole number"));
                };
                range(
                    label,
                    v as f64,
                    min.map(|m| m as f64),
                    max.map(|m| m as f64),
                )
            }
            (ParamType::Float { min, max }, Value::Number(n)) => {
                let v = n.as_f64().unwrap_or(f64::NAN);
                if !v.is_finite() {
                    return Err(format!("{label} must be a number"));
                }
                range(label, v, *min, *max)
            }
            (ParamType::Seed, Value::Number(n)) => match n.as_i64() {
                Some(v) if (0..=MAX_SEED).contains(&v) => Ok(()),
                _ => Err(format!(
                    "{label} must be a whole number from 0 to {MAX_SEED}"
                )),
            },
            (ParamType::Boolean, Value::Bool(_)) => Ok(()),
            (ParamType::Enum { options }, Value::String(s)) => {
                if options.contains(s) {
                    Ok(())
                } else {
                    Err(format!("{label} must be one of {}", options.join(", ")))
                }
            }
            // A model file's name: one name, no path (`loras/x` is how ComfyUI lists a
            // subfolder's file, so `/` inside is allowed, never `..` or a leading `/`).
            (ParamType::Model { folder }, Value::String(s)) => {
                let bad = s.is_empty()
                    || s.len() > 255
                    || s.starts_with(['/', '\\'])
                    || s.split(['/', '\\']).any(|p| p == ".." || p.is_empty())
                    || s.chars().any(char::is_control);
                if bad {
                    Err(format!(
                        "{label} must be the name of a file in the endpoint's {folder} folder"
                    ))
                } else {
                    Ok(())
                }
            }
            (ParamType::Asset { .. }, Value::String(s)) => uuid::Uuid::parse_str(s)
                .map(|_| ())
                .map_err(|_| format!("{label} must be an asset from the library")),
            (ParamType::Assets { max, .. }, Value::Array(items)) => {
                if self.required && items.is_empty() {
                    return Err(format!("{label} needs at least one asset"));
                }
                if let Some(m) = max.filter(|m| items.len() > *m) {
                    return Err(format!("{label} takes at most {m} assets"));
                }
                if items
                    .iter()
                    .all(|i| i.as_str().is_some_and(|s| uuid::Uuid::parse_str(s).is_ok()))
                {
                    Ok(())
                } else {
                    Err(format!("{label} must be assets from the library"))
                }
            }
            (ty, _) => Err(format!(
                "{label} must be {}",
                match ty {
                    ParamType::String { .. } | ParamType::Text { .. } | ParamType::Enum { .. } =>
                        "text",
                    ParamType::Model { .. } => "a model file's name",
                    ParamType::Integer { .. } | ParamType::Seed => "a whole number",
                    ParamType::Float { .. } => "a number",
                    ParamType::Boolean => "true or false",
                    ParamType::Asset { .. } => "an asset from the library",
                    ParamType::Assets { .. } => "a list of assets",
                }
            )),
        }
    }
}

fn range(label: &str, v: f64, min: Option<f64>, max: Option<f64>) -> Result<(), String> {
    match (min, max) {
        (Some(lo), Some(hi)) if v < lo || v > hi => {
            Err(format!("{label} must be from {lo} to {hi}"))
        }
        (Some(lo), _) if v < lo => Err(format!("{label} must be at least {lo}")),
        (_, Some(hi)) if v > hi => Err(format!("{label} must be at most {hi}")),
        _ => Ok(()),
    }
}
