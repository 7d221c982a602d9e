//! Configuration: every setting is a flag and a `SLATE_*` environment variable (plus
//! `DATABASE_URL`), documented by `slate --help` with its default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use url::Url;

/// The parser of every on/off setting: true/false, 1/0, yes/no, on/off (and y/n, t/f),
/// in any case, so that `SLATE_TRUST_PROXY=1` or `=yes` means what it says instead of
/// being refused; anything else is refused with the accepted words.
fn boolish() -> clap::builder::BoolishValueParser {
    clap::builder::BoolishValueParser::new()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Settings shared by every command.
#[derive(Clone, Debug, Args)]
pub struct Config {
    /// Address and port to listen on.
    #[arg(
        long,
        env = "SLATE_LISTEN",
        default_value = "127.0.0.1:3000",
        global = true
    )]
    pub listen: SocketAddr,

    /// Where Slate keeps its state: the embedded PostgreSQL, secrets, local storage.
    #[arg(
        long,
        env = "SLATE_DATA_DIR",
        default_value = "./.slate",
        global = true
    )]
    pub data_dir: PathBuf,

    /// PostgreSQL to use instead of the embedded one, e.g. postgres://user:pass@host/slate.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    pub database_url: Option<String>,

    /// The URL people use to reach Slate (for links, cookie security, the CSRF origin
    /// check). Defaults to http://<SLATE_LISTEN>.
    #[arg(long, env = "SLATE_PUBLIC_URL", global = true)]
    pub public_url: Option<Url>,

    /// Log format: text for people, json for log collectors.
    #[arg(
        long,
        env = "SLATE_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,

    /// Log filter in tracing's EnvFilter syntax.
    #[arg(long, env = "SLATE_LOG", default_value = "info", global = true)]
    pub log: String,

    /// The built site (the `pkg/` folder with wasm, JS and CSS). Relative paths are
    /// tried from the working directory, then next to the binary.
    #[arg(
        long,
        env = "SLATE_SITE_DIR",
        default_value = "target/site",
        global = true
    )]
    pub site_dir: PathBuf,

    /// Sign people out after this many minutes without a request.
    #[arg(
        long,
        env = "SLATE_SESSION_IDLE_MINUTES",
        default_value_t = 720,
        global = true
    )]
    pub session_idle_minutes: u32,

    /// Email of the first admin, created at start when there are no users yet.
    #[arg(long, env = "SLATE_ADMIN_EMAIL", global = true)]
    pub admin_email: Option<String>,

    /// Password of that first admin (at least 12 characters).
    #[arg(
        long,
        env = "SLATE_ADMIN_PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub admin_password: Option<String>,

    /// Failed sign-ins allowed per account and per client address within the window.
    #[arg(
        long,
        env = "SLATE_LOGIN_MAX_FAILURES",
        default_value_t = 10,
        global = true
    )]
    pub login_max_failures: u32,

    /// The window for counting failed sign-ins, in seconds.
    #[arg(
        long,
        env = "SLATE_LOGIN_WINDOW_SECONDS",
        default_value_t = 300,
        global = true
    )]
    pub login_window_seconds: u32,

    /// Largest request body accepted by forms and JSON endpoints, in bytes.
    #[arg(long, env = "SLATE_MAX_BODY_BYTES", default_value_t = 256 * 1024, global = true)]
    pub max_body_bytes: usize,

    /// Take the client address from X-Forwarded-For (only behind a trusted proxy). Like
    /// every on/off setting it takes true/false, 1/0, yes/no or on/off, in any case.
    #[arg(
        long,
        env = "SLATE_TRUST_PROXY",
        default_value_t = false,
        value_parser = boolish(),
        global = true
    )]
    pub trust_proxy: bool,

    /// How long to wait for the database at start before giving up, in seconds.
    #[arg(
        long,
        env = "SLATE_DB_WAIT_SECONDS",
        default_value_t = 15,
        global = true
    )]
    pub db_wait_seconds: u64,

    /// Largest number of database connections per Slate process.
    #[arg(
        long,
        env = "SLATE_DB_MAX_CONNECTIONS",
        default_value_t = 10,
        global = true
    )]
    pub db_max_connections: u32,

    /// Directory with PostgreSQL's server binaries (initdb, pg_ctl) for the embedded
    /// database; searched on PATH and in /usr/lib/postgresql/*/bin when unset.
    #[arg(long, env = "SLATE_PG_BIN_DIR", global = true)]
    pub pg_bin_dir: Option<PathBuf>,

    /// Where finished files go: unset for `<data dir>/storage`, or a URL such as
    /// s3://bucket/prefix, gs://bucket, az://container, file:///srv/slate (credentials from
    /// the provider's usual environment variables, e.g. AWS_ACCESS_KEY_ID).
    #[arg(long, env = "SLATE_STORAGE", global = true)]
    pub storage: Option<String>,

    /// Largest single upload, in bytes.
    #[arg(long, env = "SLATE_UPLOAD_MAX_BYTES", default_value_t = 100 * 1024 * 1024 * 1024, global = true)]
    pub upload_max_bytes: u64,

    /// Bytes each user may store (finished and unfinished uploads); 0 for no limit.
    #[arg(
        long,
        env = "SLATE_UPLOAD_QUOTA_BYTES",
        default_value_t = 0,
        global = true
    )]
    pub upload_quota_bytes: u64,

    /// Unfinished uploads each person may have at once (started and not complete, or
    /// partials waiting to be joined); creating one more answers 429. 0 for no limit.
    #[arg(
        long,
        env = "SLATE_UPLOAD_MAX_PENDING",
        default_value_t = 20,
        global = true
    )]
    pub upload_max_pending: u64,

    /// Unfinished uploads untouched for this many hours are removed.
    #[arg(
        long,
        env = "SLATE_UPLOAD_EXPIRY_HOURS",
        default_value_t = 24,
        global = true
    )]
    pub upload_expiry_hours: u64,

    /// Kinds of files accepted, comma-separated from image, video, audio, scene, model,
    /// other; or "all".
    #[arg(long, env = "SLATE_UPLOAD_KINDS", default_value = "all", global = true)]
    pub upload_kinds: String,

    /// How many files are processed (hashed, probed, previewed) at once; 0 for a replica
    /// that only serves.
    #[arg(
        long,
        env = "SLATE_PROCESSING_WORKERS",
        default_value_t = 2,
        global = true
    )]
    pub processing_workers: usize,

    /// Programs local pipeline stages may run, by name (found on PATH at start), comma
    /// separated. Stages naming any other program are refused at submission.
    #[arg(
        long,
        env = "SLATE_LOCAL_PROGRAMS",
        default_value = "ffmpeg,ffprobe",
        global = true
    )]
    pub local_programs: String,

    /// How many local pipeline stages run at once on this replica's machine (0: this
    /// replica runs none).
    #[arg(long, env = "SLATE_LOCAL_STAGES", default_value_t = 2, global = true)]
    pub local_stages: i64,

    /// When Slate runs as root, the unprivileged user local stages run as (the attempt's
    /// directory is the only place of Slate's they can write); when not root they run as
    /// Slate's own user and this is unused.
    #[arg(
        long,
        env = "SLATE_STAGE_USER",
        default_value = "nobody",
        global = true
    )]
    pub stage_user: String,

    /// ComfyUI prompts in flight at once across every replica (the Colab GPU takes one at a
    /// time); 0 for a replica that submits none.
    #[arg(
        long,
        env = "SLATE_COMFYUI_PROMPTS",
        default_value_t = 1,
        global = true
    )]
    pub comfyui_prompts: i64,

    /// The directory stages work in (inputs, outputs, logs): `<data dir>/work` unless set.
    /// With a cluster it must be on the volume `SLATE_JOB_WORK_VOLUME` names, mounted at
    /// this same path, because Jobs see it there too.
    #[arg(long, env = "SLATE_WORK_DIR", global = true)]
    pub work_dir: Option<PathBuf>,

    /// Kubernetes Jobs without a GPU running at once across every replica (0: this
    /// replica starts none).
    #[arg(long, env = "SLATE_JOB_STAGES", default_value_t = 4, global = true)]
    pub job_stages: i64,

    /// Kubernetes Jobs with a GPU running at once across every replica (0: none).
    #[arg(long, env = "SLATE_GPU_JOBS", default_value_t = 1, global = true)]
    pub gpu_jobs: i64,

    /// The pipeline's volumes mounted into every Job: `claim=/mount/path`, comma-separated.
    #[arg(
        long,
        env = "SLATE_JOB_VOLUMES",
        default_value = "images=/data/images,videos=/data/videos,models=/data/models",
        global = true
    )]
    pub job_volumes: String,

    /// The claim holding the work directory, and the directory inside it (`claim/subpath`);
    /// Jobs mount it at the work directory's path.
    #[arg(
        long,
        env = "SLATE_JOB_WORK_VOLUME",
        default_value = "slate-assets/work",
        global = true
    )]
    pub job_work_volume: String,

    /// A ConfigMap of stage scripts mounted read-only at `/opt/slate` in every Job (empty:
    /// none).
    #[arg(
        long,
        env = "SLATE_JOB_SCRIPTS",
        default_value = "slate-stage-scripts",
        global = true
    )]
    pub job_scripts: String,

    /// Seconds a finished Job stays in the cluster before Kubernetes removes it (its log
    /// is archived by Slate first).
    #[arg(
        long,
        env = "SLATE_JOB_TTL_SECONDS",
        default_value_t = 3600,
        global = true
    )]
    pub job_ttl_seconds: i32,

    /// CPU and memory each Job requests (and is limited to).
    #[arg(long, env = "SLATE_JOB_CPU", default_value = "2", global = true)]
    pub job_cpu: String,
    #[arg(long, env = "SLATE_JOB_MEMORY", default_value = "4Gi", global = true)]
    pub job_memory: String,

    /// The Dagster webserver `dagster` stages launch their runs on
    /// (`http://dagster-webserver.film.svc:3000`); unset, no dagster stage is accepted.
    #[arg(long, env = "SLATE_DAGSTER_URL", global = true)]
    pub dagster_url: Option<Url>,

    /// Dagster runs launched by Slate in flight at once across every replica.
    #[arg(long, env = "SLATE_DAGSTER_RUNS", default_value_t = 4, global = true)]
    pub dagster_runs: i64,

    /// The LangGraph server `langgraph` stages run their assistants on
    /// (`http://langgraph.film.svc:8000`); unset, no langgraph stage is accepted.
    #[arg(long, env = "SLATE_LANGGRAPH_URL", global = true)]
    pub langgraph_url: Option<Url>,

    /// The bearer token Slate sends to the LangGraph server (its custom auth); unset, none.
    #[arg(
        long,
        env = "SLATE_LANGGRAPH_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub langgraph_token: Option<String>,

    /// LangGraph runs in flight at once across every replica (a run waiting for a person
    /// counts).
    #[arg(long, env = "SLATE_LANGGRAPH_RUNS", default_value_t = 8, global = true)]
    pub langgraph_runs: i64,

    /// Hosts webhook deliveries may reach although they are private or loopback (in-cluster
    /// services such as `dagster-webserver.film.svc`): comma-separated host names or
    /// `host:port`; empty, only public addresses.
    #[arg(long, env = "SLATE_WEBHOOK_ALLOW", default_value = "", global = true)]
    pub webhook_allow: String,

    /// Milliseconds between two looks at a ComfyUI prompt (and for a healthy endpoint).
    #[arg(
        long,
        env = "SLATE_COMFYUI_POLL_MS",
        default_value_t = 2000,
        global = true,
        hide = true
    )]
    pub comfyui_poll_ms: u64,

    /// When Slate runs as root, the unprivileged system user that runs the embedded
    /// PostgreSQL (PostgreSQL refuses to run as root).
    #[arg(
        long,
        env = "SLATE_PG_OS_USER",
        default_value = "postgres",
        global = true
    )]
    pub pg_os_user: String,

    /// Whether to connect to a Kubernetes cluster: `auto` uses the in-cluster service
    /// account when running in a pod, else the file named by KUBECONFIG, else none (the
    /// architecture page then shows the desired state from the built-in k8s/ manifests);
    /// `off` never connects.
    #[arg(long, env = "SLATE_KUBE", value_enum, default_value_t = KubeMode::Auto, global = true)]
    pub kube: KubeMode,

    /// The kubeconfig file used outside a cluster (when it names several files separated
    /// by `:`, the first that exists).
    #[arg(long, env = "KUBECONFIG", global = true)]
    pub kubeconfig: Option<String>,

    /// Hosts accepted for the Colab endpoint besides Cloudflare quick tunnels
    /// (`*.trycloudflare.com`): comma-separated exact names or `*.suffix` patterns.
    #[arg(
        long,
        env = "SLATE_COLAB_ALLOWED_HOSTS",
        default_value = "",
        global = true
    )]
    pub colab_allowed_hosts: String,

    /// TESTS ONLY: accept Colab endpoints at `http://127.0.0.1:<port>`. Never set this on a
    /// real Slate: it lets a webhook make Slate fetch from its own machine. Takes
    /// true/false, 1/0, yes/no or on/off, in any case.
    #[arg(
        long,
        env = "SLATE_COLAB_ALLOW_LOOPBACK",
        default_value_t = false,
        value_parser = boolish(),
        global = true,
        hide = true
    )]
    pub colab_allow_loopback: bool,

    /// How long a newly reported endpoint may take to answer like ComfyUI (a fresh
    /// tunnel takes a while to become reachable) before it is rejected.
    #[arg(
        long,
        env = "SLATE_COLAB_VERIFY_SECONDS",
        default_value_t = 60,
        global = true
    )]
    pub colab_verify_seconds: u64,

    /// How often the current Colab endpoint is checked (`GET /prompt`); three failures in
    /// a row mark it down and start a failover.
    #[arg(
        long,
        env = "SLATE_COLAB_CHECK_SECONDS",
        default_value_t = 30,
        global = true
    )]
    pub colab_check_seconds: u64,

    /// Where the current Colab endpoint is written in the cluster: `secret` (the URL is a
    /// credential) or `configmap`.
    #[arg(long, env = "SLATE_COLAB_PUBLISH", value_parser = ["secret", "configmap"], default_value = "secret", global = true)]
    pub colab_publish: String,

    /// The name of that Secret or ConfigMap (key `COMFYUI_URL`).
    #[arg(
        long,
        env = "SLATE_COLAB_PUBLISH_NAME",
        default_value = "comfyui-endpoint",
        global = true
    )]
    pub colab_publish_name: String,

    /// The namespace the pipeline runs in.
    #[arg(
        long,
        env = "SLATE_NAMESPACE",
        default_value = "ai-film",
        global = true
    )]
    pub namespace: String,
}

