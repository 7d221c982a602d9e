//! Validation of a template: names, parameters, stages and what each stage kind takes,
//! references and their types, cycles; every problem with the line it is on.

use std::collections::BTreeSet;

use super::*;

/// What a value in a stage is, for type checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Text,
    Number,
    Integer,
    Boolean,
    /// Files: an asset, assets, or a stage's outputs; with the kind when known.
    Files(Option<&'static str>),
    /// Anything: what a ComfyUI stage's input takes depends on its workflow's binding.
    Any,
}

impl Shape {
    pub fn describe(self) -> String {
        match self {
            Shape::Text => "text".into(),
            Shape::Number => "a number".into(),
            Shape::Integer => "an integer".into(),
            Shape::Boolean => "true or false".into(),
            Shape::Files(Some(k)) => format!("{k} files"),
            Shape::Files(None) => "files".into(),
            Shape::Any => "anything".into(),
        }
    }
}

fn kind_static(kind: &str) -> Option<&'static str> {
    ASSET_KINDS.iter().copied().find(|k| *k == kind)
}

impl ParamType {
    pub fn shape(&self) -> Shape {
        match self {
            ParamType::String { .. }
            | ParamType::Text { .. }
            | ParamType::Enum { .. }
            | ParamType::Model { .. } => Shape::Text,
            ParamType::Integer { .. } | ParamType::Seed => Shape::Integer,
            ParamType::Float { .. } => Shape::Number,
            ParamType::Boolean => Shape::Boolean,
            ParamType::Asset { kind } | ParamType::Assets { kind, .. } => {
                Shape::Files(kind_static(kind))
            }
        }
    }
}

/// The line (1-based) of the first line of `source` containing `needle` at or after
/// line `from`.
pub(super) fn line_of(source: &str, needle: &str, from: usize) -> Option<usize> {
    source
        .lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
}

impl StageKind {
    /// What the stage's input `input` must be, or `None` when this kind takes no such
    /// input.
    pub fn input_shape(&self, _input: &str) -> Option<Shape> {
        match self {
            // A workflow's bindings say what each input is: checked on the server.
            StageKind::Comfyui(_) => Some(Shape::Any),
            // Inputs become a Dagster run's config or a graph's input: JSON of any shape.
            StageKind::Dagster(_) | StageKind::Langgraph(_) => Some(Shape::Any),
            StageKind::Local(_) | StageKind::Kubernetes(_) => Some(Shape::Files(None)),
        }
    }

    /// What the stage's outputs are, for the stages that take them.
    pub fn output_shape(&self) -> Shape {
        match self {
            StageKind::Comfyui(_)
            | StageKind::Local(_)
            | StageKind::Kubernetes(_)
            | StageKind::Dagster(_)
            | StageKind::Langgraph(_) => Shape::Files(None),
        }
    }
}

fn fits(want: Shape, have: Shape) -> bool {
    match (want, have) {
        (a, b) if a == b => true,
        (Shape::Any, _) => true,
        (Shape::Number, Shape::Integer) => true,
        (Shape::Files(None), Shape::Files(_)) => true,
        (Shape::Files(Some(_)), Shape::Files(None)) => true,
        _ => false,
    }
}

