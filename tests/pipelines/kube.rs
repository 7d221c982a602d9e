//! The Kubernetes executor against the fake API server. The test plays the Job
//! controller and the kubelet: it makes the Job's pod, moves it through its phases, writes
//! its log and the files it leaves in its output directory (Slate's work directory, which
//! a real Job sees through the shared volume), and marks the Job finished.

use std::path::{Path, PathBuf};
use std::time::Duration;

use app::accounts::Role;
use k8s_openapi::api::batch::v1::Job;
use serde_json::{json, Value};
use server::pipelines::runs::Submitter;
use server::pipelines::Capabilities;
use slate_tests::fake_kube::FakeKube;
use slate_tests::tus::Tus;
use slate_tests::{eventually, TestApp};
use uuid::Uuid;

use super::admin;

const NS: &str = "ai-film";

/// A template with one GPU Job stage reading a video and writing a file.
const TEMPLATE: &str = r#"name: grade-on-gpu
title: Grade on the GPU
parameters:
  - name: source
    type: asset
    kind: video
stages:
  - name: grade
    executor: kubernetes
    image: ghcr.io/studio/grade:1.4.2
    gpu: 1
    attempts: 1
    timeout_seconds: 600
    command: ["python3", "/opt/grade.py", "--input", "${params.source}", "--output", "${output}/graded.mov"]
"#;

struct Env {
    fake: FakeKube,
    app: TestApp,
    kubeconfig: PathBuf,
    clip: Vec<u8>,
    video: String,
}

impl Env {
    async fn start() -> Env {
        let fake = FakeKube::start().await;
        let kubeconfig =
            std::env::temp_dir().join(format!("slate-pipelines-kube-{}", Uuid::now_v7().simple()));
        fake.write_kubeconfig(&kubeconfig);
        let path = kubeconfig.display().to_string();
        let app = slate_tests::spawn_app_with(|c| {
            c.kube = server::config::KubeMode::Auto;
            c.kubeconfig = Some(path);
        })
        .await;
        let clip_path = slate_tests::test_clip(&app, "plate.mov", 1);
        let clip = std::fs::read(&clip_path).unwrap();
        let (video, state) = Tus::new(&app).await.upload("plate.mov", &clip).await;
        assert_eq!(state, "ready");
        super::save_template(&app, TEMPLATE).await;
        Env {
            fake,
            app,
            kubeconfig,
            clip,
            video,
        }
    }

    async fn submit(&self) -> Uuid {
        let caps = Capabilities {
            programs: vec!["ffmpeg".into()],
            kubernetes: true,
            ..Default::default()
        };
        let params = json!({ "source": self.video });
        super::submit_as_admin(&self.app, &caps, "grade-on-gpu", params).await
    }

    /// The Jobs of a run.
    fn jobs(&self, run: Uuid) -> Vec<Value> {
        self.fake
            .list("batch/v1", "Job", NS)
            .into_iter()
            .filter(|j| j["metadata"]["labels"]["slate.dev/run"] == run.to_string())
            .collect()
    }

    async fn job(&self, run: Uuid) -> Value {
        eventually(
            &format!("a Job for run {run}"),
            Duration::from_secs(15),
            || async { self.jobs(run).pop() },
        )
        .await
    }

