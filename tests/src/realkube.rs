//! The real Kubernetes control plane from ../shared/realkube as a test peer: a shared
//! cluster per test process (each test in a namespace of its own, with Slate's Role), and
//! private clusters for tests that stop the API server.
//!
//! scripts/test builds the binaries once (`scripts/peers setup`) and exports
//! `SLATE_TEST_REALKUBE_DIR`; clusters are started here on first use and stopped by
//! `scripts/peers stop` (the shared one) or when their guard drops (private ones).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use tokio::sync::OnceCell;

/// How long a Job's pod runs (see `up`).
pub const JOB_POD_SECONDS: u32 = 12;

/// One running cluster.
pub struct RealKube {
    pub state: PathBuf,
    pub api_port: u16,
    bin: PathBuf,
    up: PathBuf,
    down: PathBuf,
    /// Private clusters are stopped and deleted when dropped; the shared one outlives
    /// the test process (scripts/peers stop ends it).
    private: bool,
}

/// A namespace made for one test, with Slate's ServiceAccount, Role and RoleBinding from
/// `k8s/base/slate-rbac.yaml`, and a kubeconfig holding that account's token: Slate
/// started with it is authorised by the API server's own RBAC.
/// Deleted (in the background) when dropped, so that the shared cluster's nodes do not
/// fill up with earlier tests' pods.
pub struct Namespace {
    pub name: String,
    pub kubeconfig: PathBuf,
    kubectl: PathBuf,
    admin: PathBuf,
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.admin)
            .args(["delete", "namespace", &self.name, "--wait=false"])
            .output();
    }
}

/// What a test namespace holds besides Slate's RBAC.
#[derive(Clone, Copy, PartialEq)]
pub enum Contents {
    /// Only the ServiceAccount, Role and RoleBinding.
    Rbac,
    /// And the dev overlay's claims and ConfigMaps (what a stage's Job mounts).
    Volumes,
    /// The whole dev overlay.
    Overlay,
}

fn dir_from_env() -> PathBuf {
    let dir = std::env::var_os("SLATE_TEST_REALKUBE_DIR").unwrap_or_else(|| {
        panic!(
            "this test needs the real Kubernetes control plane: run scripts/test, or \
             `scripts/peers setup` and set SLATE_TEST_REALKUBE_DIR from `scripts/peers env` \
             (SLATE_TEST_SKIP_PEERS=realkube leaves these tests out)"
        )
    });
    PathBuf::from(dir)
}

fn shared_dir() -> PathBuf {
    std::env::var_os("SLATE_TEST_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::root().join("../shared"))
}

/// Six consecutive free ports on 127.0.0.1 (the cluster's API server, etcd client and
/// peer, controller manager, scheduler and fake kubelet), starting at the first.
fn free_port_base(from: u16) -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    loop {
        let base = from + NEXT.fetch_add(10, Ordering::Relaxed);
        let free = (base..base + 6).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok());
        if free {
            return base;
        }
        assert!(
            base < from + 2000,
            "no free ports for a cluster near {from}"
        );
    }
}

