//! The template model. A template is YAML:
//!
//! ```yaml
//! name: transcode-and-proxies
//! title: Transcode and proxies
//! parameters:
//!   - {name: source, type: asset, kind: video}
//!   - {name: crf, type: integer, min: 14, max: 35, default: 20}
//! stages:
//!   - name: proxy
//!     executor: local
//!     program: ffmpeg
//!     args: ["-i", "${params.source}", "-crf", "${params.crf}", "${output}/proxy.mp4"]
//! ```
//!
//! A stage names its executor (`local`, `comfyui`, `kubernetes`) and its inputs: literal
//! values or references, `${params.NAME}` and `${stages.NAME.outputs}` (which makes the
//! stage depend on that one, as `needs` does). Validation rejects unknown keys, unknown
//! references, cycles, and references whose type does not fit where they are used, and
//! says on which line.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

/// The kinds an asset parameter may ask for (as the asset library names them).
pub const ASSET_KINDS: [&str; 6] = ["image", "video", "audio", "scene", "model", "other"];
pub const EXECUTORS: [&str; 3] = ["local", "comfyui", "kubernetes"];
/// The ComfyUI workflow graphs Slate builds (parameters bound into a known graph).
/// `img2img` starts from an image: its `image` input names an image parameter
/// (`${params.NAME}`), whose asset is uploaded to ComfyUI when the stage runs.
pub const WORKFLOWS: [&str; 2] = ["txt2img", "img2img"];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ParamType {
    /// One line of text.
    String {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_length: Option<usize>,
    },
    /// Several lines (prompts, notes).
    Text {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_length: Option<usize>,
    },
    Integer {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<i64>,
    },
    Float {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<f64>,
    },
    Enum {
        options: Vec<String>,
    },
    Boolean,
    /// A random seed: an integer from 0 to 2^53 - 1, drawn when left empty.
    Seed,
    /// One asset of a kind from the library.
    Asset {
        kind: String,
    },
    /// Several assets of a kind.
    Assets {
        kind: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<usize>,
    },
}

/// Largest seed: what a JSON number holds exactly.
pub const MAX_SEED: i64 = (1 << 53) - 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Parameter {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    #[serde(flatten)]
    pub ty: ParamType,
    #[serde(default = "yes")]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
}

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub executor: String,
    /// Stages that must finish first (besides those referenced).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
    /// `local`: the program (an admin allows programs; see the executor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
    /// `local` and `kubernetes`: arguments, each one literal with references inside.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// `kubernetes`: the image (pinned) and command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// `kubernetes`: GPUs to request.
    #[serde(default)]
    pub gpu: u32,
    /// `comfyui`: the workflow graph's name; its inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, serde_json::Value>,
    /// Attempts before the stage fails (1 = no retry).
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Seconds before an attempt is stopped.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
}

fn default_attempts() -> u32 {
    3
}

fn default_timeout() -> u64 {
    3600
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub name: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub parameters: Vec<Parameter>,
    pub stages: Vec<Stage>,
}

/// A problem in a template, with the line it is on (1-based) when it can be found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// What a value in a stage is, for type checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Text,
    Number,
    Integer,
    Boolean,
    /// Files: an asset, assets, or a stage's outputs; with the kind when known.
    Files(Option<&'static str>),
}

impl Shape {
    fn describe(self) -> String {
        match self {
            Shape::Text => "text".into(),
            Shape::Number => "a number".into(),
            Shape::Integer => "an integer".into(),
            Shape::Boolean => "true or false".into(),
            Shape::Files(Some(k)) => format!("{k} files"),
            Shape::Files(None) => "files".into(),
        }
    }
}

fn kind_static(kind: &str) -> Option<&'static str> {
    ASSET_KINDS.iter().copied().find(|k| *k == kind)
}

impl ParamType {
    pub fn shape(&self) -> Shape {
        match self {
            ParamType::String { .. } | ParamType::Text { .. } | ParamType::Enum { .. } => {
                Shape::Text
            }
            ParamType::Integer { .. } | ParamType::Seed => Shape::Integer,
            ParamType::Float { .. } => Shape::Number,
            ParamType::Boolean => Shape::Boolean,
            ParamType::Asset { kind } | ParamType::Assets { kind, .. } => {
                Shape::Files(kind_static(kind))
            }
        }
    }
}

