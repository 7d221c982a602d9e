//! Dagster in `k8s/`, as Slate's `dagster` stages need it (k8s/base/dagster.yaml, the
//! code location in k8s/dagster/): a code server Deployment and Service that the
//! workspace points at, the webserver, exactly one daemon, one `dagster.yaml` (run
//! monitoring, telemetry off, PostgreSQL in a database of its own, compute logs and the
//! IO manager on the shared volume), Slate's work directory at Slate's path, and one
//! pinned image whose Dagster is the version the tests run against.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Container, PodSpec, Volume, VolumeMount};
use serde_json::Value;

use super::{built, name, pod_spec, root, OVERLAYS};

const DEPLOYMENTS: [&str; 3] = ["dagster-code", "dagster-webserver", "dagster-daemon"];

fn find<'a>(docs: &'a [Value], what: &str) -> &'a Value {
    docs.iter()
        .find(|d| name(d) == what)
        .unwrap_or_else(|| panic!("no {what}"))
}

fn container(docs: &[Value], deployment: &str) -> (PodSpec, Container) {
    let spec = pod_spec(find(docs, &format!("Deployment {deployment}"))).expect("a pod spec");
    let c = spec.containers[0].clone();
    (spec, c)
}

fn instance(docs: &[Value], key: &str) -> Value {
    let text = find(docs, "ConfigMap dagster-instance")["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("dagster-instance has no {key}"))
        .to_owned();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{key}: {e}"))
}

fn env<'a>(c: &'a Container, var: &str) -> Option<&'a str> {
    c.env
        .iter()
        .flatten()
        .find(|e| e.name == var)
        .and_then(|e| e.value.as_deref())
}

/// The claim and sub-path a container sees at `path`.
fn mounted_at(spec: &PodSpec, c: &Container, path: &str) -> Option<(String, Option<String>)> {
    let m: &VolumeMount = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == path)?;
    let v: &Volume = spec.volumes.iter().flatten().find(|v| v.name == m.name)?;
    let claim = v.persistent_volume_claim.as_ref()?.claim_name.clone();
    Some((claim, m.sub_path.clone()))
}

/// Whether a container mounts the instance ConfigMap's `key` at `DAGSTER_HOME/key`.
fn has_instance_file(spec: &PodSpec, c: &Container, key: &str) -> bool {
    let home = env(c, "DAGSTER_HOME").unwrap_or_default();
    c.volume_mounts.iter().flatten().any(|m| {
        m.mount_path == format!("{home}/{key}")
            && m.sub_path.as_deref() == Some(key)
            && spec.volumes.iter().flatten().any(|v| {
                v.name == m.name
                    && v.config_map
                        .as_ref()
                        .is_some_and(|c| c.name == "dagster-instance")
            })
    })
}

fn exec(probe: &Option<k8s_openapi::api::core::v1::Probe>) -> Vec<String> {
    probe
        .as_ref()
        .and_then(|p| p.exec.as_ref())
        .and_then(|e| e.command.clone())
        .unwrap_or_default()
}

