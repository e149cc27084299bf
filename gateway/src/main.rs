//! The `jingle-gateway` binary: parses the command line, loads and validates the config, sets up
//! logging and runs the gateway until SIGTERM or Ctrl-C; SIGHUP reads the config file again.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use jingle_gateway::config::{Config, ConfigErrors, ConfigOrigin, LogFormat, EXAMPLE_CONFIG};
use tokio_util::sync::CancellationToken;

const USAGE: &str = "\
usage: jingle-gateway [--config PATH]     run the gateway (without --config: the built-in
                                          example config, for a server on localhost:5347)
       jingle-gateway check-config PATH   validate a config and list every problem
       jingle-gateway devices             list sound devices by the names config accepts
       jingle-gateway --help | --version

Any config key can be overridden as GATEWAY_<SECTION>_<KEY>, e.g. GATEWAY_XMPP_SECRET.";

enum Command {
    Run(Option<PathBuf>),
    CheckConfig(PathBuf),
    Devices,
    Help,
    Version,
}

fn parse_args(args: &[String]) -> Result<Command, String> {
    match args {
        [] => Ok(Command::Run(None)),
        [flag] if flag == "--help" || flag == "-h" => Ok(Command::Help),
        [flag] if flag == "--version" || flag == "-V" => Ok(Command::Version),
        [command] if command == "devices" => Ok(Command::Devices),
        [flag, path] if flag == "--config" || flag == "-c" => Ok(Command::Run(Some(path.into()))),
        [command, path] if command == "check-config" => Ok(Command::CheckConfig(path.into())),
        _ => Err(format!("unexpected arguments: {}", args.join(" "))),
    }
}

fn load(path: Option<&PathBuf>) -> Result<Config, ConfigErrors> {
    match path {
        Some(path) => Config::load(path, &jingle_gateway::endpoint::KINDS),
        None => {
            let mut config = Config::from_toml_str(
                EXAMPLE_CONFIG,
                std::env::vars(),
                &jingle_gateway::endpoint::KINDS,
            )?;
            config.origin = ConfigOrigin::Builtin;
            Ok(config)
        }
    }
}

fn print_errors(errors: &ConfigErrors) {
    for error in &errors.0 {
        eprintln!("config error: {error}");
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match parse_args(&args) {
        Ok(command) => command,
        Err(message) => {
            eprintln!("{message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!(
                "jingle-gateway {} (commit {})",
                env!("CARGO_PKG_VERSION"),
                env!("JINGLE_GATEWAY_COMMIT")
            );
            ExitCode::SUCCESS
        }
        Command::Devices => list_devices(),
        Command::CheckConfig(path) => {
            match Config::load(&path, &jingle_gateway::endpoint::KINDS)
                .and_then(|c| jingle_gateway::prompt::PromptLibrary::for_config(&c).map(|_| c))
            {
                Ok(config) => {
                    println!(
                        "{}: valid ({} virtual JIDs on {})",
                        path.display(),
                        config.endpoints.len(),
                        config.xmpp.domain.as_deref().unwrap_or_default()
                    );
                    ExitCode::SUCCESS
                }
                Err(errors) => {
                    print_errors(&errors);
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run(path) => {
            let config = match load(path.as_ref()) {
                Ok(config) => config,
                Err(errors) => {
                    print_errors(&errors);
                    return ExitCode::FAILURE;
                }
            };
            match serve(config, path) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

#[cfg(feature = "sound")]
fn list_devices() -> ExitCode {
    match jingle_gateway::sound::list_devices() {
        Ok(devices) => {
            print!("{devices}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(feature = "sound"))]
fn list_devices() -> ExitCode {
    eprintln!("error: this build has no sound support (build with the `sound` feature)");
    ExitCode::FAILURE
}

fn serve(config: Config, path: Option<PathBuf>) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(config.log.filter()));
    // Colour only on a terminal: log files and journald get plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::env::var_os("NO_COLOR").is_none();
    match config.log.format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_ansi(colour)
            .with_env_filter(filter)
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_env_filter(filter)
            .init(),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        let (reloads, reload_rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(reload_on_sighup(path, reloads));
        jingle_gateway::run_with_reloads(config, shutdown, Default::default(), reload_rx).await
    })?;
    Ok(())
}

/// Reads the config file again on each SIGHUP and hands it to the gateway; a config with
/// problems is refused (each one logged with its key) and the running one kept.
async fn reload_on_sighup(
    path: Option<PathBuf>,
    reloads: tokio::sync::mpsc::UnboundedSender<Config>,
) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGHUP: config reload is off");
                return;
            }
        };
        while hangups.recv().await.is_some() {
            let Some(path) = &path else {
                tracing::warn!("SIGHUP: running the built-in config; there is no file to reload");
                continue;
            };
            tracing::info!(path = %path.display(), "SIGHUP: reading the config again");
            match Config::load(path, &jingle_gateway::endpoint::KINDS) {
                Ok(config) => {
                    if reloads.send(config).is_err() {
                        return;
                    }
                }
                Err(errors) => {
                    for error in &errors.0 {
                        tracing::error!(problem = %error, "config reload refused; the running config is kept");
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (path, reloads);
}

/// Cancels `shutdown` on SIGTERM or Ctrl-C.
async fn stop_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(term) => term,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; Ctrl-C still stops the gateway");
                let _ = ctrl_c.await;
                shutdown.cancel();
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("stop requested");
    shutdown.cancel();
}
