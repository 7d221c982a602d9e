//! The Kubernetes executor against the real Kubernetes 1.20 control plane, as Slate's
//! ServiceAccount in a namespace with the dev overlay: a real Job made by the real Job
//! controller, pod status from the fake kubelet, a failing Job, a pod the scheduler
//! cannot place on the GPU node, and a pod replaced mid-run.

use std::time::Duration;

use serde_json::{json, Value};
use server::pipelines::Capabilities;
use slate_tests::realkube::{Contents, Namespace, RealKube};
use slate_tests::{eventually, TestApp};
use uuid::Uuid;

fn template(gpu: u32) -> String {
    format!(
        r#"name: job-on-the-cluster
title: A Job on the cluster
stages:
  - name: work
    executor: kubernetes
    image: registry.example/stage:1
    gpu: {gpu}
    attempts: 1
    timeout_seconds: 600
    command: ["sh", "-c", "echo working"]
"#
    )
}

struct Env {
    kube: &'static RealKube,
    ns: Namespace,
    app: TestApp,
}

impl Env {
    async fn start(gpu: u32) -> Env {
        let kube = RealKube::shared().await;
        let ns = kube.namespace(Contents::Volumes).await;
        let path = ns.kubeconfig.display().to_string();
        let name = ns.name.clone();
        let app = slate_tests::spawn_app_with(|c| {
            c.kube = server::config::KubeMode::Auto;
            c.kubeconfig = Some(path);
            c.namespace = name;
        })
        .await;
        super::save_template(&app, &template(gpu)).await;
        Env { kube, ns, app }
    }

    async fn submit(&self) -> Uuid {
        let caps = Capabilities {
            programs: vec!["ffmpeg".into()],
            kubernetes: true,
            ..Default::default()
        };
        super::submit_as_admin(&self.app, &caps, "job-on-the-cluster", json!({})).await
    }

    async fn get(&self, what: &str) -> Value {
        let mut args = vec!["-n", &self.ns.name, "get"];
        args.extend(what.split_whitespace());
        args.extend(["-o", "json"]);
        let out = self.kube.kubectl(&args).await;
        serde_json::from_str(&out).unwrap()
    }

    /// The running pods of the run's Job, by name.
    async fn running_pods(&self, run: Uuid) -> Vec<String> {
        let pods = self.get(&format!("pods -l slate.dev/run={run}")).await;
        pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| {
                p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null()
            })
            .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
            .collect()
    }

    async fn running_pod(&self, run: Uuid) -> String {
        eventually(
            &format!("a running pod of run {run}"),
            Duration::from_secs(90),
            || async { self.running_pods(run).await.pop() },
        )
        .await
    }

    async fn stage_message(&self, run: Uuid, want: &str) -> String {
        super::stage_says(&self.app, run, want, Duration::from_secs(90)).await
    }

    async fn wait_state(&self, run: Uuid, want: &str) {
        super::run_reaches(&self.app, run, want, Duration::from_secs(120)).await;
    }

    /// The attempt's archived log, as a creator reads it.
    async fn archived_log(&self, run: Uuid) -> String {
        let attempt: Uuid = sqlx::query_scalar(
            "select a.id from stage_attempts a join run_stages s on s.id = a.stage_id where s.run_id = $1",
        )
        .bind(run)
        .fetch_one(&self.app.pool)
        .await
        .unwrap();
        let cleo = self.app.signed_in("cleo@studio.test", "creator").await;
        let res = cleo
            .get(
                self.app
                    .url(&format!("/api/runs/{run}/attempts/{attempt}/log")),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.text().await.unwrap()
    }

    async fn error(&self, run: Uuid) -> String {
        sqlx::query_scalar::<_, Option<String>>(
            "select a.error from stage_attempts a join run_stages s on s.id = a.stage_id where s.run_id = $1",
        )
        .bind(run)
        .fetch_one(&self.app.pool)
        .await
        .unwrap()
        .unwrap_or_default()
    }
}

