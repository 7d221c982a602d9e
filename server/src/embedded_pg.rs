//! The private PostgreSQL Slate starts when no `DATABASE_URL` is given: a cluster in
//! `$SLATE_DATA_DIR/postgres`, run from the machine's own server binaries on a free
//! loopback port with a generated password, reused across starts.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rand::distributions::{Alphanumeric, DistString};
use tokio::process::Command;

use crate::config::Config;

const DB_USER: &str = "slate";
const DB_NAME: &str = "slate";

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(
        "PostgreSQL's server programs (initdb, pg_ctl) were not found on PATH, in \
         /usr/lib/postgresql/*/bin or in SLATE_PG_BIN_DIR.\n\
         Install them (Debian/Ubuntu: `apt-get install postgresql`; Fedora: `dnf install \
         postgresql-server`; macOS: `brew install postgresql@16`), or set DATABASE_URL to \
         use a PostgreSQL server you already run."
    )]
    NoBinaries,
    #[error(
        "Slate is running as root, and PostgreSQL refuses to run as root, so Slate runs it \
         as the system user \"{user}\" — but {problem}.\nFix one of: run Slate as an \
         ordinary user; set SLATE_PG_OS_USER to an existing unprivileged user; set \
         DATABASE_URL."
    )]
    RootWithoutUser { user: String, problem: String },
    #[error(
        "Slate is running as root, so the embedded PostgreSQL runs as \"{user}\", who cannot \
         reach {dir}.\nFix one of: `chmod o+x` the directories on that path; set \
         SLATE_DATA_DIR to a directory {user} can reach (e.g. /var/lib/slate); run Slate as \
         an ordinary user; or set DATABASE_URL."
    )]
    Unreachable { user: String, dir: PathBuf },
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("{0}")]
    Io(String),
}

fn io(context: &str, path: &Path, err: std::io::Error) -> EmbeddedError {
    EmbeddedError::Io(format!("{context} {}: {err}", path.display()))
}

/// A running embedded cluster.
#[derive(Debug, Clone)]
pub struct EmbeddedPostgres {
    pgdata: PathBuf,
    bin_dir: PathBuf,
    os_user: Option<String>,
    port: u16,
    password: String,
    /// Whether this process started the server (and so should stop it).
    pub started_here: bool,
}

impl EmbeddedPostgres {
    /// Starts the cluster for this data directory, creating it on first use, or attaches
    /// to the one already running there (another `slate` command may have started it).
    pub async fn start(config: &Config) -> Result<Self, EmbeddedError> {
        let bin_dir = find_binaries(config.pg_bin_dir.as_deref())?;
        let os_user = unprivileged_user(config)?;
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| io("cannot create", &config.data_dir, e))?;
        let data_dir = std::fs::canonicalize(&config.data_dir)
            .map_err(|e| io("cannot resolve", &config.data_dir, e))?;
        let pgdata = data_dir.join("postgres");
        if let Some(user) = &os_user {
            check_reachable(user, &data_dir).await?;
        }
        let password = read_or_create_password(&data_dir.join("postgres.password"))?;

