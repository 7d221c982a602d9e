//! The `slate` command line: `serve` (the default), `migrate`, `user create`,
//! `token create`, and `db` to reach the embedded database from scripts.

use std::io::{BufRead as _, IsTerminal as _};
use std::process::ExitCode;

use app::accounts::{Role, TokenScope};
use clap::{Parser, Subcommand};

use crate::audit::Who;
use crate::config::{Config, LogFormat};
use crate::db::Database;
use crate::startup::{shutdown_signal, Application};

#[derive(Debug, Parser)]
#[command(
    name = "slate",
    version,
    about = "Slate: the control plane of an AI film pipeline.",
    long_about = "Slate: the control plane of an AI film pipeline.\n\nEvery option can also be \
                  set with the environment variable shown next to it. Without DATABASE_URL, \
                  Slate runs a private PostgreSQL in $SLATE_DATA_DIR/postgres."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the web application (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The Colab endpoint's webhook.
    #[command(subcommand)]
    Colab(ColabCommand),
    /// The embedded PostgreSQL, for scripts and psql.
    #[command(subcommand)]
    Db(DbCommand),
}

#[derive(Debug, Subcommand)]
pub enum ColabCommand {
    /// Create a new webhook secret and print it once; the previous ones keep working for
    /// 24 hours, time to update the notebook.
    RotateSecret,
    /// Set the endpoint Slate fails over to when the current one stops answering (give
    /// no URL to clear it).
    SetFallback { url: Option<String> },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user. The password is read from the first line of standard input, or
    /// generated and printed once when standard input is a terminal or empty.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long, value_parser = ["creator", "lead", "admin"])]
        role: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token for a user and print its secret once.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = ["api", "ci", "colab"])]
        scope: String,
        /// Email of the user the token acts as.
        #[arg(long)]
        user: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Start the embedded PostgreSQL (if it is not running), migrate, and print its URL.
    Start,
    /// Stop the embedded PostgreSQL.
    Stop,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(&config).await,
        Command::Migrate => {
            let db = Database::open(&config).await?;
            let result = db.migrate().await;
            db.close(false).await;
            result?;
            println!("migrations applied");
            Ok(())
        }
        Command::User(UserCommand::Create { email, role }) => {
            let role: Role = role.parse()?;
            let (password, generated) = read_password()?;
            with_accounts(&config, |accounts| async move {
                let created = accounts
                    .create_user_as(&Who::cli(), &email, role, password)
                    .await?;
                println!("created {} ({})", created.user.email, created.user.role);
                if generated {
                    if let Some(p) = created.generated_password {
                        println!("password (shown once): {p}");
                    }
                }
                Ok(())
            })
            .await
        }
        Command::Token(TokenCommand::Create { name, scope, user }) => {
            let scope: TokenScope = scope.parse()?;
            with_accounts(&config, |accounts| async move {
                let created = accounts
                    .create_token_as(&Who::cli(), &name, scope, &user)
                    .await?;
                println!("{}", created.secret);
                Ok(())
            })
            .await
        }
        Command::Colab(ColabCommand::RotateSecret) => {
            let db = Database::open(&config).await?;
            let result = async {
                db.migrate().await?;
                let colab = crate::colab::Colab::new(
                    db.pool.clone(),
                    crate::comfyui::address::HostRules::parse(&config.colab_allowed_hosts, false),
                    std::time::Duration::from_secs(config.colab_verify_seconds.max(1)),
                );
                let secret = colab.rotate_secret(&Who::cli()).await?;
                println!("{secret}");
                anyhow::Ok(())
            }
            .await;
            db.close(false).await;
            result
        }
        Command::Colab(ColabCommand::SetFallback { url }) => {
            let db = Database::open(&config).await?;
            let result = async {
                db.migrate().await?;
                let colab = crate::colab::Colab::new(
                    db.pool.clone(),
                    crate::comfyui::address::HostRules::parse(&config.colab_allowed_hosts, false),
                    std::time::Duration::from_secs(config.colab_verify_seconds.max(1)),
                );
                match colab.set_fallback(&Who::cli(), url.as_deref()).await? {
                    Some(url) => {
                        println!("fallback set to {}", crate::comfyui::address::redact(&url))
                    }
                    None => println!("fallback cleared"),
                }
                anyhow::Ok(())
            }
            .await;
            db.close(false).await;
            result
        }
        Command::Db(DbCommand::Start) => {
            if config.database_url.is_some() {
                anyhow::bail!("DATABASE_URL is set: there is no embedded database to start");
            }
            let mut db = Database::open(&config).await?;
            db.migrate().await?;
            // Leave it running for whoever asked.
            if let Some(embedded) = db.embedded.as_mut() {
                embedded.started_here = false;
                println!("{}", embedded.url());
            }
            db.close(false).await;
            Ok(())
        }
        Command::Db(DbCommand::Stop) => {
            if config.database_url.is_some() {
                anyhow::bail!("DATABASE_URL is set: there is no embedded database to stop");
            }
            let db = Database::open(&config).await?;
            db.close(true).await;
            Ok(())
        }
    }
}

