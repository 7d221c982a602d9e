//! References inside a stage's values (`${params.NAME}`, `${stages.NAME.outputs}`,
//! `${stages.NAME.outputs.NODE}`, `${output}`), and the check that an argument names no place of its own choosing.

/// A reference inside a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    Param(String),
    Outputs(String),
    /// `${stages.NAME.outputs.NODE}`: the files one node of a ComfyUI stage wrote.
    NodeOutputs(String, String),
    /// `${output}`: this stage's own output directory.
    Output,
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
            ["output"] => Reference::Output,
            _ => {
                return Err(format!(
                    "${{{inner}}} is not a reference: use ${{params.NAME}}, ${{stages.NAME.outputs}}, ${{stages.NAME.outputs.NODE}} or ${{output}}"
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