#[test]
fn the_workspace_points_at_a_code_server_deployment_and_service_of_the_film_location() {
    for dir in OVERLAYS {
        let docs = built(dir);
        let (spec, c) = container(&docs, "dagster-code");
        let command = c.command.clone().unwrap_or_default().join(" ");
        assert_eq!(
            command, "dagster code-server start -h 0.0.0.0 -p 4000 -m film --location-name film",
            "{dir}"
        );
        // Healthy when its gRPC server answers.
        assert_eq!(
            exec(&c.readiness_probe),
            ["dagster", "api", "grpc-health-check", "-p", "4000"],
            "{dir}"
        );
        assert!(exec(&c.liveness_probe).contains(&"grpc-health-check".to_owned()));
        // Runs execute in this pod: stopping it waits for them (a long render).
        assert!(
            spec.termination_grace_period_seconds.unwrap_or(30) >= 3600,
            "{dir}: terminationGracePeriodSeconds {:?}",
            spec.termination_grace_period_seconds
        );
        let service = find(&docs, "Service dagster-code");
        assert_eq!(service["spec"]["ports"][0]["port"], 4000);
        assert_eq!(service["spec"]["ports"][0]["targetPort"], "grpc");
        let pod_labels =
            &find(&docs, "Deployment dagster-code")["spec"]["template"]["metadata"]["labels"];
        for (k, v) in service["spec"]["selector"].as_object().unwrap() {
            assert_eq!(
                &pod_labels[k], v,
                "{dir}: the Service selects the code server"
            );
        }
        let workspace = instance(&docs, "workspace.yaml");
        let locations = workspace["load_from"].as_array().unwrap();
        assert_eq!(locations.len(), 1, "{dir}");
        let grpc = &locations[0]["grpc_server"];
        assert_eq!(grpc["host"], "dagster-code", "{dir}: the Service's name");
        assert_eq!(grpc["port"], 4000);
        assert_eq!(grpc["location_name"], "film", "{dir}: --location-name");
    }
}

#[test]
fn one_instance_configuration_with_run_monitoring_postgres_of_its_own_and_shared_storage() {
    for dir in OVERLAYS {
        let docs = built(dir);
        let config = instance(&docs, "dagster.yaml");
        assert_eq!(config["run_monitoring"]["enabled"], true, "{dir}");
        assert_eq!(config["telemetry"]["enabled"], false, "{dir}");
        // PostgreSQL through psycopg2 (SQLAlchemy 2 would pick psycopg 3, which
        // dagster-postgres lacks), every setting from the environment.
        let pg = &config["storage"]["postgres"]["postgres_db"];
        assert_eq!(pg["scheme"], "postgresql+psycopg2", "{dir}");
        for key in ["hostname", "db_name", "username", "password"] {
            assert!(
                pg[key]["env"].is_string(),
                "{dir}: {key} from the environment"
            );
        }
        let db_var = pg["db_name"]["env"].as_str().unwrap();
        let password_var = pg["password"]["env"].as_str().unwrap();
        let storage = [
            config["compute_logs"]["config"]["base_dir"]
                .as_str()
                .unwrap(),
            config["local_artifact_storage"]["config"]["base_dir"]
                .as_str()
                .unwrap(),
        ];
        let (slate_spec, slate) = container(&docs, "slate");
        let work_dir = env(&slate, "SLATE_WORK_DIR").expect("Slate's work directory");
        let slate_work = mounted_at(&slate_spec, &slate, work_dir).expect("Slate's work volume");
        let mut shared_claims = BTreeSet::new();
        for d in DEPLOYMENTS {
            let (spec, c) = container(&docs, d);
            let what = format!("{dir}: {d}");
            assert!(
                has_instance_file(&spec, &c, "dagster.yaml"),
                "{what}: dagster.yaml"
            );
            assert!(
                has_instance_file(&spec, &c, "workspace.yaml"),
                "{what}: workspace.yaml"
            );
            // Its own database: Dagster makes a table named `runs`, and so does Slate.
            assert_eq!(env(&c, db_var), Some("dagster"), "{what}");
            assert_ne!(env(&c, db_var), Some("slate"), "{what}");
            let password = c
                .env
                .iter()
                .flatten()
                .find(|e| e.name == password_var)
                .unwrap();
            assert!(
                password.value.is_none()
                    && password
                        .value_from
                        .as_ref()
                        .and_then(|v| v.secret_key_ref.as_ref())
                        .is_some_and(|s| s.name == "postgres-credentials"),
                "{what}: the password from the Secret"
            );
            // Compute logs and IO-manager outputs, written where runs execute and read by
            // the webserver and by re-executions: one ReadWriteMany volume on all three.
            for base in storage {
                let mount = c
                    .volume_mounts
                    .iter()
                    .flatten()
                    .find(|m| base.starts_with(&m.mount_path))
                    .unwrap_or_else(|| panic!("{what}: nothing mounted under {base}"));
                let (claim, _) = mounted_at(&spec, &c, &mount.mount_path)
                    .unwrap_or_else(|| panic!("{what}: {base} is not on a claim"));
                shared_claims.insert(claim);
            }
            // Slate's work directory at Slate's path, from the same claim and sub-path:
            // the paths in a run's slate/output tag mean the same here.
            assert_eq!(
                mounted_at(&spec, &c, work_dir).as_ref(),
                Some(&slate_work),
                "{what}: {work_dir}"
            );
        }
        assert_eq!(shared_claims.len(), 1, "{dir}: {shared_claims:?}");
        let claim = shared_claims.into_iter().next().unwrap();
        let pvc = find(&docs, &format!("PersistentVolumeClaim {claim}"));
        if dir != "overlays/dev" {
            // One node in dev: there a ReadWriteOnce claim serves every pod.
            assert_eq!(
                pvc["spec"]["accessModes"][0], "ReadWriteMany",
                "{dir}: {claim}"
            );
        }
    }
}