async fn serve(config: &Config) -> anyhow::Result<()> {
    let app = Application::build(config).await?;
    let url = match &config.public_url {
        Some(url) => url.to_string(),
        None => format!("http://{}/", app.addr()),
    };
    tracing::info!(%url, "Slate is listening");
    eprintln!("\n  Slate is running at {url}\n  Press Ctrl-C to stop.\n");
    app.run_until(shutdown_signal()).await
}

/// Opens the database (attaching to a running embedded server or starting one for the
/// duration of the command), migrates, runs `f`, and closes.
async fn with_accounts<F, Fut>(config: &Config, f: F) -> anyhow::Result<()>
where
    F: FnOnce(crate::accounts::Accounts) -> Fut,
    Fut: std::future::Future<Output = Result<(), app::error::AppError>>,
{
    let db = Database::open(config).await?;
    let result = async {
        db.migrate().await?;
        let accounts = crate::accounts::Accounts::open(&db, config);
        f(accounts).await.map_err(anyhow::Error::from)
    }
    .await;
    db.close(false).await;
    result
}

/// The password for `user create`: stdin's first line, or generated.
fn read_password() -> anyhow::Result<(Option<String>, bool)> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Ok((None, true));
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    let line = line.trim_end_matches(['\r', '\n']).to_owned();
    Ok(if line.is_empty() {
        (None, true)
    } else {
        (Some(line), false)
    })
}

#[cfg(test)]
mod reference_tests {
    //! docs/configuration.md embeds `slate --help`; this keeps the page equal to the
    //! options the binary really has.

    use clap::CommandFactory as _;

    use super::Cli;

    /// The long help as `scripts/config-reference` renders it: 100 columns, no styling,
    /// and no value from the caller's environment.
    fn rendered_help() -> String {
        // clap reads each `env` variable when the command is built and prints its value
        // as `[env: NAME=value]`. Hiding the value of the ones set here, then writing the
        // line as it reads when unset, keeps a developer's SLATE_LOG out of the result.
        let mut set_here = Vec::new();
        let mut command = Cli::command().term_width(100).mut_args(|arg| {
            let set = arg
                .get_env()
                .is_some_and(|name| std::env::var_os(name).is_some());
            if set && !arg.is_hide_env_values_set() {
                if let Some(name) = arg.get_env() {
                    set_here.push(name.to_string_lossy().into_owned());
                }
                arg.hide_env_values(true)
            } else {
                arg
            }
        });
        let mut help = command.render_long_help().to_string();
        for name in set_here {
            help = help.replace(&format!("[env: {name}]"), &format!("[env: {name}=]"));
        }
        help
    }

    #[test]
    fn configuration_page_matches_help() {
        let page = include_str!("../../docs/configuration.md");
        let help = rendered_help();
        assert!(
            page.contains(help.trim()),
            "docs/configuration.md no longer matches `slate --help`: run scripts/config-reference \
             and commit the page.\n--- slate --help now ---\n{help}"
        );
    }
}
