//! Building and running the server: open the database, migrate, wire the services,
//! bind the listener (port 0 in tests), start the background workers, serve until told
//! to stop, then stop in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use leptos::prelude::LeptosOptions;
use tokio::net::TcpListener;
use tower_sessions::ExpiredDeletion as _;
use tower_sessions_sqlx_store::PostgresStore;

use crate::accounts::Accounts;
use crate::assets::storage::Storage;
use crate::assets::{Assets, AssetsConfig};
use crate::config::Config;
use crate::db::Database;
use crate::http::{self, AppState, DbHealth, HttpConfig, HttpMetrics};
use crate::notify::Notifications;
use crate::pipelines::backend::Pipelines;
use crate::tasks::{Shutdown, Tasks};

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    db: Database,
    tasks: Tasks,
    addr: SocketAddr,
    shutdown: Shutdown,
}

/// How long stopping waits for the background tasks once the requests are done.
const TASKS_STOP_WITHIN: Duration = Duration::from_secs(10);

impl Application {
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let db = Database::open(config).await?;
        match Self::build_on(config, db).await {
            Ok(app) => Ok(app),
            Err((err, db)) => {
                db.close(true).await;
                Err(err)
            }
        }
    }

    async fn build_on(config: &Config, db: Database) -> Result<Self, (anyhow::Error, Database)> {
        let tasks = Tasks::new();
        let shutdown = Shutdown::new();
        match Self::wire(config, &db, &tasks, &shutdown).await {
            Ok((listener, addr, router)) => Ok(Self {
                listener,
                router,
                db,
                tasks,
                addr,
                shutdown,
            }),
            Err(err) => {
                tasks.shutdown(TASKS_STOP_WITHIN).await;
                Err((err, db))
            }
        }
    }

    /// Migrates, binds, starts every service with its background tasks, and builds the
    /// router.
    async fn wire(
        config: &Config,
        db: &Database,
        tasks: &Tasks,
        shutdown: &Shutdown,
    ) -> anyhow::Result<(TcpListener, SocketAddr, axum::Router)> {
        db.migrate().await?;
        let pool = db.pool.clone();
        let accounts = Accounts::open(db, config);
        bootstrap_admin(config, &accounts).await?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|err| anyhow::anyhow!("cannot listen on {}: {err}", config.listen))?;
        let addr = listener.local_addr()?;

        let notifications = Notifications::new();
        tasks.keep("notifications", {
            let (n, pool) = (notifications.clone(), pool.clone());
            move || n.clone().listen(pool.clone())
        });
        let db_health = Arc::new(DbHealth::new());
        start_housekeeping(tasks, &pool, &accounts, &db_health);

        let assets = open_assets(config, pool.clone())?;
        crate::assets::processing::start(&assets, tasks);
        let target = crate::cluster::target(config).await;
        let publisher = publisher(config, &target);
        let (cluster, cluster_tasks) =
            crate::cluster::Cluster::start_with(target, &config.namespace);
        for handle in cluster_tasks {
            tasks.adopt("cluster watcher", handle);
        }
        if cluster.is_live() {
            let (cluster, pool) = (cluster.clone(), pool.clone());
            tasks.keep("deploy revisions", move || {
                crate::deploys::revisions::run(cluster.clone(), pool.clone())
            });
        }
        let colab = open_colab(config, &pool, publisher, &cluster, addr)
            .await
            .with_tasks(tasks);
        let every = Duration::from_secs(config.colab_check_seconds.max(1));
        tasks.keep("colab monitor", {
            let colab = colab.clone();
            move || colab.clone().monitor(every)
        });
        let caps = crate::pipelines::start(
            config,
            &pool,
            &assets,
            colab.prober.clone(),
            &cluster,
            &notifications,
            tasks,
        )
        .await?;

        let webhooks = crate::webhooks::Webhooks::new(pool.clone(), config);
        webhooks.start(tasks);

        let state = AppState {
            leptos_options: leptos_options(config, addr),
            started_at: accounts.started_at(),
            pool: pool.clone(),
            accounts,
            assets,
            cluster,
            colab,
            workflows: crate::comfyui::workflows::Workflows::new(pool.clone()),
            webhooks,
            pipelines: Pipelines {
                pool,
                caps: Arc::new(caps),
            },
            notifications,
            shutdown: shutdown.clone(),
            config: Arc::new(http_config(config)),
            metrics: Arc::new(HttpMetrics::default()),
            db_health,
        };
        Ok((listener, addr, http::router(state)))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests, stops the
    /// background tasks (waiting for them at most 10 s) and closes the database
    /// (stopping the embedded one).
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            router,
            db,
            tasks,
            shutdown: stopping,
            ..
        } = self;
        let shutdown = async move {
            shutdown.await;
            // End the event streams first, or graceful shutdown waits for them forever.
            stopping.begin();
        };
        let served = crate::http::serve::serve(listener, router, shutdown).await;
        tasks.shutdown(TASKS_STOP_WITHIN).await;
        db.close(true).await;
        served.map_err(Into::into)
    }
}

async fn bootstrap_admin(config: &Config, accounts: &Accounts) -> anyhow::Result<()> {
    if let (Some(email), Some(password)) = (&config.admin_email, &config.admin_password) {
        match accounts.bootstrap_admin(email, password).await {
            Ok(true) => {
                tracing::info!(email = %email, "created the first admin from SLATE_ADMIN_EMAIL")
            }
            Ok(false) => {}
            Err(err) => anyhow::bail!("cannot create the first admin: {err}"),
        }
    }
    Ok(())
}

