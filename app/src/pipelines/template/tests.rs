//! The template model's rules, each with the line a problem is reported on.

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
    assert_eq!(
        animatic.stage("keyframes").unwrap().kind.executor(),
        "comfyui"
    );
    let blender = Template::parse(BUILT_IN[2].1).unwrap();
    assert_eq!(
        blender.stage("render").unwrap().kind.executor(),
        "kubernetes"
    );
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
    // A ComfyUI stage's inputs are its workflow's bindings, checked by the server (it
    // has the workflows); a local stage's are files.
    let mismatch = BASE.replace(
        "    program: ffmpeg\n",
        "    program: ffmpeg\n    inputs:\n      clip: ${params.count}\n",
    );
    assert_eq!(
        problems(&mismatch),
        ["line 21: stage \"second\": input \"clip\" wants files, but ${params.count} is an integer"]
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

const PLANNED: &str = "name: planned
title: Planned
parameters:
  - {name: story, type: text}
stages:
  - name: plan
    executor: langgraph
    assistant: shot_planner
    inputs:
      story: ${params.story}
  - name: shots
    executor: dagster
    location: film
    job: render_shot
    for_each: ${stages.plan.values.shots}
    inputs:
      ops.render_shot.config.prompt: ${item.prompt}
      ops.render_shot.config.index: ${item.shot}
";

#[test]
fn orchestrator_stages_and_fan_out_parse_and_keep_their_written_form() {
    let t = Template::parse(PLANNED).unwrap_or_else(|p| panic!("{p:?}"));
    assert_eq!(t.order().unwrap(), ["plan", "shots"]);
    let shots = t.stage("shots").unwrap();
    assert_eq!(
        shots.kind,
        StageKind::Dagster(DagsterStage {
            location: "film".into(),
            repository: DAGSTER_DEFAULT_REPOSITORY.into(),
            job: "render_shot".into(),
        })
    );
    assert_eq!(
        shots.for_each.as_deref(),
        Some("${stages.plan.values.shots}")
    );
    // The default repository stays unwritten, so the stored form is what was written.
    let stored = serde_json::to_value(shots).unwrap();
    assert!(stored.get("repository").is_none(), "{stored}");
    assert_eq!(stored["for_each"], json!("${stages.plan.values.shots}"));
    let back: Stage = serde_json::from_value(stored).unwrap();
    assert_eq!(&back, shots);
    assert_eq!(
        references("${stages.plan.values.shots.0.prompt} and ${item}").unwrap(),
        [
            Reference::Values(
                "plan".into(),
                vec!["shots".into(), "0".into(), "prompt".into()]
            ),
            Reference::Item(vec![]),
        ]
    );
    let values = json!({"shots": [{"prompt": "a red door"}]});
    assert_eq!(
        json_at(&values, &["shots".into(), "0".into(), "prompt".into()]),
        Some(&json!("a red door"))
    );
    assert_eq!(json_at(&values, &["shots".into(), "7".into()]), None);
}

#[test]
fn fan_out_and_values_are_refused_where_they_cannot_work() {
    let cases = [
        // for_each over something that is not an upstream stage's values.
        (
            PLANNED.replace("${stages.plan.values.shots}", "${params.story}"),
            "for_each takes one list from an upstream stage's values",
        ),
        (
            PLANNED.replace(
                "${stages.plan.values.shots}",
                "\"all ${stages.plan.values.shots}\"",
            ),
            "for_each takes one list",
        ),
        // ${item} outside a fanned-out stage.
        (
            PLANNED.replace("story: ${params.story}", "story: ${item.prompt}"),
            "refers to ${item} but has no for_each",
        ),
        // Values come only from a langgraph stage.
        (
            PLANNED.replace(
                "executor: langgraph\n    assistant: shot_planner",
                "executor: dagster\n    location: film\n    job: plan",
            ),
            "only a langgraph stage ends with values",
        ),
        (
            PLANNED.replace(
                "${stages.plan.values.shots}",
                "${stages.nowhere.values.shots}",
            ),
            "the values of \"nowhere\", which is not a stage",
        ),
        (
            PLANNED.replace("job: render_shot", "job: \"render shot\""),
            "job \"render shot\" must be letters, digits",
        ),
        (
            PLANNED.replace("    location: film\n", ""),
            "names its code location",
        ),
        (
            PLANNED.replace(
                "assistant: shot_planner",
                "assistant: shot_planner\n    job: x",
            ),
            "a langgraph stage takes no job",
        ),
        (
            PLANNED.replace("${item.prompt}", "${item.a.b.c.d.e.f.g.h.i}"),
            "at most 8 fields",
        ),
    ];
    for (source, want) in cases {
        let found = problems(&source);
        assert!(
            found.iter().any(|p| p.contains(want)),
            "wanted \"{want}\" in {found:?}\n{source}"
        );
    }
}