        let mut pg = Self {
            pgdata,
            bin_dir,
            os_user,
            port: 0,
            password,
            started_here: false,
        };
        if !pg.pgdata.join("PG_VERSION").exists() {
            pg.init(&data_dir).await?;
        }
        if let Some(port) = pg.running_port().await {
            pg.port = port;
            tracing::info!(
                port,
                "using the embedded PostgreSQL that is already running"
            );
            return Ok(pg);
        }
        // Prefer the port used last time (clients holding the old URL reconnect after a
        // restart); a port found free can be taken before the server binds it: try a few.
        let port_file = data_dir.join("postgres.port");
        let previous = std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|p| p.trim().parse().ok());
        let mut last_error = None;
        for attempt in 0..4 {
            pg.port = match previous {
                Some(port) if attempt == 0 && port_is_free(port) => port,
                _ => free_port()?,
            };
            match pg.pg_ctl_start().await {
                Ok(()) => {
                    let _ = std::fs::write(&port_file, pg.port.to_string());
                    pg.started_here = true;
                    tracing::info!(port = pg.port, dir = %pg.pgdata.display(), "embedded PostgreSQL started");
                    return Ok(pg);
                }
                Err(err) => last_error = Some(err),
            }
            if let Some(port) = pg.running_port().await {
                pg.port = port;
                return Ok(pg);
            }
        }
        Err(last_error.unwrap_or_else(|| EmbeddedError::Io("could not start PostgreSQL".into())))
    }

    /// The connection URL (contains the generated password: never log it).
    pub fn url(&self) -> String {
        format!(
            "postgres://{DB_USER}:{}@127.0.0.1:{}/{DB_NAME}",
            self.password, self.port
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server with a fast shutdown (clients are disconnected, data is safe).
    pub async fn stop(&self) -> Result<(), EmbeddedError> {
        let pgdata = self.pgdata.to_string_lossy().into_owned();
        self.run(
            "pg_ctl stop",
            "pg_ctl",
            &["stop", "-D", &pgdata, "-m", "fast", "-w", "-t", "60"],
        )
        .await
        .map(|_| tracing::info!("embedded PostgreSQL stopped"))
    }

    async fn init(&self, data_dir: &Path) -> Result<(), EmbeddedError> {
        // initdb into a scratch directory and rename, so a crash half-way leaves nothing
        // that looks like a cluster.
        let scratch = data_dir.join("postgres.init");
        if scratch.exists() {
            std::fs::remove_dir_all(&scratch).map_err(|e| io("cannot remove", &scratch, e))?;
        }
        std::fs::create_dir(&scratch).map_err(|e| io("cannot create", &scratch, e))?;
        self.give_to_os_user(&scratch).await?;
        let scratch_s = scratch.to_string_lossy().into_owned();
        // The password goes through a private file: initdb cannot read a pipe that
        // belongs to another user when we run it through runuser.
        let pwfile = data_dir.join("postgres.init-password");
        write_private(&pwfile, &self.password)?;
        self.give_to_os_user(&pwfile).await?;
        let pwfile_arg = format!("--pwfile={}", pwfile.display());
        tracing::info!(dir = %self.pgdata.display(), "creating the embedded PostgreSQL cluster");
        let made = self
            .run(
                "initdb",
                "initdb",
                &[
                    "-D",
                    &scratch_s,
                    "-U",
                    DB_USER,
                    "--auth=scram-sha-256",
                    &pwfile_arg,
                    "-E",
                    "UTF8",
                    "--no-locale",
                ],
            )
            .await;
        let _ = std::fs::remove_file(&pwfile);
        made?;
        let conf = scratch.join("postgresql.conf");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .map_err(|e| io("cannot open", &conf, e))?;
        file.write_all(
            b"\n# Added by Slate: loopback TCP only, no Unix socket directory to share.\n\
              listen_addresses = '127.0.0.1'\n\
              unix_socket_directories = ''\n\
              max_connections = 100\n\
              log_min_messages = warning\n",
        )
        .map_err(|e| io("cannot write", &conf, e))?;
        std::fs::rename(&scratch, &self.pgdata).map_err(|e| io("cannot rename", &scratch, e))?;
        // The database itself is created on first connection (see `ensure_database`).
        Ok(())
    }

    /// The port of the server running on this cluster, if one is.
    async fn running_port(&self) -> Option<u16> {
        let pgdata = self.pgdata.to_string_lossy().into_owned();
        self.run("pg_ctl status", "pg_ctl", &["status", "-D", &pgdata])
            .await
            .ok()?;
        // postmaster.pid: pid, data dir, start time, port, ...
        let pid_file = std::fs::read_to_string(self.pgdata.join("postmaster.pid")).ok()?;
        pid_file.lines().nth(3)?.trim().parse().ok()
    }

    async fn pg_ctl_start(&self) -> Result<(), EmbeddedError> {
        let pgdata = self.pgdata.to_string_lossy().into_owned();
        let log = self
            .pgdata
            .join("server.log")
            .to_string_lossy()
            .into_owned();
        let opts = format!("-p {}", self.port);
        let result = self
            .run(
                "pg_ctl start",
                "pg_ctl",
                &[
                    "start", "-D", &pgdata, "-l", &log, "-w", "-t", "60", "-o", &opts,
                ],
            )
            .await;
        if let Err(EmbeddedError::Command { what, detail }) = result {
            let tail = std::fs::read_to_string(&log)
                .map(|s| {
                    s.lines()
                        .rev()
                        .take(8)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default();
            return Err(EmbeddedError::Command {
                what,
                detail: format!("{detail}\nserver log ({log}):\n{tail}"),
            });
        }
        result.map(drop)
    }

    async fn give_to_os_user(&self, dir: &Path) -> Result<(), EmbeddedError> {
        let Some(user) = &self.os_user else {
            return Ok(());
        };
        let found = nix::unistd::User::from_name(user)
            .ok()
            .flatten()
            .ok_or_else(|| EmbeddedError::RootWithoutUser {
                user: user.clone(),
                problem: "it does not exist".into(),
            })?;
        std::os::unix::fs::chown(dir, Some(found.uid.as_raw()), Some(found.gid.as_raw()))
            .map_err(|e| io("cannot chown", dir, e))
    }

    /// Runs one of PostgreSQL's programs, as the unprivileged user when we are root, in
    /// its own process group so a Ctrl-C at the terminal reaches Slate, which then
    /// stops the database in order.
    async fn run(&self, what: &str, program: &str, args: &[&str]) -> Result<String, EmbeddedError> {
        let program = self.bin_dir.join(program);
        let mut cmd = match &self.os_user {
            Some(user) => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", user, "--"]).arg(&program);
                cmd
            }
            None => Command::new(&program),
        };
        cmd.args(args)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("LC_ALL", "C");
        let child = cmd.spawn().map_err(|e| EmbeddedError::Command {
            what: what.into(),
            detail: format!("cannot run {}: {e}", program.display()),
        })?;
        let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
            .await
            .map_err(|_| EmbeddedError::Command {
                what: what.into(),
                detail: "timed out".into(),
            })?
            .map_err(|e| EmbeddedError::Io(e.to_string()))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(EmbeddedError::Command {
                what: what.into(),
                detail: format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stderr).trim(),
                    String::from_utf8_lossy(&out.stdout).trim()
                ),
            })
        }
    }
}