fn run(command: &mut Command, what: &str) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl RealKube {
    /// The cluster every test of this process shares (started on first use, or found
    /// running from an earlier test process of the same run).
    pub async fn shared() -> &'static RealKube {
        static SHARED: OnceCell<RealKube> = OnceCell::const_new();
        SHARED
            .get_or_init(|| async {
                let dir = dir_from_env();
                let state = dir.join("states").join("shared");
                tokio::task::spawn_blocking(move || {
                    let mut kube = RealKube::new(dir, state, 0, false);
                    if let Some(port) = kube.running_port() {
                        kube.api_port = port;
                    } else {
                        kube.api_port = free_port_base(16400);
                        kube.up();
                    }
                    kube
                })
                .await
                .expect("the shared cluster starts")
            })
            .await
    }

    /// A cluster of this test's own, deleted when dropped.
    pub async fn private(name: &str) -> RealKube {
        let dir = dir_from_env();
        let state = dir
            .join("states")
            .join(format!("{name}-{}", uuid::Uuid::now_v7().simple()));
        tokio::task::spawn_blocking(move || {
            let kube = RealKube::new(dir, state, free_port_base(17400), true);
            kube.up();
            kube
        })
        .await
        .expect("a private cluster starts")
    }

    fn new(dir: PathBuf, state: PathBuf, api_port: u16, private: bool) -> RealKube {
        let scripts = shared_dir().join("realkube");
        RealKube {
            state,
            api_port,
            bin: dir.join("bin"),
            up: scripts.join("up.sh"),
            down: scripts.join("down.sh"),
            private,
        }
    }

    /// The API port of this state directory's cluster, if it runs and answers.
    fn running_port(&self) -> Option<u16> {
        let port: u16 = std::fs::read_to_string(self.state.join("api-port"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let answers = Command::new(self.bin.join("kubectl"))
            .arg("--kubeconfig")
            .arg(self.admin_kubeconfig())
            .args(["get", "--raw", "/readyz"])
            .output()
            .is_ok_and(|o| o.status.success());
        answers.then_some(port)
    }

    /// Starts (or, on an existing state directory, restarts) the cluster; blocking.
    fn up(&self) {
        std::fs::create_dir_all(&self.state).expect("a state directory");
        run(
            Command::new(&self.up)
                .arg("--bin")
                .arg(&self.bin)
                .arg("--state")
                .arg(&self.state)
                .arg("--port-base")
                .arg(self.api_port.to_string())
                // Job pods run this long under the fake kubelet: time for a test to act
                // on a running pod (fail it, delete it, watch its log).
                .arg("--run-seconds")
                .arg(JOB_POD_SECONDS.to_string()),
            "realkube up.sh",
        );
        std::fs::write(self.state.join("api-port"), self.api_port.to_string())
            .expect("record the API port");
    }

    /// Stops every process of the cluster, keeping its data (`start_again` brings it
    /// back): what an API server outage looks like to a client.
    pub async fn stop(&self) {
        let (down, state) = (self.down.clone(), self.state.clone());
        tokio::task::spawn_blocking(move || {
            run(
                Command::new(down).arg("--state").arg(state),
                "realkube down.sh",
            )
        })
        .await
        .expect("down.sh runs");
    }

    /// Starts the cluster again on its data after `stop`.
    pub async fn start_again(&self) {
        let this = RealKube::new(
            self.bin.parent().expect("bin's parent").to_owned(),
            self.state.clone(),
            self.api_port,
            false,
        );
        tokio::task::spawn_blocking(move || this.up())
            .await
            .expect("up.sh runs");
    }

    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.state.join("admin.kubeconfig")
    }

    pub fn server(&self) -> String {
        format!("https://127.0.0.1:{}", self.api_port)
    }

    /// A client with cluster-admin rights, for the test's own setup and checks.
    pub async fn admin(&self) -> kube::Client {
        client_for(&self.admin_kubeconfig()).await
    }

    /// Runs kubectl as cluster-admin; returns its output, and fails the test if it fails.
    pub async fn kubectl(&self, args: &[&str]) -> String {
        let mut command = Command::new(self.bin.join("kubectl"));
        command
            .arg("--kubeconfig")
            .arg(self.admin_kubeconfig())
            .args(args);
        let what = format!("kubectl {}", args.join(" "));
        tokio::task::spawn_blocking(move || run(&mut command, &what))
            .await
            .expect("kubectl runs")
    }

    /// `kubectl create deployment NAME --image=IMAGE` in `namespace`.
    pub async fn create_deployment(&self, namespace: &str, name: &str, image: &str) {
        let image = format!("--image={image}");
        self.kubectl(&["-n", namespace, "create", "deployment", name, &image])
            .await;
    }

    /// A new namespace with Slate's RBAC and `contents` from the dev overlay, and the
    /// `slate` ServiceAccount's kubeconfig.
    pub async fn namespace(&self, contents: Contents) -> Namespace {
        let name = format!("t-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
        self.kubectl(&["create", "namespace", &name]).await;
        let docs = if contents != Contents::Rbac {
            server::cluster::kustomize::build(
                &server::cluster::kustomize::embedded(),
                "overlays/dev",
            )
            .expect("the dev overlay builds")
        } else {
            server::cluster::kustomize::documents(
                "slate-rbac.yaml",
                include_str!("../../k8s/base/slate-rbac.yaml"),
            )
            .expect("the RBAC manifest parses")
        };
        // As one JSON List: kubectl reads YAML 1.1, where a plain `off` is a boolean, so
        // writing these documents back as YAML could change them.
        let mut items = Vec::new();
        for mut doc in docs {
            let kind = doc["kind"].as_str().unwrap_or_default();
            let wanted = match contents {
                Contents::Rbac => true,
                Contents::Volumes => [
                    "ServiceAccount",
                    "Role",
                    "RoleBinding",
                    "PersistentVolumeClaim",
                    "ConfigMap",
                ]
                .contains(&kind),
                Contents::Overlay => kind != "Namespace",
            };
            if !wanted {
                continue;
            }
            doc["metadata"]["namespace"] = name.clone().into();
            if doc["kind"] == "RoleBinding" {
                for subject in doc["subjects"].as_array_mut().into_iter().flatten() {
                    if subject["kind"] == "ServiceAccount" {
                        subject["namespace"] = name.clone().into();
                    }
                }
            }
            items.push(doc);
        }
        let stream = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
        let file = self.state.join(format!("{name}.json"));
        std::fs::write(&file, stream.to_string()).expect("write the manifests");
        self.kubectl(&["apply", "-f", file.to_str().expect("a UTF-8 path")])
            .await;
        let kubeconfig = self.service_account_kubeconfig(&name, "slate").await;
        Namespace {
            name,
            kubeconfig,
            kubectl: self.bin.join("kubectl"),
            admin: self.admin_kubeconfig(),
        }
    }

    /// A kubeconfig for a ServiceAccount, with the token from the Secret Kubernetes 1.20
    /// creates for it (within a second or so of the account).
    pub async fn service_account_kubeconfig(&self, namespace: &str, account: &str) -> PathBuf {
        let token = crate::eventually(
            &format!("a token Secret for {namespace}/{account}"),
            Duration::from_secs(60),
            || async {
                let secret = self
                    .kubectl(&[
                        "-n",
                        namespace,
                        "get",
                        "serviceaccount",
                        account,
                        "-o",
                        "jsonpath={.secrets[0].name}",
                    ])
                    .await;
                if secret.trim().is_empty() {
                    return None;
                }
                let token = self
                    .kubectl(&[
                        "-n",
                        namespace,
                        "get",
                        "secret",
                        secret.trim(),
                        "-o",
                        "jsonpath={.data.token}",
                    ])
                    .await;
                (!token.trim().is_empty()).then(|| token.trim().to_owned())
            },
        )
        .await;
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD
            .decode(token)
            .expect("a base64 token");
        let token = String::from_utf8(token).expect("a UTF-8 token");
        let ca = std::fs::read(self.state.join("pki/ca.crt")).expect("the cluster's CA");
        let config = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "realkube", "cluster": {
                "server": self.server(),
                "certificate-authority-data": base64::engine::general_purpose::STANDARD.encode(ca),
            }}],
            "users": [{"name": account, "user": {"token": token}}],
            "contexts": [{"name": account, "context": {
                "cluster": "realkube", "user": account, "namespace": namespace,
            }}],
            "current-context": account,
        });
        let path = self.state.join(format!("{namespace}-{account}.kubeconfig"));
        std::fs::write(&path, serde_yaml::to_string(&config).expect("YAML"))
            .expect("write the kubeconfig");
        path
    }
}

/// A client from a kubeconfig file.
pub async fn client_for(kubeconfig: &Path) -> kube::Client {
    let file = kube::config::Kubeconfig::read_from(kubeconfig).expect("a readable kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .expect("a usable kubeconfig");
    kube::Client::try_from(config).expect("a client")
}

impl Drop for RealKube {
    fn drop(&mut self) {
        if self.private {
            let _ = Command::new(&self.down)
                .arg("--state")
                .arg(&self.state)
                .arg("--purge")
                .output();
        }
    }
}