#[test]
fn exactly_one_daemon_and_one_pinned_image_of_the_tested_dagster() {
    let requirements =
        std::fs::read_to_string(root().join("dagster/requirements.txt")).expect("requirements");
    assert!(
        requirements.lines().any(|l| l.trim() == "dagster==1.13.27"),
        "{requirements}"
    );
    assert!(
        requirements
            .lines()
            .any(|l| l.trim() == "dagster-postgres==0.29.27"),
        "dagster 1.13.N goes with dagster-postgres 0.29.N: {requirements}"
    );
    let dockerfile =
        std::fs::read_to_string(root().join("dagster/Dockerfile")).expect("Dockerfile");
    assert!(dockerfile.contains("requirements.txt") && dockerfile.contains("COPY film/"));
    // The module the code server loads defines the job it names.
    let package = std::fs::read_to_string(root().join("dagster/film/__init__.py")).unwrap();
    assert!(
        package.contains("Definitions(jobs=[shot_job])"),
        "{package}"
    );
    let jobs = std::fs::read_to_string(root().join("dagster/film/jobs.py")).unwrap();
    assert!(jobs.contains("@job\ndef shot_job():"), "{jobs}");
    assert!(
        jobs.contains("slate/output"),
        "the jobs write where Slate says"
    );

    for dir in OVERLAYS {
        let docs = built(dir);
        let daemon = find(&docs, "Deployment dagster-daemon");
        assert_eq!(daemon["spec"]["replicas"], 1, "{dir}: exactly one daemon");
        assert_eq!(
            daemon["spec"]["strategy"]["type"], "Recreate",
            "{dir}: never two at once"
        );
        let daemons = docs
            .iter()
            .filter(|d| {
                pod_spec(d).is_some_and(|s| {
                    s.containers
                        .iter()
                        .any(|c| c.command.iter().flatten().any(|a| a == "dagster-daemon"))
                })
            })
            .count();
        assert_eq!(daemons, 1, "{dir}: one workload runs a daemon");
        let images: BTreeSet<String> = DEPLOYMENTS
            .iter()
            .map(|d| container(&docs, d).1.image.unwrap_or_default())
            .collect();
        assert_eq!(
            images.len(),
            1,
            "{dir}: one image, one Dagster version: {images:?}"
        );
        let image = images.into_iter().next().unwrap();
        let (_, tag) = server::cluster::kustomize::split_image(&image);
        let tag = tag.unwrap_or_default();
        assert!(
            tag.starts_with(':') && tag.len() > 1 && tag != ":latest",
            "{dir}: {image} is pinned"
        );
        assert!(
            image.starts_with("ghcr.io/slate-film/dagster-film:"),
            "{dir}: {image}"
        );
    }
}