/// See `Config::kube`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KubeMode {
    Auto,
    Off,
}

impl Config {
    pub fn public_url(&self) -> Url {
        self.public_url.clone().unwrap_or_else(|| {
            Url::parse(&format!("http://{}", self.listen)).expect("a socket address makes a URL")
        })
    }

    /// Where stages work (see `work_dir`).
    pub fn work(&self) -> PathBuf {
        self.work_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("work"))
    }

    pub fn session_idle(&self) -> Duration {
        Duration::from_secs(u64::from(self.session_idle_minutes.max(1)) * 60)
    }

    /// The accepted kinds, or `None` for all.
    pub fn allowed_kinds(&self) -> Result<Option<Vec<crate::assets::detect::Kind>>, String> {
        use crate::assets::detect::Kind;
        if self.upload_kinds.trim().eq_ignore_ascii_case("all") {
            return Ok(None);
        }
        self.upload_kinds
            .split(',')
            .map(|k| match k.trim().to_ascii_lowercase().as_str() {
                "image" => Ok(Kind::Image),
                "video" => Ok(Kind::Video),
                "audio" => Ok(Kind::Audio),
                "scene" => Ok(Kind::Scene),
                "model" => Ok(Kind::Model),
                "other" => Ok(Kind::Other),
                other => Err(format!("SLATE_UPLOAD_KINDS: unknown kind \"{other}\"")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// The site folder, resolved as documented on `site_dir`.
    pub fn resolved_site_dir(&self) -> PathBuf {
        if self.site_dir.is_absolute() || self.site_dir.exists() {
            return self.site_dir.clone();
        }
        let beside_binary = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join("site")));
        match beside_binary {
            Some(dir) if dir.exists() => dir,
            _ => self.site_dir.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use crate::cli::Cli;

    /// Every on/off setting, read from its variable, takes the usual spellings (and
    /// refuses others). Each flag is pointed at a variable of this test's own, so that no
    /// other test sees it.
    #[test]
    fn every_boolean_setting_takes_the_usual_spellings() {
        let flags: Vec<String> = Cli::command()
            .get_arguments()
            .filter(|a| matches!(a.get_action(), clap::ArgAction::SetTrue))
            .filter(|a| a.get_env().is_some())
            .map(|a| a.get_id().to_string())
            .collect();
        assert!(
            flags.len() >= 2,
            "trust_proxy and colab_allow_loopback: {flags:?}"
        );
        for flag in &flags {
            // clap takes a variable's name as a `&'static str`.
            let var: &'static str = Box::leak(
                format!("SLATE_BOOLEAN_SPELLING_TEST_{}", flag.to_ascii_uppercase())
                    .into_boxed_str(),
            );
            let read = |text: &str| {
                std::env::set_var(var, text);
                let matches = Cli::command()
                    .mut_args(|a| {
                        if a.get_id() == flag.as_str() {
                            a.env(var)
                        } else {
                            a.env(None)
                        }
                    })
                    .try_get_matches_from(["slate"]);
                std::env::remove_var(var);
                matches.ok().map(|m| m.get_flag(flag))
            };
            for yes in ["true", "TRUE", "1", "yes", "Yes", "on", "ON"] {
                assert_eq!(read(yes), Some(true), "{flag} = {yes}");
            }
            for no in ["false", "False", "0", "no", "NO", "off", "Off"] {
                assert_eq!(read(no), Some(false), "{flag} = {no}");
            }
            assert_eq!(read("maybe"), None, "{flag} = maybe is refused");
        }
    }
}