fn leptos_options(config: &Config, addr: SocketAddr) -> LeptosOptions {
    let site_root = config.resolved_site_dir();
    if !site_root.join("pkg").exists() {
        tracing::warn!(site = %site_root.display(), "the site folder has no pkg/: pages will render but not hydrate (build it with scripts/build-site, or set SLATE_SITE_DIR)");
    }
    LeptosOptions::builder()
        .output_name("slate")
        .site_root(site_root.to_string_lossy().into_owned())
        .site_pkg_dir("pkg")
        .site_addr(addr)
        .build()
}

fn http_config(config: &Config) -> HttpConfig {
    HttpConfig {
        public_origin: config.public_url().origin().ascii_serialization(),
        trust_proxy: config.trust_proxy,
        max_body_bytes: config.max_body_bytes,
        session_idle: config.session_idle(),
    }
}

/// Where the colab endpoint is published for the cluster's workloads, if there is one.
fn publisher(
    config: &Config,
    target: &crate::cluster::Target,
) -> Option<crate::colab::publish::Publisher> {
    use crate::colab::publish::{Publisher, Target};
    match target {
        crate::cluster::Target::Cluster(client) => Some(Publisher {
            client: client.clone(),
            namespace: config.namespace.clone(),
            target: if config.colab_publish == "configmap" {
                Target::ConfigMap(config.colab_publish_name.clone())
            } else {
                Target::Secret(config.colab_publish_name.clone())
            },
        }),
        crate::cluster::Target::None(_) => None,
    }
}

async fn open_colab(
    config: &Config,
    pool: &sqlx::PgPool,
    publisher: Option<crate::colab::publish::Publisher>,
    cluster: &crate::cluster::Cluster,
    addr: SocketAddr,
) -> crate::colab::Colab {
    let colab = crate::colab::Colab::new(
        pool.clone(),
        crate::comfyui::address::HostRules::parse(
            &config.colab_allowed_hosts,
            config.colab_allow_loopback,
        ),
        Duration::from_secs(config.colab_verify_seconds.max(1)),
    )
    .with_publisher(publisher)
    .with_diagram(cluster.clone())
    .with_public_url(&match &config.public_url {
        Some(url) => url.to_string(),
        // The address actually bound (port 0 in tests becomes the real port).
        None => format!("http://{addr}"),
    });
    colab.show_on_diagram().await;
    colab
}

fn open_assets(config: &Config, pool: sqlx::PgPool) -> anyhow::Result<Assets> {
    let storage = Storage::open(
        config.storage.as_deref(),
        &config.data_dir,
        Storage::provider_environment(),
    )?;
    tracing::info!(storage = storage.describe(), "asset storage");
    let settings = AssetsConfig {
        max_upload_bytes: config.upload_max_bytes,
        quota_bytes: (config.upload_quota_bytes > 0).then_some(config.upload_quota_bytes),
        max_pending: (config.upload_max_pending > 0).then_some(config.upload_max_pending),
        upload_expiry: Duration::from_secs(config.upload_expiry_hours.max(1) * 3600),
        allowed_kinds: config.allowed_kinds().map_err(anyhow::Error::msg)?,
        processing_workers: config.processing_workers,
    };
    Ok(Assets::new(pool, storage, &config.data_dir, settings)?)
}

/// The sweeps of expired sessions and old sign-in failures, and the database probe.
fn start_housekeeping(
    tasks: &Tasks,
    pool: &sqlx::PgPool,
    accounts: &Accounts,
    db_health: &Arc<DbHealth>,
) {
    let sessions = PostgresStore::new(pool.clone())
        .with_schema_name("public")
        .and_then(|s| s.with_table_name("sessions"))
        .expect("valid identifiers");
    tasks.keep("expired sessions sweep", move || {
        let sessions = sessions.clone();
        async move {
            loop {
                if let Err(err) = sessions.delete_expired().await {
                    tracing::warn!(error = %err, "deleting expired sessions failed");
                }
                tokio::time::sleep(Duration::from_secs(300)).await;
            }
        }
    });
    let accounts = accounts.clone();
    tasks.keep("sign-in failures sweep", move || {
        let accounts = accounts.clone();
        async move {
            loop {
                match accounts.sweep_login_failures().await {
                    Ok(n) if n > 0 => tracing::debug!(removed = n, "old sign-in failures swept"),
                    Ok(_) => {}
                    Err(err) => tracing::warn!(error = %err, "sweeping sign-in failures failed"),
                }
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
        }
    });
    let (pool, db_health) = (pool.clone(), db_health.clone());
    tasks.keep("database probe", move || {
        let (pool, db_health) = (pool.clone(), db_health.clone());
        async move {
            // Down after two failed checks in a row: one slow answer on a busy disk is
            // not an outage. Up again at the first good answer.
            let mut failures = 0;
            loop {
                if http::probe(&pool).await {
                    failures = 0;
                    db_health.set(true);
                } else {
                    failures += 1;
                    if failures >= 2 {
                        db_health.set(false);
                    }
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    });
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(err) => {
            tracing::error!(error = %err, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, stopping"),
        _ = term.recv() => tracing::info!("SIGTERM received, stopping"),
    }
}
