//! Building and running the server: open the database, migrate, wire the services,
//! bind the listener (port 0 in tests), start the background workers, serve until told
//! to stop, then stop in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use app::backend::Services;
use leptos::prelude::LeptosOptions;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower_sessions::ExpiredDeletion as _;
use tower_sessions_sqlx_store::PostgresStore;

use crate::accounts::Accounts;
use crate::assets::storage::Storage;
use crate::assets::{Assets, AssetsConfig};
use crate::config::Config;
use crate::db::Database;
use crate::http::{self, AppState, DbHealth, HttpConfig, HttpMetrics};

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    db: Database,
    workers: Vec<JoinHandle<()>>,
    addr: SocketAddr,
    stopping: tokio::sync::watch::Sender<bool>,
}

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
        if let Err(err) = db.migrate().await {
            return Err((err.into(), db));
        }
        let pool = db.pool.clone();
        let accounts = Accounts::open(&db, config);
        let started_at = accounts.started_at();
        if let (Some(email), Some(password)) = (&config.admin_email, &config.admin_password) {
            match accounts.bootstrap_admin(email, password).await {
                Ok(true) => {
                    tracing::info!(email = %email, "created the first admin from SLATE_ADMIN_EMAIL")
                }
                Ok(false) => {}
                Err(err) => {
                    return Err((anyhow::anyhow!("cannot create the first admin: {err}"), db))
                }
            }
        }

        let listener = match TcpListener::bind(config.listen).await {
            Ok(l) => l,
            Err(err) => {
                return Err((
                    anyhow::anyhow!("cannot listen on {}: {err}", config.listen),
                    db,
                ))
            }
        };
        let addr = match listener.local_addr() {
            Ok(a) => a,
            Err(e) => return Err((e.into(), db)),
        };

        let site_root = config.resolved_site_dir();
        if !site_root.join("pkg").exists() {
            tracing::warn!(site = %site_root.display(), "the site folder has no pkg/: pages will render but not hydrate (build it with scripts/build-site, or set SLATE_SITE_DIR)");
        }
        let leptos_options = LeptosOptions::builder()
            .output_name("slate")
            .site_root(site_root.to_string_lossy().into_owned())
            .site_pkg_dir("pkg")
            .site_addr(addr)
            .build();

        let public_url = config.public_url();
        let public_origin = public_url.origin().ascii_serialization();
        let http_config = HttpConfig {
            public_origin,
            trust_proxy: config.trust_proxy,
            max_body_bytes: config.max_body_bytes,
            session_idle: config.session_idle(),
        };
        let assets = match open_assets(config, pool.clone()) {
            Ok(a) => a,
            Err(err) => return Err((err, db)),
        };
        let db_health = Arc::new(DbHealth::new());
        let (asset_events, _) = tokio::sync::broadcast::channel(256);
        let (deploy_events, _) = tokio::sync::broadcast::channel(256);
        let (run_events, _) = tokio::sync::broadcast::channel(1024);
        let target = crate::cluster::target(config).await;
        let publisher = match &target {
            crate::cluster::Target::Cluster(client) => Some(crate::colab::publish::Publisher {
                client: client.clone(),
                namespace: config.namespace.clone(),
                target: if config.colab_publish == "configmap" {
                    crate::colab::publish::Target::ConfigMap(config.colab_publish_name.clone())
                } else {
                    crate::colab::publish::Target::Secret(config.colab_publish_name.clone())
                },
            }),
            crate::cluster::Target::None(_) => None,
        };
        let (cluster, cluster_tasks) =
            crate::cluster::Cluster::start_with(target, &config.namespace);
        let (stopping, stopping_rx) = tokio::sync::watch::channel(false);
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
        let colab_monitor = colab
            .clone()
            .spawn_monitor(Duration::from_secs(config.colab_check_seconds.max(1)));
        let (pipeline_caps, pipelines) =
            match crate::pipelines::start(config, &pool, &assets, colab.prober.clone(), &cluster)
                .await
            {
                Ok((caps, tasks)) => (Arc::new(caps), tasks),
                Err(err) => return Err((err, db)),
            };
        let state = AppState {
            leptos_options,
            pool: pool.clone(),
            accounts: accounts.clone(),
            assets: assets.clone(),
            asset_events: asset_events.clone(),
            cluster: cluster.clone(),
            colab: colab.clone(),
            deploy_events: deploy_events.clone(),
            pipeline_caps: pipeline_caps.clone(),
            run_events: run_events.clone(),
            stopping: stopping_rx,
            services: Services {
                accounts: Arc::new(accounts.clone()),
                assets: Arc::new(assets.clone()),
                cluster: Arc::new(cluster.clone()),
                colab: Arc::new(colab.clone()),
                deploys: Arc::new(crate::deploys::Deploys::new(pool.clone(), cluster.clone())),
                pipelines: Arc::new(crate::pipelines::backend::Pipelines {
                    pool: pool.clone(),
                    caps: pipeline_caps,
                }),
            },
            config: Arc::new(http_config),
            metrics: Arc::new(HttpMetrics::default()),
            db_health: db_health.clone(),
            started_at,
        };
        let router = http::router(state);

        let pool_for_events = pool.clone();
        let mut workers = spawn_workers(pool, accounts, db_health);
        workers.extend(crate::assets::processing::spawn(assets));
        workers.push(crate::assets::events::spawn(
            pool_for_events.clone(),
            asset_events,
        ));
        workers.push(crate::assets::events::forward(
            pool_for_events.clone(),
            "deploy_changes",
            deploy_events,
        ));
        workers.push(crate::assets::events::forward(
            pool_for_events.clone(),
            "run_changes",
            run_events,
        ));
        workers.extend(pipelines);
        if cluster.is_live() {
            workers.push(tokio::spawn(crate::deploys::revisions::run(
                cluster,
                pool_for_events,
            )));
        }
        workers.extend(cluster_tasks);
        workers.push(colab_monitor);
        Ok(Self {
            listener,
            router,
            db,
            workers,
            addr,
            stopping,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests, stops the
    /// workers and closes the database (stopping the embedded one).
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            router,
            db,
            workers,
            stopping,
            ..
        } = self;
        let shutdown = async move {
            shutdown.await;
            // End the event streams first, or graceful shutdown waits for them forever.
            let _ = stopping.send(true);
        };
        let served = crate::http::serve::serve(listener, router, shutdown).await;
        for worker in workers {
            worker.abort();
        }
        db.close(true).await;
        served.map_err(Into::into)
    }
}

fn open_assets(config: &Config, pool: sqlx::PgPool) -> anyhow::Result<Assets> {
    let storage = Storage::open(config.storage.as_deref(), &config.data_dir)?;
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

fn spawn_workers(
    pool: sqlx::PgPool,
    accounts: Accounts,
    db_health: Arc<DbHealth>,
) -> Vec<JoinHandle<()>> {
    let sessions = PostgresStore::new(pool.clone())
        .with_schema_name("public")
        .and_then(|s| s.with_table_name("sessions"))
        .expect("valid identifiers");
    vec![
        tokio::spawn(async move {
            loop {
                if let Err(err) = sessions.delete_expired().await {
                    tracing::warn!(error = %err, "deleting expired sessions failed");
                }
                tokio::time::sleep(Duration::from_secs(300)).await;
            }
        }),
        tokio::spawn(async move {
            loop {
                match accounts.sweep_login_failures().await {
                    Ok(n) if n > 0 => tracing::debug!(removed = n, "old sign-in failures swept"),
                    Ok(_) => {}
                    Err(err) => tracing::warn!(error = %err, "sweeping sign-in failures failed"),
                }
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
        }),
        tokio::spawn(async move {
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
        }),
    ]
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