#[tokio::test]
async fn realkube_a_job_stage_runs_as_a_real_job_and_its_pods_log_is_archived() {
    let env = Env::start(0).await;
    let run = env.submit().await;
    let pod = env.running_pod(run).await;
    let message = env.stage_message(run, "Running in Job").await;
    assert!(message.contains("on node-cpu-1"), "{message}");
    env.wait_state(run, "succeeded").await;
    // The real Job controller ran it: one Job, complete, with Slate's own retries.
    let jobs = env.get(&format!("jobs -l slate.dev/run={run}")).await;
    let jobs = jobs["items"].as_array().unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["spec"]["backoffLimit"], 0);
    assert_eq!(jobs[0]["status"]["succeeded"], 1);
    let log = env.archived_log(run).await;
    assert!(
        log.contains(&format!("{}/{pod} container stage line 3", env.ns.name)),
        "{log}"
    );
    env.app.stop().await;
}

#[tokio::test]
async fn realkube_a_failing_job_fails_the_stage_with_the_reason_and_its_last_line() {
    let env = Env::start(0).await;
    let run = env.submit().await;
    let pod = env.running_pod(run).await;
    // The container exits with 3 (the fake kubelet reads this when the pod's time is up).
    env.kube
        .kubectl(&[
            "-n",
            &env.ns.name,
            "annotate",
            "pod",
            &pod,
            "fake-kubelet/exit-code=3",
        ])
        .await;
    env.wait_state(run, "failed").await;
    let error = env.error(run).await;
    assert!(
        error.contains("line 3"),
        "the last line of the log: {error}"
    );
    let jobs = env.get(&format!("jobs -l slate.dev/run={run}")).await;
    assert_eq!(
        jobs["items"][0]["status"]["failed"], 1,
        "one pod, no retry by the Job controller"
    );
    env.app.stop().await;
}

#[tokio::test]
async fn realkube_a_job_the_gpu_node_cannot_take_says_why_and_cancel_deletes_it() {
    // The one GPU node has one GPU.
    let env = Env::start(2).await;
    let run = env.submit().await;
    let message = env.stage_message(run, "GPU").await;
    assert!(message.contains("Waiting for a free GPU"), "{message}");
    let admin = env.app.signed_in(slate_tests::ADMIN_EMAIL, "admin").await;
    let res = env
        .app
        .call(&admin, "/api/cancel_run", &[("id", &run.to_string())])
        .await;
    assert!(res.status().is_success(), "{}", res.status());
    env.wait_state(run, "cancelled").await;
    eventually("the Job to be deleted", Duration::from_secs(60), || async {
        let jobs = env.get(&format!("jobs -l slate.dev/run={run}")).await;
        jobs["items"].as_array().is_some_and(|j| j.is_empty())
    })
    .await;
    env.app.stop().await;
}

#[tokio::test]
async fn realkube_a_pod_replaced_mid_run_keeps_every_pods_lines_in_the_log() {
    let env = Env::start(0).await;
    let run = env.submit().await;
    let first = env.running_pod(run).await;
    // Slate follows the first pod's log before it goes.
    eventually(
        "the first pod's lines in the stage log",
        Duration::from_secs(60),
        || async {
            env.app
                .count(&format!(
                    "select count(*) from stage_logs l join stage_attempts a on a.id = l.attempt_id
                 join run_stages s on s.id = a.stage_id
                 where s.run_id = '{run}' and l.line like '%{first} container stage line 3'"
                ))
                .await
                > 0
        },
    )
    .await;
    env.kube
        .kubectl(&["-n", &env.ns.name, "delete", "pod", &first, "--wait=false"])
        .await;
    let second = eventually("a replacement pod", Duration::from_secs(90), || async {
        env.running_pods(run)
            .await
            .into_iter()
            .find(|p| *p != first)
    })
    .await;
    env.wait_state(run, "succeeded").await;
    let log = env.archived_log(run).await;
    for pod in [&first, &second] {
        assert!(
            log.contains(&format!("{pod} container stage line 1"))
                && log.contains(&format!("{pod} container stage line 3")),
            "{pod}'s lines: {log}"
        );
    }
    assert!(
        log.contains(&format!("# pod {first} was replaced by pod {second}")),
        "{log}"
    );
    env.app.stop().await;
}