/// A reference inside a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    Param(String),
    Outputs(String),
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
            ["output"] => Reference::Output,
            _ => {
                return Err(format!(
                    "${{{inner}}} is not a reference: use ${{params.NAME}}, ${{stages.NAME.outputs}} or ${{output}}"
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

/// The line (1-based) of the first line of `source` containing `needle` at or after
/// line `from`.
fn line_of(source: &str, needle: &str, from: usize) -> Option<usize> {
    source
        .lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
}

/// What each executor's inputs must be.
fn expected_input(executor: &str, input: &str) -> Option<Shape> {
    match (executor, input) {
        ("comfyui", "prompt" | "negative") => Some(Shape::Text),
        ("comfyui", "seed" | "count" | "width" | "height" | "steps") => Some(Shape::Integer),
        ("comfyui", "cfg" | "denoise") => Some(Shape::Number),
        ("comfyui", "image") => Some(Shape::Files(Some("image"))),
        ("kubernetes" | "local", _) => Some(Shape::Files(None)),
        _ => None,
    }
}

fn fits(want: Shape, have: Shape) -> bool {
    match (want, have) {
        (a, b) if a == b => true,
        (Shape::Number, Shape::Integer) => true,
        (Shape::Files(None), Shape::Files(_)) => true,
        (Shape::Files(Some(_)), Shape::Files(None)) => true,
        _ => false,
    }
}

impl Template {
    /// Parses and validates; every problem found, with its line.
    #[cfg(feature = "ssr")]
    pub fn parse(source: &str) -> Result<Template, Vec<Problem>> {
        let template: Template = serde_yaml::from_str(source).map_err(|e| {
            vec![Problem {
                line: e.location().map(|l| l.line()),
                message: e.to_string(),
            }]
        })?;
        let problems = template.problems(source);
        if problems.is_empty() {
            Ok(template)
        } else {
            Err(problems)
        }
    }

    pub fn parameter(&self, name: &str) -> Option<&Parameter> {
        self.parameters.iter().find(|p| p.name == name)
    }

    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// The stages a stage waits for: its `needs` and the stages it references.
    pub fn upstream(&self, stage: &Stage) -> BTreeSet<String> {
        let mut up: BTreeSet<String> = stage.needs.iter().cloned().collect();
        for text in stage_texts(stage) {
            for r in references(&text).unwrap_or_default() {
                if let Reference::Outputs(s) = r {
                    up.insert(s);
                }
            }
        }
        up
    }

    /// Stage names in an order where each comes after its upstream stages, or the names
    /// on a cycle.
    pub fn order(&self) -> Result<Vec<String>, Vec<String>> {
        let mut done: Vec<String> = Vec::new();
        let mut left: Vec<&Stage> = self.stages.iter().collect();
        while !left.is_empty() {
            let ready: Vec<String> = left
                .iter()
                .filter(|s| {
                    self.upstream(s)
                        .iter()
                        .all(|u| done.contains(u) || self.stage(u).is_none())
                })
                .map(|s| s.name.clone())
                .collect();
            if ready.is_empty() {
                return Err(left.iter().map(|s| s.name.clone()).collect());
            }
            left.retain(|s| !ready.contains(&s.name));
            done.extend(ready);
        }
        Ok(done)
    }

    /// Every problem of a parsed template; lines are found in `source`.
    pub fn problems(&self, source: &str) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut problem =
            |line: Option<usize>, message: String| problems.push(Problem { line, message });
        let ident = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        };
        if !ident(&self.name) {
            problem(
                line_of(source, "name:", 1),
                format!(
                    "template name \"{}\" must be lower-case letters, digits, '-' or '_'",
                    self.name
                ),
            );
        }
        let mut seen = BTreeSet::new();
        for p in &self.parameters {
            let at = line_of(source, &format!("name: {}", p.name), 1);
            if !ident(&p.name) {
                problem(
                    at,
                    format!(
                        "parameter name \"{}\" must be lower-case letters, digits, '-' or '_'",
                        p.name
                    ),
                );
            }
            if !seen.insert(p.name.clone()) {
                problem(at, format!("parameter \"{}\" is declared twice", p.name));
            }
            match &p.ty {
                ParamType::Integer {
                    min: Some(a),
                    max: Some(b),
                } if a > b => problem(
                    at,
                    format!("parameter \"{}\": min {a} is above max {b}", p.name),
                ),
                ParamType::Float {
                    min: Some(a),
                    max: Some(b),
                } if a > b => problem(
                    at,
                    format!("parameter \"{}\": min {a} is above max {b}", p.name),
                ),
                ParamType::Enum { options } if options.is_empty() => problem(
                    at,
                    format!("parameter \"{}\" is an enum without options", p.name),
                ),
                ParamType::Asset { kind } | ParamType::Assets { kind, .. }
                    if kind_static(kind).is_none() =>
                {
                    problem(
                        at,
                        format!(
                            "parameter \"{}\" asks for assets of kind \"{kind}\"; kinds are {}",
                            p.name,
                            ASSET_KINDS.join(", ")
                        ),
                    )
                }
                _ => {}
            }
            if let Some(default) = &p.default {
                if let Err(e) = p.check(default) {
                    problem(
                        at,
                        format!("the default of \"{}\" is not valid: {e}", p.name),
                    );
                }
            }
        }
        if self.stages.is_empty() {
            problem(
                line_of(source, "stages:", 1),
                "a template needs at least one stage".into(),
            );
        }
        let mut names = BTreeSet::new();
        for s in &self.stages {
            let at = line_of(
                source,
                &format!("name: {}", s.name),
                line_of(source, "stages:", 1).unwrap_or(1),
            );
            if !ident(&s.name) {
                problem(
                    at,
                    format!(
                        "stage name \"{}\" must be lower-case letters, digits, '-' or '_'",
                        s.name
                    ),
                );
            }
            if !names.insert(s.name.clone()) {
                problem(at, format!("stage \"{}\" is declared twice", s.name));
            }
            if !EXECUTORS.contains(&s.executor.as_str()) {
                problem(
                    at.and_then(|a| line_of(source, "executor:", a)),
                    format!(
                        "stage \"{}\": executor \"{}\" is not one of {}",
                        s.name,
                        s.executor,
                        EXECUTORS.join(", ")
                    ),
                );
                continue;
            }
            match s.executor.as_str() {
                "local" => match &s.program {
                    None => problem(at, format!("stage \"{}\": a local stage names its program", s.name)),
                    Some(p) if p.contains('/') || p.contains(char::is_whitespace) || p.is_empty() => problem(
                        at.and_then(|a| line_of(source, "program:", a)),
                        format!("stage \"{}\": program \"{p}\" must be a bare name (no path, no spaces); an admin allows programs by name", s.name),
                    ),
                    _ => {}
                },
                "kubernetes" => match &s.image {
                    None => problem(at, format!("stage \"{}\": a kubernetes stage names its image", s.name)),
                    Some(i) if !i.contains(':') && !i.contains('@') => problem(
                        at.and_then(|a| line_of(source, "image:", a)),
                        format!("stage \"{}\": image \"{i}\" is not pinned: add a tag or a digest", s.name),
                    ),
                    _ => {}
                },
                _ => match &s.workflow {
                    None => problem(at, format!("stage \"{}\": a comfyui stage names its workflow", s.name)),
                    Some(w) if !WORKFLOWS.contains(&w.as_str()) => problem(
                        at.and_then(|a| line_of(source, "workflow:", a)),
                        format!("stage \"{}\": workflow \"{w}\" is not one of {}", s.name, WORKFLOWS.join(", ")),
                    ),
                    Some(w) if w == "img2img" => {
                        let image = s.inputs.get("image").and_then(|v| v.as_str()).unwrap_or("");
                        let named = image
                            .trim()
                            .strip_prefix("${params.")
                            .and_then(|r| r.strip_suffix('}'))
                            .and_then(|p| self.parameter(p));
                        if !matches!(named.map(|p| &p.ty), Some(ParamType::Asset { kind }) if kind == "image") {
                            problem(
                                at.and_then(|a| line_of(source, "workflow:", a)),
                                format!("stage \"{}\": img2img needs the input image: ${{params.NAME}}, naming an image parameter", s.name),
                            );
                        }
                    }
                    _ => {}
                },
            }
            if s.attempts == 0 || s.attempts > 10 {
                problem(
                    at,
                    format!("stage \"{}\": attempts must be from 1 to 10", s.name),
                );
            }
            for need in &s.needs {
                if self.stage(need).is_none() {
                    problem(
                        at.and_then(|a| line_of(source, need, a)),
                        format!(
                            "stage \"{}\" needs \"{need}\", which is not a stage",
                            s.name
                        ),
                    );
                }
            }
            // References, where they point, and whether their types fit.
            for (input, value) in s.inputs.iter() {
                let want = expected_input(&s.executor, input);
                if want.is_none() {
                    problem(
                        at.and_then(|a| line_of(source, &format!("{input}:"), a)),
                        format!(
                            "stage \"{}\": a {} stage has no input \"{input}\"",
                            s.name, s.executor
                        ),
                    );
                }
                let text = match value {
                    serde_json::Value::String(t) => t.clone(),
                    other => {
                        let have = match other {
                            serde_json::Value::Bool(_) => Shape::Boolean,
                            serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => {
                                Shape::Integer
                            }
                            serde_json::Value::Number(_) => Shape::Number,
                            _ => Shape::Text,
                        };
                        if let Some(want) = want.filter(|w| !fits(*w, have)) {
                            problem(
                                at.and_then(|a| line_of(source, &format!("{input}:"), a)),
                                format!(
                                    "stage \"{}\": input \"{input}\" wants {}, not {}",
                                    s.name,
                                    want.describe(),
                                    have.describe()
                                ),
                            );
                        }
                        continue;
                    }
                };
                self.check_text(source, at, s, Some((input, want)), &text, &mut problem);
            }
            for text in s.args.iter().chain(&s.command) {
                self.check_text(source, at, s, None, text, &mut problem);
                // A local stage runs on Slate's machine: an absolute path there is the
                // host's. A Job's absolute paths are its container's (the image, the
                // scripts at /opt/slate, the pipeline's volumes), but `..` would still
                // climb out of its directory on the shared work volume.
                if let Some(why) = host_path(text, s.executor == "local") {
                    problem(
                        at.and_then(|a| line_of(source, text, a)).or(at),
                        format!("stage \"{}\": argument \"{text}\" {why}; a stage reaches files only through references (${{params.NAME}}, ${{stages.NAME.outputs}}, ${{output}})", s.name),
                    );
                }
            }
        }
        if let Err(cycle) = self.order() {
            let first = cycle.first().cloned().unwrap_or_default();
            problem(
                line_of(
                    source,
                    &format!("name: {first}"),
                    line_of(source, "stages:", 1).unwrap_or(1),
                ),
                format!(
                    "the stages {} depend on each other in a cycle",
                    cycle.join(", ")
                ),
            );
        }
        problems
    }

    fn check_text(
        &self,
        source: &str,
        at: Option<usize>,
        s: &Stage,
        input: Option<(&String, Option<Shape>)>,
        text: &str,
        problem: &mut impl FnMut(Option<usize>, String),
    ) {
        let line = at.and_then(|a| line_of(source, text, a)).or(at);
        let refs = match references(text) {
            Ok(r) => r,
            Err(e) => {
                problem(line, format!("stage \"{}\": {e}", s.name));
                return;
            }
        };
        // An input that is exactly one reference takes that reference's type; text
        // around references makes it text.
        let whole = refs.len() == 1 && text.trim().starts_with("${") && text.trim().ends_with('}');
        for r in refs {
            let have = match &r {
                Reference::Param(p) => {
                    match self.parameter(p) {
                        Some(param) => param.ty.shape(),
                        None => {
                            problem(line, format!("stage \"{}\" refers to ${{params.{p}}}, which is not a parameter", s.name));
                            continue;
                        }
                    }
                }
                Reference::Outputs(up) => match self.stage(up) {
                    Some(u) if u.name == s.name => {
                        problem(
                            line,
                            format!(
                                "stage \"{}\" refers to its own outputs; use ${{output}}",
                                s.name
                            ),
                        );
                        continue;
                    }
                    Some(u) => Shape::Files((u.executor == "comfyui").then_some("image")),
                    None => {
                        problem(line, format!("stage \"{}\" refers to the outputs of \"{up}\", which is not a stage", s.name));
                        continue;
                    }
                },
                Reference::Output => {
                    if input.is_some() {
                        problem(
                            line,
                            format!(
                                "stage \"{}\": ${{output}} belongs in arguments, not inputs",
                                s.name
                            ),
                        );
                    }
                    continue;
                }
            };
            if let Some((name, Some(want))) = input {
                let have = if whole { have } else { Shape::Text };
                if !fits(want, have) {
                    problem(
                        line,
                        format!(
                            "stage \"{}\": input \"{name}\" wants {}, but {text} is {}",
                            s.name,
                            want.describe(),
                            have.describe()
                        ),
                    );
                }
            }
        }
    }
}

fn stage_texts(stage: &Stage) -> Vec<String> {
    stage
        .inputs
        .values()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .chain(stage.args.iter().cloned())
        .chain(stage.command.iter().cloned())
        .collect()
}

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

/// The templates that ship with Slate.
pub const BUILT_IN: [(&str, &str); 4] = [
    (
        "keyframes-to-animatic",
        include_str!("builtin/keyframes-to-animatic.yaml"),
    ),
    (
        "transcode-and-proxies",
        include_str!("builtin/transcode-and-proxies.yaml"),
    ),
    (
        "blender-render",
        include_str!("builtin/blender-render.yaml"),
    ),
    (
        "opencv-post-process",
        include_str!("builtin/opencv-post-process.yaml"),
    ),
];

#[cfg(all(test, feature = "ssr"))]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems(source: &str) -> Vec<String> {
        match Template::parse(source) {
            Ok(_) => Vec::new(),
            Err(p) => p.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn the_built_in_templates_are_valid_dags() {
        for (name, source) in BUILT_IN {
            let t = Template::parse(source).unwrap_or_else(|p| panic!("{name}: {p:?}"));
            assert_eq!(t.name, name);
            assert!(t.order().is_ok());
        }
        let animatic = Template::parse(BUILT_IN[0].1).unwrap();
        assert_eq!(animatic.order().unwrap(), ["keyframes", "animatic"]);
        assert_eq!(animatic.stage("keyframes").unwrap().executor, "comfyui");
        let blender = Template::parse(BUILT_IN[2].1).unwrap();
        assert_eq!(blender.stage("render").unwrap().executor, "kubernetes");
    }

    const BASE: &str = "name: t
title: T
parameters:
  - name: count
    type: integer
    min: 1
    max: 8
  - name: still
    type: asset
    kind: video
stages:
  - name: first
    executor: comfyui
    workflow: txt2img
    inputs:
      count: ${params.count}
  - name: second
    executor: local
    program: ffmpeg
    args: [\"-i\", \"${stages.first.outputs}\", \"${output}/a.mp4\"]
";

    #[test]
    fn a_cycle_is_refused_with_its_line() {
        assert!(problems(BASE).is_empty(), "{:?}", problems(BASE));
        let cyclic = BASE.replace(
            "    workflow: txt2img\n",
            "    workflow: txt2img\n    needs: [second]\n",
        );
        let p = problems(&cyclic);
        assert_eq!(
            p,
            ["line 12: the stages first, second depend on each other in a cycle"]
        );
    }

    #[test]
    fn unknown_references_and_type_mismatches_name_their_line() {
        let unknown = BASE.replace("${params.count}", "${params.cuont}");
        assert_eq!(
            problems(&unknown),
            ["line 16: stage \"first\" refers to ${params.cuont}, which is not a parameter"]
        );
        let mismatch = BASE.replace("count: ${params.count}", "count: ${params.still}");
        assert_eq!(
            problems(&mismatch),
            ["line 16: stage \"first\": input \"count\" wants an integer, but ${params.still} is video files"]
        );
        let missing_stage = BASE.replace("${stages.first.outputs}", "${stages.frist.outputs}");
        assert_eq!(
            problems(&missing_stage),
            ["line 20: stage \"second\" refers to the outputs of \"frist\", which is not a stage"]
        );
        let bad_yaml = BASE.replace("    min: 1\n", "    min: [1\n");
        assert!(
            problems(&bad_yaml)[0].starts_with("line "),
            "{:?}",
            problems(&bad_yaml)
        );
        let unknown_key = BASE.replace(
            "    program: ffmpeg\n",
            "    program: ffmpeg\n    shell: true\n",
        );
        assert!(
            problems(&unknown_key)[0].contains("unknown field `shell`"),
            "{:?}",
            problems(&unknown_key)
        );
        let path = BASE.replace("program: ffmpeg", "program: /bin/sh");
        assert!(
            problems(&path)[0].contains("must be a bare name"),
            "{:?}",
            problems(&path)
        );
    }

    #[test]
    fn arguments_naming_host_paths_are_refused_with_their_line() {
        let refused = "; a stage reaches files only through references (${params.NAME}, ${stages.NAME.outputs}, ${output})";
        for (argument, why) in [
            ("/etc/passwd", "names an absolute path on the host"),
            ("movie=/etc/passwd", "names an absolute path on the host"),
            ("-c cat /etc/shadow", "names an absolute path on the host"),
            ("~root/x", "names an absolute path on the host"),
            (
                "${output}/../../x.mp4",
                "climbs out of its directory with \"..\"",
            ),
            ("../x.mp4", "climbs out of its directory with \"..\""),
            ("concat:a|..", "climbs out of its directory with \"..\""),
            ("file:x.mp4", "names a file by a file: URL"),
        ] {
            let source = BASE.replace("\"${stages.first.outputs}\"", &format!("'{argument}'"));
            assert_eq!(
                problems(&source),
                [format!(
                    "line 20: stage \"second\": argument \"{argument}\" {why}{refused}"
                )],
                "{argument}"
            );
        }
        // References, text around them, relative names and URLs are fine.
        for argument in [
            "${stages.first.outputs}/*.png",
            "scale=-2:540",
            "frame_####.png",
            "https://example.com/a.mp4",
            "-profile:v",
            "a..b",
        ] {
            let source = BASE.replace("\"${stages.first.outputs}\"", &format!("'{argument}'"));
            assert!(
                problems(&source).is_empty(),
                "{argument}: {:?}",
                problems(&source)
            );
        }
        // A Job's absolute paths are its container's; `..` is refused there too.
        let job = "name: j\ntitle: J\nstages:\n  - name: run\n    executor: kubernetes\n    image: img:1\n    command: [\"python3\", \"/opt/slate/x.py\", \"--out\", \"OUT\"]\n";
        assert!(problems(&job.replace("OUT", "${output}/x")).is_empty());
        assert_eq!(
            problems(&job.replace("OUT", "${output}/../x")),
            [format!("line 7: stage \"run\": argument \"${{output}}/../x\" climbs out of its directory with \"..\"{refused}")]
        );
    }

    #[test]
    fn parameter_values_are_checked_like_the_form_checks_them() {
        let t = Template::parse(BASE).unwrap();
        let count = t.parameter("count").unwrap();
        assert!(count.check(&json!(4)).is_ok());
        assert_eq!(
            count.check(&json!(9)).unwrap_err(),
            "count must be from 1 to 8"
        );
        assert_eq!(
            count.check(&json!(2.5)).unwrap_err(),
            "count must be a whole number"
        );
        assert_eq!(
            count.check(&json!("4")).unwrap_err(),
            "count must be a whole number"
        );
        assert_eq!(count.check(&json!(null)).unwrap_err(), "count is required");
        let still = t.parameter("still").unwrap();
        assert!(still
            .check(&json!("0193a0b2-7c4e-7d21-9a3b-5f1e2d3c4b5a"))
            .is_ok());
        assert!(still.check(&json!("../etc/passwd")).is_err());
        let seed = Parameter {
            name: "seed".into(),
            label: None,
            help: None,
            ty: ParamType::Seed,
            required: true,
            default: None,
        };
        assert!(seed.check(&json!(null)).is_ok(), "an empty seed is drawn");
        assert!(seed.check(&json!(-1)).is_err());
    }
}
