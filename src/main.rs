//! The `gatehouse` command line.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use gatehouse::settings::{DEMO_PASSWORD, DEMO_USERNAME};
use gatehouse::types::Issuer;
use gatehouse::{Core, Settings};

#[derive(Parser)]
#[command(name = "gatehouse", version, about = "An identity federation broker speaking OpenID Connect")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve. Without --config: the embedded default (memory store, demo client and user).
    Serve {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Address to listen on (overrides `listen`).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Public issuer URL (overrides `issuer`).
        #[arg(long)]
        issuer: Option<String>,
        /// Worker threads (default: one per core).
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Check a configuration file and print every problem; exit code 1 if there is any.
    CheckConfig { file: PathBuf },
    /// Signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Hash a password (read from stdin) for a static user's `password_hash`.
    HashPassword,
    /// Actions: sandboxed JavaScript in the login pipeline.
    Actions {
        #[command(subcommand)]
        command: ActionsCommand,
    },
}

#[derive(Subcommand)]
enum ActionsCommand {
    /// Run one action outside the server on an event and print what it asked for as JSON.
    Test {
        /// The action's JavaScript file.
        file: PathBuf,
        /// The `event` as a JSON file.
        #[arg(long)]
        event: PathBuf,
        /// post-login, credentials-exchange or pre-user-registration.
        #[arg(long, default_value = "post-login")]
        trigger: String,
        /// A secret for `event.secrets`, as NAME=VALUE (repeatable); overrides the event
        /// file's `secrets` of the same name.
        #[arg(long = "secret")]
        secrets: Vec<String>,
        /// Run the continue step (`onContinuePostLogin`) instead, as if the person came back to
        /// `/continue` with this query (`state=...&session_token=...`).
        #[arg(long = "continue")]
        continue_query: Option<String>,
        /// A host `fetch` may reach (repeatable); without one there is no `fetch`.
        #[arg(long = "allow-host")]
        allow_hosts: Vec<String>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Add a new signing key in front of the ring; older keys keep verifying.
    Rotate {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

fn load(config: Option<&PathBuf>) -> Result<Settings, String> {
    match config {
        Some(path) => Settings::from_file(path).map_err(|e| format!("{}:\n{e}", path.display())),
        None => Ok(Settings::embedded()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, listen, issuer, workers } => serve(config, listen, issuer, workers),
        Command::CheckConfig { file } => check_config(&file),
        Command::Keys { command: KeysCommand::Rotate { config } } => rotate(config),
        Command::HashPassword => hash_password(),
        Command::Actions {
            command: ActionsCommand::Test { file, event, trigger, secrets, allow_hosts, continue_query },
        } => test_action(&file, &event, &trigger, &secrets, &allow_hosts, continue_query.as_deref()),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime")
}

fn serve(
    config: Option<PathBuf>,
    listen: Option<std::net::SocketAddr>,
    issuer: Option<String>,
    workers: Option<usize>,
) -> ExitCode {
    let started = Instant::now();
    let embedded = config.is_none();
    let mut settings = match load(config.as_ref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    gatehouse::telemetry::init_logging(settings.log.json, &settings.log.filter);
    if let Some(addr) = listen {
        settings.listen = addr;
        if embedded && issuer.is_none() {
            settings = settings.clone().with_issuer(Issuer::parse(&format!("http://{addr}")).expect("address URL"));
        }
    }
    if let Some(i) = issuer {
        match Issuer::parse(&i) {
            Ok(i) => settings = settings.with_issuer(i),
            Err(e) => {
                eprintln!("--issuer: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let listener = match TcpListener::bind(settings.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {}: {e}", settings.listen);
            return ExitCode::FAILURE;
        }
    };
    let workers = workers.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let rt = runtime();
    rt.block_on(async move {
        let core = match Core::build(settings).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        };
        let issuer = core.settings.issuer.clone();
        tracing::info!(issuer = %issuer, kid = %core.keys.ring().current().kid, startup_ms = started.elapsed().as_millis() as u64, "gatehouse is ready");
        if embedded {
            println!("Gatehouse is running on the embedded default (memory store; keys in {}).", core.settings.data_dir.display());
            println!("  Issuer:    {issuer}");
            println!("  Discovery: {issuer}/.well-known/openid-configuration");
            println!("  Demo app:  {issuer}/demo");
            println!("  Demo user: {DEMO_USERNAME} / {DEMO_PASSWORD}");
        }
        tokio::spawn(core.clone().upkeep());
        match gatehouse::http::serve(core, listener, workers).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("server error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn check_config(file: &std::path::Path) -> ExitCode {
    let settings = match Settings::from_file(file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{}: {} problem(s)\n{e}", file.display(), e.0.len());
            return ExitCode::FAILURE;
        }
    };
    if let Err(errors) = gatehouse::connections::Connections::open(&settings) {
        eprintln!("{}: {} problem(s)", file.display(), errors.len());
        for e in errors {
            eprintln!("{e}");
        }
        return ExitCode::FAILURE;
    }
    println!(
        "{}: ok ({} clients, {} connections, {} apis)",
        file.display(),
        settings.clients.len(),
        settings.connections.len(),
        settings.apis.len()
    );
    ExitCode::SUCCESS
}

fn rotate(config: Option<PathBuf>) -> ExitCode {
    let settings = match load(config.as_ref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    runtime().block_on(async move {
        let store = match gatehouse::state::store_for(&settings).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        };
        let now = gatehouse::clock::Clock::now(&gatehouse::clock::SystemClock);
        match gatehouse::state::rotate_keys(&store, &settings, now).await {
            Ok(ring) => {
                println!(
                    "new signing key {} ({}); the JWKS now holds {} key(s)",
                    ring.keys[0].kid,
                    ring.keys[0].alg,
                    ring.keys.len()
                );
                println!("running nodes pick it up within {} seconds", gatehouse::state::KEY_POLL.as_secs());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn hash_password() -> ExitCode {
    let mut password = String::new();
    if std::io::stdin().read_line(&mut password).is_err() {
        eprintln!("cannot read the password from stdin");
        return ExitCode::FAILURE;
    }
    let password = password.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        eprintln!("the password is empty");
        return ExitCode::FAILURE;
    }
    match gatehouse_connector_static::hash_password(password) {
        Ok(h) => {
            println!("{h}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn test_action(
    file: &std::path::Path,
    event: &std::path::Path,
    trigger: &str,
    secrets: &[String],
    allow_hosts: &[String],
    continue_query: Option<&str>,
) -> ExitCode {
    use gatehouse::actions::{Action, Actions, Trigger, sandbox};
    let fail = |msg: String| {
        eprintln!("{msg}");
        ExitCode::FAILURE
    };
    let Some(trigger) = Trigger::parse(trigger) else {
        return fail(format!(
            "--trigger: {trigger} is not one of post-login, credentials-exchange, pre-user-registration"
        ));
    };
    if continue_query.is_some() && trigger != Trigger::PostLogin {
        return fail("--continue is for the post-login trigger".into());
    }
    let source = match std::fs::read_to_string(file) {
        Ok(s) => s,
        Err(e) => return fail(format!("{}: {e}", file.display())),
    };
    let mut event: serde_json::Value = match std::fs::read(event)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(v) => v,
        Err(e) => return fail(format!("{}: {e}", event.display())),
    };
    // The event file's secrets first, then the flags (a flag wins).
    let mut named = std::collections::BTreeMap::new();
    if let Some(file_secrets) = event.get("secrets").and_then(|s| s.as_object()) {
        for (k, v) in file_secrets {
            let Some(v) = v.as_str() else { return fail(format!("event.secrets.{k}: must be a string")) };
            named.insert(k.clone(), v.to_owned());
        }
    }
    for s in secrets {
        match s.split_once('=') {
            Some((k, v)) => named.insert(k.to_owned(), v.to_owned()),
            None => return fail(format!("--secret {s}: expected NAME=VALUE")),
        };
    }
    let parsed = named.into_iter().map(|(k, v)| (k, gatehouse::types::Secret::new(v))).collect();
    let continuing = continue_query.map(|q| {
        let params: std::collections::BTreeMap<String, String> =
            url::form_urlencoded::parse(q.as_bytes()).into_owned().collect();
        event["request"]["query"] =
            params.iter().map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str()))).collect();
        let state = params.get("state").cloned().unwrap_or_else(String::new);
        gatehouse::actions::Continue { state, params }
    });
    let limits = sandbox::Limits::default();
    if let Err(e) = sandbox::check(&source, trigger.handler(), limits, &Default::default()) {
        return fail(format!("{}: {e}", file.display()));
    }
    let action = Action {
        name: file.display().to_string(),
        path: file.to_owned(),
        source: source.into(),
        secrets: parsed,
        allow_hosts: allow_hosts.to_vec(),
    };
    let mut actions = Actions { limits, ..Default::default() };
    match trigger {
        Trigger::PostLogin => actions.post_login.push(action),
        Trigger::CredentialsExchange => actions.credentials_exchange.push(action),
        Trigger::PreUserRegistration => actions.pre_user_registration.push(action),
    }
    runtime().block_on(async move {
        // A throwaway cache: the runner starts every action with an empty one.
        let clock: gatehouse::clock::SharedClock = std::sync::Arc::new(gatehouse::clock::SystemClock);
        let cache = gatehouse::store::memory::MemoryStore::new(clock.clone());
        let ran = match continuing {
            Some(c) => gatehouse::actions::resume(&actions, &event, &cache, &clock, 0, c).await,
            None => gatehouse::actions::run(&actions, trigger, &event, &cache, &clock).await,
        };
        match ran {
            Ok(effects) => {
                let out = serde_json::json!({
                    "id_token_claims": effects.claims.id_token,
                    "access_token_claims": effects.claims.access_token,
                    "added_scopes": effects.claims.add_scopes,
                    "removed_scopes": effects.claims.remove_scopes,
                    "app_metadata": effects.app_metadata,
                    "user_metadata": effects.user_metadata,
                    "denied": effects.deny,
                    "redirect": effects.redirect.map(|(r, _)| serde_json::json!({ "url": r.url, "query": r.query })),
                    "primary_user": effects.primary_user,
                });
                println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
                ExitCode::SUCCESS
            }
            Err(e) => fail(format!("{e}")),
        }
    })
}