impl Template {
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
            match &s.kind {
                StageKind::Local(local) => {
                    let p = &local.program;
                    if p.contains('/') || p.contains(char::is_whitespace) || p.is_empty() {
                        problem(
                            at.and_then(|a| line_of(source, "program:", a)),
                            format!("stage \"{}\": program \"{p}\" must be a bare name (no path, no spaces); an admin allows programs by name", s.name),
                        );
                    }
                }
                StageKind::Kubernetes(job) => {
                    let i = &job.image;
                    if !i.contains(':') && !i.contains('@') {
                        problem(
                            at.and_then(|a| line_of(source, "image:", a)),
                            format!(
                                "stage \"{}\": image \"{i}\" is not pinned: add a tag or a digest",
                                s.name
                            ),
                        );
                    }
                }
                StageKind::Comfyui(comfy) => {
                    // Which workflow, and whether the inputs are its bindings, is the
                    // server's check (the workflows are in its database).
                    let w = &comfy.workflow;
                    if crate::comfyui::workflow::parse_reference(w).is_none() {
                        problem(
                            at.and_then(|a| line_of(source, "workflow:", a)),
                            format!(
                                "stage \"{}\": workflow \"{w}\" must be NAME or NAME@VERSION (lower-case letters, digits, '-' or '_')",
                                s.name
                            ),
                        );
                    }
                }
                StageKind::Dagster(d) => {
                    // Dagster's own rule for names of locations, repositories and jobs.
                    let name = |n: &str| {
                        !n.is_empty()
                            && n.len() <= 128
                            && n.bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                    };
                    for (field, value) in [
                        ("location:", &d.location),
                        ("repository:", &d.repository),
                        ("job:", &d.job),
                    ] {
                        if !name(value) {
                            problem(
                                at.and_then(|a| line_of(source, field, a)),
                                format!(
                                    "stage \"{}\": {} \"{value}\" must be letters, digits, '_' or '-'",
                                    s.name,
                                    field.trim_end_matches(':')
                                ),
                            );
                        }
                    }
                }
                StageKind::Langgraph(l) => {
                    let a = &l.assistant;
                    let fine = !a.is_empty()
                        && a.len() <= 128
                        && a.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
                    if !fine {
                        problem(
                            at.and_then(|at| line_of(source, "assistant:", at)),
                            format!(
                                "stage \"{}\": assistant \"{a}\" must be a graph id or an assistant id (letters, digits, '_', '-', '.')",
                                s.name
                            ),
                        );
                    }
                }
            }
            if let Some(each) = &s.for_each {
                let line = at.and_then(|a| line_of(source, "for_each:", a)).or(at);
                let whole = each.trim().starts_with("${") && each.trim().ends_with('}');
                match references(each) {
                    Ok(refs) if whole && matches!(refs.as_slice(), [Reference::Values(..)]) => {
                        // Where it points is checked with the other references.
                        self.check_text(source, at, s, None, each, &mut problem);
                    }
                    _ => problem(
                        line,
                        format!(
                            "stage \"{}\": for_each takes one list from an upstream stage's values, as ${{stages.NAME.values.FIELD}}, not \"{each}\"",
                            s.name
                        ),
                    ),
                }
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
                let want = s.kind.input_shape(input);
                if want.is_none() {
                    problem(
                        at.and_then(|a| line_of(source, &format!("{input}:"), a)),
                        format!(
                            "stage \"{}\": a {} stage has no input \"{input}\"",
                            s.name,
                            s.kind.executor()
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
            for text in s.kind.texts() {
                self.check_text(source, at, s, None, text, &mut problem);
                // A local stage runs on Slate's machine: an absolute path there is the
                // host's. A Job's absolute paths are its container's (the image, the
                // scripts at /opt/slate, the pipeline's volumes), but `..` would still
                // climb out of its directory on the shared work volume.
                if let Some(why) = host_path(text, s.kind.runs_on_host()) {
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
                Reference::Outputs(up) | Reference::NodeOutputs(up, _) => match self.stage(up) {
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
                    Some(u) => u.kind.output_shape(),
                    None => {
                        problem(line, format!("stage \"{}\" refers to the outputs of \"{up}\", which is not a stage", s.name));
                        continue;
                    }
                },
                Reference::Values(up, _) => match self.stage(up) {
                    Some(u) if u.name == s.name => {
                        problem(
                            line,
                            format!("stage \"{}\" refers to its own values", s.name),
                        );
                        continue;
                    }
                    Some(u) if matches!(u.kind, StageKind::Langgraph(_)) => Shape::Any,
                    Some(u) => {
                        problem(
                            line,
                            format!(
                                "stage \"{}\" refers to the values of \"{up}\", a {} stage: only a langgraph stage ends with values",
                                s.name,
                                u.kind.executor()
                            ),
                        );
                        continue;
                    }
                    None => {
                        problem(line, format!("stage \"{}\" refers to the values of \"{up}\", which is not a stage", s.name));
                        continue;
                    }
                },
                Reference::Item(_) => {
                    if s.for_each.is_none() {
                        problem(
                            line,
                            format!(
                                "stage \"{}\" refers to ${{item}} but has no for_each",
                                s.name
                            ),
                        );
                        continue;
                    }
                    Shape::Any
                }
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

/// Every text of a stage that may hold references: its text inputs, its kind's texts
/// (arguments, a command) and its `for_each`.
pub fn stage_texts(stage: &Stage) -> Vec<String> {
    stage
        .inputs
        .values()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .chain(stage.kind.texts().iter().cloned())
        .chain(stage.for_each.iter().cloned())
        .collect()
}
