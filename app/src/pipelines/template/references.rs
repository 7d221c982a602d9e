//! References inside a stage's values (`${params.NAME}`, `${stages.NAME.outputs}`,
//! `${stages.NAME.outputs.NODE}`, `${stages.NAME.values.FIELD}`, `${item.FIELD}`,
//! `${output}`), and the check that an argument names no place of its own choosing.

/// A reference inside a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    Param(String),
    Outputs(String),
    /// `${stages.NAME.outputs.NODE}`: the files one node of a ComfyUI stage wrote.
    NodeOutputs(String, String),
    /// `${stages.NAME.values}` or `${stages.NAME.values.FIELD.…}`: the JSON a stage
    /// ended with (a LangGraph stage's final values), or a field inside it (an index
    /// picks an item of a list).
    Values(String, Vec<String>),
    /// `${item}` or `${item.FIELD.…}`: in a stage with `for_each`, the item this
    /// instance runs for.
    Item(Vec<String>),
    /// `${output}`: this stage's own output directory.
    Output,
}

/// Most fields a path into JSON may name.
const MAX_PATH: usize = 8;

/// A path into JSON (`shots.0.prompt`), when every field is a short name or an index.
fn json_path(parts: &[&str]) -> Option<Vec<String>> {
    let field = |p: &&str| {
        !p.is_empty()
            && p.len() <= 64
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
    };
    (parts.len() <= MAX_PATH && parts.iter().all(field))
        .then(|| parts.iter().map(|p| (*p).to_owned()).collect())
}

/// The value at `path` inside `value`: fields of objects, indices of lists.
pub fn json_at<'a>(value: &'a serde_json::Value, path: &[String]) -> Option<&'a serde_json::Value> {
    path.iter().try_fold(value, |v, field| match v {
        serde_json::Value::Object(map) => map.get(field),
        serde_json::Value::Array(items) => items.get(field.parse::<usize>().ok()?),
        _ => None,
    })
}

/// Every `${...}` in `text`, or the first malformed one.
pub fn references(text: &str) -> Result<Vec<Reference>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("\"{text}\" opens a reference with ${{ and never closes it"))?;
        let inner = after[..end].trim();
        let parts: Vec<&str> = inner.split('.').collect();
        let reference = match parts.as_slice() {
            ["params", name] if !name.is_empty() => Reference::Param((*name).to_owned()),
            ["stages", name, "outputs"] if !name.is_empty() => {
                Reference::Outputs((*name).to_owned())
            }
            ["stages", name, "outputs", node]
                if !name.is_empty()
                    && !node.is_empty()
                    && node.len() <= 64
                    && node.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-')) =>
            {
                Reference::NodeOutputs((*name).to_owned(), (*node).to_owned())
            }
            ["stages", name, "values", path @ ..] if !name.is_empty() => match json_path(path) {
                Some(path) => Reference::Values((*name).to_owned(), path),
                None => return Err(format!("${{{inner}}}: a path into values names at most {MAX_PATH} fields, each letters, digits, '_' or '-'")),
            },
            ["item", path @ ..] => match json_path(path) {
                Some(path) => Reference::Item(path),
                None => return Err(format!("${{{inner}}}: a path into the item names at most {MAX_PATH} fields, each letters, digits, '_' or '-'")),
            },
            ["output"] => Reference::Output,
            _ => {
                return Err(format!(
                    "${{{inner}}} is not a reference: use ${{params.NAME}}, ${{stages.NAME.outputs}}, ${{stages.NAME.outputs.NODE}}, ${{stages.NAME.values.FIELD}}, ${{item.FIELD}} or ${{output}}"
                ))
            }
        };
        out.push(reference);
        rest = &after[end + 1..];
    }
    Ok(out)
}

/// What separates a path from what is around it inside one argument (`movie=/x`,
/// `a.png,/x`, `file:/x`, `-c 'cat /x'`).
fn is_path_boundary(c: char) -> bool {
    matches!(
        c,
        '=' | ',' | ':' | ';' | '\'' | '"' | '(' | '<' | '>' | '|' | '&'
    ) || c.is_whitespace()
}

/// Why a stage's argument would name a place of its own choosing rather than one Slate
/// gave it, if it does: a `..` segment, a `file:` URL, or (when `absolute` is refused) an
/// absolute path at the start of the argument or after a boundary. What references
/// resolve to does not count: Slate chose those places. `https://…` is not a path.
pub fn host_path(text: &str, refuse_absolute: bool) -> Option<&'static str> {
    // The literal text, each reference standing as one placeholder character.
    let mut literal = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        // An unclosed reference is malformed (check_text says so) and stays literal.
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        literal.push_str(&rest[..start]);
        literal.push('\u{1}');
        rest = &rest[start + end + 1..];
    }
    literal.push_str(rest);
    let climbs = literal
        .split(|c: char| c == '/' || c == '\\' || is_path_boundary(c))
        .any(|segment| segment == "..");
    if climbs {
        return Some("climbs out of its directory with \"..\"");
    }
    let chars: Vec<char> = literal.chars().collect();
    let starts_a_word = |i: usize| {
        i.checked_sub(1)
            .map(|b| chars[b])
            .is_none_or(is_path_boundary)
    };
    let lower = literal.to_ascii_lowercase();
    let file_url = lower
        .match_indices("file:")
        .any(|(at, _)| starts_a_word(lower[..at].chars().count()));
    if file_url {
        return Some("names a file by a file: URL");
    }
    if !refuse_absolute {
        return None;
    }
    let absolute = chars.iter().enumerate().any(|(i, &c)| {
        let url = i > 0 && chars[i - 1] == ':' && chars.get(i + 1) == Some(&'/');
        (c == '/' || c == '~') && starts_a_word(i) && !url
    });
    absolute.then_some("names an absolute path on the host")
}