    /// The Job's pod, as the Job controller makes it, in `phase` with `status` merged in.
    fn pod(&self, job: &Value, phase: &str, status: Value) -> String {
        let name = format!("{}-x7k2p", job["metadata"]["name"].as_str().unwrap());
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": {
                "job-name": job["metadata"]["name"],
                "batch.kubernetes.io/job-name": job["metadata"]["name"]}},
            "spec": job["spec"]["template"]["spec"].clone(),
            "status": {"phase": phase},
        });
        if let (Some(to), Value::Object(from)) = (pod["status"].as_object_mut(), status) {
            to.extend(from);
        }
        self.fake.apply(pod);
        name
    }

    fn finish_job(&self, job: &Value, condition: &str, reason: &str) {
        let mut job = self
            .fake
            .get(
                "batch/v1",
                "Job",
                NS,
                job["metadata"]["name"].as_str().unwrap(),
            )
            .unwrap();
        job["status"] = json!({"conditions": [{
            "type": condition, "status": "True", "reason": reason,
            "message": format!("{reason} (from the test)")}]});
        self.fake.apply(job);
    }

    async fn stage_message(&self, run: Uuid, want: &str) -> String {
        super::stage_says(&self.app, run, want, Duration::from_secs(15)).await
    }

    async fn logged(&self, run: Uuid, want: &str) {
        eventually(
            &format!("{want:?} to reach the stage's log"),
            Duration::from_secs(15),
            || async {
                let n: i64 = sqlx::query_scalar(
                    "select count(*) from stage_logs l join stage_attempts a on a.id = l.attempt_id
                 join run_stages s on s.id = a.stage_id where s.run_id = $1 and l.line = $2",
                )
                .bind(run)
                .bind(want)
                .fetch_one(&self.app.pool)
                .await
                .unwrap();
                n > 0
            },
        )
        .await;
    }

    async fn wait_state(&self, run: Uuid, want: &str) {
        super::run_reaches(&self.app, run, want, Duration::from_secs(60)).await;
    }

    async fn stop(self) {
        self.app.stop().await;
        let _ = std::fs::remove_file(&self.kubeconfig);
    }
}

fn working_dir(job: &Value) -> PathBuf {
    PathBuf::from(
        job["spec"]["template"]["spec"]["containers"][0]["workingDir"]
            .as_str()
            .unwrap(),
    )
}

/// Plays the stage's program: the graded video in its output directory.
fn write_output(dir: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("graded.mov"), bytes).unwrap();
}