/// Finds the directory holding `initdb` and `pg_ctl`.
fn find_binaries(configured: Option<&Path>) -> Result<PathBuf, EmbeddedError> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = configured {
        return if has_both(dir) {
            Ok(dir.to_owned())
        } else {
            Err(EmbeddedError::NoBinaries)
        };
    }
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    // Distribution layouts, newest version first.
    let mut versioned: Vec<(u32, PathBuf)> =
        ["/usr/lib/postgresql", "/usr/local/opt", "/opt/homebrew/opt"]
            .iter()
            .filter_map(|root| std::fs::read_dir(root).ok())
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let version = name
                    .trim_start_matches("postgresql@")
                    .trim_start_matches("postgresql");
                let major = version.split('.').next()?.parse().ok()?;
                Some((major, entry.path().join("bin")))
            })
            .collect();
    versioned.sort_by_key(|(major, _)| std::cmp::Reverse(*major));
    candidates.extend(versioned.into_iter().map(|(_, dir)| dir));
    candidates.push(PathBuf::from("/usr/local/pgsql/bin"));
    candidates
        .into_iter()
        .find(|dir| has_both(dir))
        .map(|dir| {
            std::fs::canonicalize(dir.join("pg_ctl"))
                .ok()
                .and_then(|p| p.parent().map(Path::to_owned))
                .unwrap_or(dir)
        })
        .ok_or(EmbeddedError::NoBinaries)
}

/// The user to run PostgreSQL as when we are root; `None` when we are not.
fn unprivileged_user(config: &Config) -> Result<Option<String>, EmbeddedError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let user = config.pg_os_user.clone();
    match nix::unistd::User::from_name(&user) {
        Ok(Some(found)) if found.uid.is_root() => Err(EmbeddedError::RootWithoutUser {
            user,
            problem: "that user is root too".into(),
        }),
        Ok(Some(_)) => Ok(Some(user)),
        _ => Err(EmbeddedError::RootWithoutUser {
            user,
            problem: "that user does not exist".into(),
        }),
    }
}

async fn check_reachable(user: &str, dir: &Path) -> Result<(), EmbeddedError> {
    let ok = Command::new("runuser")
        .args(["-u", user, "--", "test", "-x"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(EmbeddedError::Unreachable {
            user: user.into(),
            dir: dir.into(),
        })
    }
}

fn read_or_create_password(path: &Path) -> Result<String, EmbeddedError> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let existing = existing.trim().to_owned();
        if !existing.is_empty() {
            return Ok(existing);
        }
    }
    let password = Alphanumeric.sample_string(&mut rand::thread_rng(), 32);
    write_private(path, &password)?;
    Ok(password)
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, contents: &str) -> Result<(), EmbeddedError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io("cannot create", path, e))?;
    file.write_all(contents.as_bytes())
        .map_err(|e| io("cannot write", path, e))
}

fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn free_port() -> Result<u16, EmbeddedError> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| EmbeddedError::Io(format!("cannot find a free port: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_generated_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("slate-pw-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pw");
        let first = read_or_create_password(&path).unwrap();
        assert_eq!(first.len(), 32);
        assert_eq!(read_or_create_password(&path).unwrap(), first);
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_configured_directory_without_binaries_is_refused() {
        let err = find_binaries(Some(Path::new("/nonexistent"))).unwrap_err();
        assert!(
            err.to_string().contains("apt-get install postgresql"),
            "{err}"
        );
    }
}
