//! The ComfyUI client against the fake: submit, follow, outputs of every kind, uploads,
//! cancel, and the answers of old builds.

use std::time::Duration;

use serde_json::json;
use server::comfyui::address::HostRules;
use server::comfyui::client::{ComfyClient, ComfyError, Media, PromptState};
use server::comfyui::probe::Prober;
use slate_tests::fake_comfy::{FakeComfy, Mode};

fn client(comfy: &FakeComfy) -> ComfyClient {
    ComfyClient::new(Prober::new(HostRules::parse("", true)), &comfy.url())
}

fn graph(class: &str) -> serde_json::Value {
    json!({"7": {"class_type": class, "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
           "9": {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": "slate"}}})
}

#[tokio::test]
async fn a_prompt_is_submitted_followed_and_its_outputs_downloaded() {
    let comfy = FakeComfy::start(Mode::Current).await;
    let c = client(&comfy);
    let submitted = c.submit(&graph("EmptyImage"), "slate-1").await.unwrap();
    assert_eq!(
        comfy.prompts()[0].id,
        submitted.prompt_id,
        "the id ComfyUI returned"
    );
    assert_eq!(comfy.prompts()[0].client_id.as_deref(), Some("slate-1"));
    let mut seen = Vec::new();
    let done = c
        .follow(&submitted.prompt_id, Duration::from_millis(10), |s| {
            seen.push(s.clone())
        })
        .await
        .unwrap();
    assert_eq!(seen.first(), Some(&PromptState::Running));
    let PromptState::Succeeded { outputs } = done else {
        panic!("{done:?}")
    };
    assert_eq!(outputs.len(), 1);
    assert_eq!(
        (outputs[0].node.as_str(), outputs[0].filename.as_str()),
        ("9", "slate_00001_.png")
    );
    let bytes = c.download(&outputs[0]).await.unwrap();
    assert!(bytes.starts_with(b"\x89PNG"));

    let name = c
        .upload_image("plate 01.png", b"\x89PNG...".to_vec())
        .await
        .unwrap();
    assert_eq!(name, "plate 01.png");
}

#[tokio::test]
async fn outputs_of_every_kind_are_read_with_their_media_and_temp_previews_left_out() {
    let comfy = FakeComfy::start(Mode::Current).await;
    let c = client(&comfy);
    let submitted = c.submit(&graph("MixedOutputs"), "slate-6").await.unwrap();
    let done = c
        .follow(&submitted.prompt_id, Duration::from_millis(10), |_| {})
        .await
        .unwrap();
    let PromptState::Succeeded { outputs } = done else {
        panic!("{done:?}")
    };
    let got: Vec<(&str, &str, &str, &str, Media)> = outputs
        .iter()
        .map(|f| {
            (
                f.node.as_str(),
                f.filename.as_str(),
                f.subfolder.as_str(),
                f.kind.as_str(),
                f.media,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("9", "still_00001_.png", "", "output", Media::Image),
            ("9", "still_00002_.png", "", "output", Media::Image),
            ("10", "anim_00001_.webp", "", "output", Media::AnimatedImage),
            ("12", "clip_00001_.mp4", "video", "output", Media::Video),
            ("13", "vhs_00001.mp4", "", "output", Media::Video),
            ("14", "take_00001_.flac", "audio", "output", Media::Audio),
        ],
        "in node order, the temp preview of node 15 left out"
    );
    // Any file goes up through the same route as an image.
    let name = c
        .upload_file("take 01.wav", b"RIFF....WAVE".to_vec())
        .await
        .unwrap();
    assert_eq!(name, "take 01.wav");
    let (path, body) = comfy.controls().pop().expect("the upload was received");
    assert_eq!(
        (path.as_str(), &body["name"]),
        ("/upload/image", &json!("take 01.wav"))
    );
}

#[tokio::test]
async fn failures_rejections_and_lost_prompts_are_told_apart() {
    let comfy = FakeComfy::start(Mode::Current).await;
    let c = client(&comfy);
    let broken = c.submit(&graph("Broken"), "slate-2").await.unwrap();
    let state = c
        .follow(&broken.prompt_id, Duration::from_millis(10), |_| {})
        .await
        .unwrap();
    assert_eq!(
        state,
        PromptState::Failed {
            message: "CUDA out of memory in node 7 (Broken)".into()
        }
    );

    let err = c.submit(&json!({}), "slate-3").await.unwrap_err();
    assert!(
        matches!(&err, ComfyError::Rejected { message, .. } if message == "Prompt has no outputs"),
        "{err:?}"
    );
    comfy.set_mode(Mode::Mid2024);
    let err = c.submit(&json!({}), "slate-3").await.unwrap_err();
    assert!(
        matches!(&err, ComfyError::Rejected { message, .. } if message == "Prompt has no outputs"),
        "{err:?}"
    );
    comfy.set_mode(Mode::Current);

    // ComfyUI restarts: the prompt is neither queued nor in the history.
    let lost = c.submit(&graph("EmptyImage"), "slate-4").await.unwrap();
    comfy.forget();
    assert_eq!(c.state(&lost.prompt_id).await.unwrap(), PromptState::Lost);

    // The tunnel dies mid-follow: the error says so.
    let p = c.submit(&graph("EmptyImage"), "slate-5").await.unwrap();
    comfy.set_mode(Mode::Cloudflare(530));
    let err = c
        .follow(&p.prompt_id, Duration::from_millis(10), |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(err, ComfyError::Endpoint(ref e) if e.transient()),
        "{err:?}"
    );
}

#[tokio::test]
async fn cancelling_removes_a_pending_prompt_and_interrupts_only_a_running_one() {
    let comfy = FakeComfy::start(Mode::Current).await;
    let c = client(&comfy);
    let first = c.submit(&graph("EmptyImage"), "a").await.unwrap();
    let second = c.submit(&graph("EmptyImage"), "b").await.unwrap();
    assert_eq!(
        c.state(&second.prompt_id).await.unwrap(),
        PromptState::Pending
    );
    c.cancel(&second.prompt_id).await.unwrap();
    c.cancel(&first.prompt_id).await.unwrap();
    assert_eq!(
        comfy.controls(),
        [
            ("/queue".to_owned(), json!({"delete": [second.prompt_id]})),
            (
                "/interrupt".to_owned(),
                json!({"prompt_id": first.prompt_id})
            ),
        ]
    );
    // Cancelling something that already finished sends nothing.
    c.cancel("finished-long-ago").await.unwrap();
    assert_eq!(comfy.controls().len(), 2);
    // The interrupted prompt says so, and is not a failure.
    assert!(matches!(
        c.state(&first.prompt_id).await.unwrap(),
        PromptState::Interrupted { node: Some(ref n) } if n == "3 (KSampler)"
    ));

    // A cancel that does not take is an error, not silence: the prompt stays listed...
    comfy.ignore_interrupts();
    let stuck = c.submit(&graph("EmptyImage"), "c").await.unwrap();
    let err = c
        .cancel_within(&stuck.prompt_id, Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ComfyError::CancelFailed(ref m) if m.contains("still lists the prompt as running")),
        "{err:?}"
    );
    assert_eq!(comfy.controls().len(), 3, "asked once, then watched");
    // ...or the endpoint cannot be asked.
    comfy.set_mode(Mode::Cloudflare(530));
    let err = c.cancel(&stuck.prompt_id).await.unwrap_err();
    assert!(
        matches!(err, ComfyError::CancelFailed(ref m) if m.contains("tunnel is gone")),
        "{err:?}"
    );
}