fn succeeded_status() -> Value {
    json!({"containerStatuses": [{
        "name": "stage", "image": "ghcr.io/studio/grade:1.4.2",
        "imageID": "ghcr.io/studio/grade@sha256:5f1c0ffee",
        "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]})
}

#[tokio::test]
async fn a_gpu_stage_runs_as_a_job_says_why_it_waits_streams_its_log_and_keeps_its_output() {
    let env = Env::start().await;
    let run = env.submit().await;
    let job = env.job(run).await;

    // The Job: a valid batch/v1 Job, tied to its run, with Slate's own retries.
    let typed: Job = serde_json::from_value(job.clone()).expect("a batch/v1 Job");
    let spec = typed.spec.unwrap();
    assert_eq!(spec.backoff_limit, Some(0), "retries are Slate's");
    assert_eq!(spec.active_deadline_seconds, Some(600));
    assert_eq!(spec.ttl_seconds_after_finished, Some(3600));
    let labels = &job["metadata"]["labels"];
    assert_eq!(labels["slate.dev/stage"], "grade");
    assert_eq!(labels["slate.dev/attempt"], "1");
    assert_eq!(labels["app.kubernetes.io/part-of"], "ai-film");
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "ghcr.io/studio/grade:1.4.2");
    assert_eq!(container["resources"]["limits"]["nvidia.com/gpu"], "1");
    assert_eq!(container["resources"]["requests"]["nvidia.com/gpu"], "1");
    assert!(container["resources"]["limits"]["memory"].is_string());
    assert_eq!(pod["tolerations"][0]["key"], "nvidia.com/gpu");
    let volumes: Vec<&str> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            v["persistentVolumeClaim"]["claimName"]
                .as_str()
                .or(v["configMap"]["name"].as_str())
                .unwrap()
        })
        .collect();
    assert_eq!(
        volumes,
        [
            "slate-assets",
            "images",
            "videos",
            "models",
            "slate-stage-scripts"
        ]
    );
    assert_eq!(container["volumeMounts"][4]["mountPath"], "/opt/slate");
    assert_eq!(container["volumeMounts"][4]["readOnly"], true);
    // The work directory at the path Slate uses, so the input path is the same file.
    let work = std::path::absolute(env.app.config.work()).unwrap();
    assert_eq!(
        container["volumeMounts"][0]["mountPath"],
        work.display().to_string()
    );
    let command: Vec<&str> = container["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(&command[..3], ["python3", "/opt/grade.py", "--input"]);
    let input = Path::new(command[3]);
    assert!(input.starts_with(&work), "{input:?} is under {work:?}");
    assert_eq!(
        std::fs::read(input).unwrap(),
        env.clip,
        "the input is there"
    );
    let out = working_dir(&job);
    assert_eq!(command[5], out.join("graded.mov").display().to_string());

    // No free GPU: the stage says so in plain words.
    let pending = json!({"conditions": [{"type": "PodScheduled", "status": "False",
        "reason": "Unschedulable",
        "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."}]});
    env.pod(&job, "Pending", pending);
    let message = env.stage_message(run, "Waiting for a free GPU").await;
    assert!(message.contains("1 node without a free GPU"), "{message}");

    // Running: the log arrives while the pod runs.
    let pod_name = env.pod(&job, "Running", json!({}));
    env.fake
        .append_pod_log(NS, &pod_name, Some("stage"), "grading 24 frames\n");
    env.logged(run, "grading 24 frames").await;
    env.stage_message(run, "Running in Job").await;

    // Done: the program's output, the last lines, the Job complete.
    write_output(&out, &env.clip);
    env.fake
        .append_pod_log(NS, &pod_name, Some("stage"), "wrote graded.mov\n");
    env.pod(&job, "Succeeded", succeeded_status());
    env.finish_job(&job, "Complete", "CompletionsReached");
    env.wait_state(run, "succeeded").await;

    // The output is an asset with the Job's image digest and command.
    let (asset, provenance): (Uuid, Value) =
        sqlx::query_as("select o.asset_id, o.provenance from run_outputs o where o.run_id = $1")
            .bind(run)
            .fetch_one(&env.app.pool)
            .await
            .unwrap();
    assert_eq!(provenance["executor"], "kubernetes");
    assert_eq!(
        provenance["image_digest"],
        "ghcr.io/studio/grade@sha256:5f1c0ffee"
    );
    assert_eq!(provenance["command"][1], "/opt/grade.py");
    assert_eq!(provenance["inputs"][0]["asset"], env.video);
    let name: String = sqlx::query_scalar("select name from assets where id = $1")
        .bind(asset)
        .fetch_one(&env.app.pool)
        .await
        .unwrap();
    assert_eq!(name, "graded.mov");
    // The whole log outlives the pod: archived in storage, served from there.
    let attempt: Uuid = sqlx::query_scalar(
        "select a.id from stage_attempts a join run_stages s on s.id = a.stage_id where s.run_id = $1",
    )
    .bind(run)
    .fetch_one(&env.app.pool)
    .await
    .unwrap();
    env.fake.delete("v1", "Pod", NS, &pod_name);
    let cleo = env.app.signed_in("cleo@studio.test", "creator").await;
    let res = cleo
        .get(
            env.app
                .url(&format!("/api/runs/{run}/attempts/{attempt}/log")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let archived = res.text().await.unwrap();
    assert!(
        archived.contains("grading 24 frames\nwrote graded.mov"),
        "{archived}"
    );
    assert!(archived.contains("# Job slate-grade-"), "{archived}");
    let elsewhere = cleo
        .get(env.app.url(&format!(
            "/api/runs/{}/attempts/{attempt}/log",
            Uuid::now_v7()
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 404, "an attempt of another run");
    assert_eq!(env.jobs(run).len(), 1, "one Job for one attempt");
    env.stop().await;
}

#[tokio::test]
async fn cancelling_a_run_deletes_its_job_with_its_pods() {
    let env = Env::start().await;
    let run = env.submit().await;
    let job = env.job(run).await;
    let name = job["metadata"]["name"].as_str().unwrap().to_owned();
    env.pod(&job, "Running", json!({}));
    env.stage_message(run, "Running in Job").await;
    let (who, id) = admin(&env.app).await;
    let by = Submitter {
        who: &who,
        user_id: id,
        role: Role::Admin,
        token: None,
    };
    server::pipelines::runs::cancel(&env.app.pool, run, &by)
        .await
        .unwrap();
    env.wait_state(run, "cancelled").await;
    // The runner hears of it at its next lease renewal, and stops the work.
    let deletes = eventually(
        "the runner to delete the Job",
        Duration::from_secs(10),
        || async {
            let deletes: Vec<_> = env
                .fake
                .requests()
                .into_iter()
                .filter(|r| r.verb == "delete" && r.resource == "jobs")
                .collect();
            (!deletes.is_empty()).then_some(deletes)
        },
    )
    .await;
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert_eq!(deletes[0].name.as_deref(), Some(name.as_str()));
    assert_eq!(
        deletes[0].body.as_ref().unwrap()["propagationPolicy"],
        "Background",
        "its pods go with it"
    );
    assert!(env.jobs(run).is_empty());
    env.stop().await;
}

#[tokio::test]
async fn a_job_past_its_deadline_or_out_of_memory_fails_the_stage_with_that_reason() {
    let env = Env::start().await;
    let run = env.submit().await;
    let job = env.job(run).await;
    env.pod(&job, "Running", json!({}));
    env.finish_job(&job, "Failed", "DeadlineExceeded");
    env.wait_state(run, "failed").await;
    env.stage_message(run, "longer than its 600 s deadline")
        .await;

    let run = env.submit().await;
    let job = env.job(run).await;
    let pod = env.pod(
        &job,
        "Failed",
        json!({"containerStatuses": [{
        "name": "stage", "image": "ghcr.io/studio/grade:1.4.2", "imageID": "",
        "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}),
    );
    env.fake
        .set_pod_log(NS, &pod, Some("stage"), "loading 4K plates\n");
    env.finish_job(&job, "Failed", "BackoffLimitExceeded");
    env.wait_state(run, "failed").await;
    let message = env.stage_message(run, "status 137").await;
    assert!(message.contains("out of memory"), "{message}");
    assert!(message.contains("loading 4K plates"), "{message}");
    env.stop().await;
}

#[tokio::test]
async fn a_job_that_finishes_while_slate_is_down_is_collected_after_the_restart_not_run_again() {
    let env = Env::start().await;
    let run = env.submit().await;
    let job = env.job(run).await;
    let pod = env.pod(&job, "Running", json!({}));
    env.fake
        .append_pod_log(NS, &pod, Some("stage"), "grading 24 frames\n");
    env.logged(run, "grading 24 frames").await;

    // Slate stops mid-Job; the Job goes on and finishes while it is down.
    let Env {
        fake,
        app,
        kubeconfig,
        clip,
        video,
    } = env;
    let config = app.config.clone();
    app.stop().await;
    write_output(&working_dir(&job), &clip);
    fake.append_pod_log(NS, &pod, Some("stage"), "wrote graded.mov\n");
    let mut finished = job.clone();
    finished["status"] = json!({"conditions": [{"type": "Complete", "status": "True"}]});
    fake.apply(finished);
    fake.apply({
        let mut p = fake.get("v1", "Pod", NS, &pod).unwrap();
        p["status"] = json!({"phase": "Succeeded"});
        p["status"]
            .as_object_mut()
            .unwrap()
            .extend(succeeded_status().as_object().unwrap().clone());
        p
    });
    // Its lease lapses (made to lapse now, not in 30 s).
    sqlx::query(
        "update run_stages set lease_until = now() - interval '1 second' where state = 'running'",
    )
    .execute(
        &sqlx::PgPool::connect(config.database_url.as_deref().unwrap())
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    let env = Env {
        fake,
        app: slate_tests::start(config).await,
        kubeconfig,
        clip,
        video,
    };
    env.wait_state(run, "succeeded").await;
    assert_eq!(
        env.jobs(run).len(),
        1,
        "the Job was followed, not run twice"
    );
    let attempts: Vec<(String, Value)> = sqlx::query_as(
        "select a.state, a.detail from stage_attempts a join run_stages s on s.id = a.stage_id
         where s.run_id = $1 order by a.number",
    )
    .bind(run)
    .fetch_all(&env.app.pool)
    .await
    .unwrap();
    let states: Vec<&str> = attempts.iter().map(|a| a.0.as_str()).collect();
    assert_eq!(states, ["lost", "succeeded"]);
    assert_eq!(attempts[1].1["adopted"], true);
    let outputs = env
        .app
        .count(&format!(
            "select count(*) from run_outputs where run_id = '{run}'"
        ))
        .await;
    assert_eq!(outputs, 1);
    env.stop().await;
}
