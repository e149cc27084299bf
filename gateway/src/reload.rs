//! Config reload (SIGHUP, or an admin's `reload` command): a new config's virtual JIDs,
//! mailboxes, menus and prompts take effect for new calls; calls in progress keep what they
//! started with (their endpoint holds its own settings and prompts). A config whose prompts or mailbox directories fail is refused and
//! the running one kept. Sections that need a restart (the XMPP link, media, servers, storage,
//! logging) are named in a warning and keep their running values.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigOrigin};
use crate::endpoint::EndpointFactory;
use crate::mailbox::Mailboxes;
use crate::metrics::Metrics;
use crate::routes::RouteTable;

/// What the router swaps in for new calls.
pub struct Reloaded {
    /// The new config's routes.
    pub routes: RouteTable,
    /// Their endpoints.
    pub endpoints: Arc<EndpointFactory>,
}

/// A request to read the config file again (an admin's command) and where the outcome goes:
/// the number of virtual JIDs it now has, or its problems.
pub type RereadRequest = oneshot::Sender<Result<usize, String>>;

/// Why a config was not taken.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// A value that validation should have caught, or a prompt that does not load.
    #[error("{0}")]
    Config(String),
    /// A mailbox directory cannot be used.
    #[error(transparent)]
    Voicemail(#[from] crate::mailbox::OpenError),
}

/// Applies configs from `configs` (SIGHUP's) and the config file read again for each of
/// `rereads` until `shutdown`, handing each one's parts to the router.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    mut running: Config,
    domain: String,
    voicemail: Arc<Mailboxes>,
    metrics: Arc<Metrics>,
    mut configs: mpsc::UnboundedReceiver<Config>,
    mut rereads: mpsc::UnboundedReceiver<RereadRequest>,
    router: mpsc::UnboundedSender<Reloaded>,
    shutdown: CancellationToken,
) {
    let mut signals = true;
    loop {
        let (new, reply) = tokio::select! {
            _ = shutdown.cancelled() => return,
            new = configs.recv(), if signals => match new {
                Some(new) => (Ok(new), None),
                None => {
                    signals = false;
                    continue;
                }
            },
            request = rereads.recv() => match request {
                Some(reply) => (reread(&running).await, Some(reply)),
                None => return,
            },
        };
        let outcome = match new {
            Ok(new) => match prepare(&running, &new, &domain, &voicemail, &metrics).await {
                Ok(reloaded) => {
                    let jids = reloaded.routes.virtual_jids.len();
                    tracing::info!(
                        virtual_jids = jids,
                        "config reloaded: new calls use it, calls in progress keep theirs"
                    );
                    if router.send(reloaded).is_err() {
                        return;
                    }
                    running = new;
                    Ok(jids)
                }
                Err(e) => Err(e.to_string()),
            },
            Err(problems) => Err(problems),
        };
        if let Err(problems) = &outcome {
            for line in problems.lines() {
                tracing::error!(problem = %line, "config reload refused; the running config is kept");
            }
        }
        if let Some(reply) = reply {
            let _ = reply.send(outcome);
        }
    }
}

/// The running config's file, read and validated again.
async fn reread(running: &Config) -> Result<Config, String> {
    let ConfigOrigin::File(path) = &running.origin else {
        return Err(
            "the gateway runs a config that is not from a file (the built-in \
                    example): there is no file to read again"
                .into(),
        );
    };
    let path = path.clone();
    tokio::task::spawn_blocking(move || Config::load(&path, &crate::endpoint::KINDS))
        .await
        .map_err(|e| format!("reading the config failed: {e}"))?
        .map_err(|errors| errors.to_string())
}

async fn prepare(
    running: &Config,
    new: &Config,
    domain: &str,
    voicemail: &Arc<Mailboxes>,
    metrics: &Metrics,
) -> Result<Reloaded, ReloadError> {
    let restart = needs_restart(running, new);
    if !restart.is_empty() {
        tracing::warn!(
            sections = %restart.join(", "),
            "these settings changed but take effect only after a restart"
        );
    }
    let loading = new.clone();
    let prompts =
        tokio::task::spawn_blocking(move || crate::prompt::PromptLibrary::for_config(&loading))
            .await
            .map_err(|e| ReloadError::Config(format!("loading prompts failed: {e}")))?
            .map_err(|errors| ReloadError::Config(errors.to_string()))?;
    let prompts = Arc::new(prompts);
    let routes = RouteTable::from_config(new, domain).map_err(ReloadError::Config)?;
    // The last step that can fail: once mailboxes are swapped, the rest is swapped too.
    voicemail.reload(new)?;
    metrics.set_prompts(prompts.clone());
    let endpoints = Arc::new(EndpointFactory::new(new, prompts, voicemail.clone()));
    Ok(Reloaded { routes, endpoints })
}

/// The sections whose changes a reload does not apply.
fn needs_restart(running: &Config, new: &Config) -> Vec<&'static str> {
    let mut sections = Vec::new();
    let mut check = |name, changed: bool| {
        if changed {
            sections.push(name);
        }
    };
    check("xmpp", running.xmpp != new.xmpp);
    // The `callers` lists are taken on reload (with the endpoints); the limits are not.
    let limits = |calls: &crate::config::CallsConfig| crate::config::CallsConfig {
        callers: Vec::new(),
        ..calls.clone()
    };
    check("calls", limits(&running.calls) != limits(&new.calls));
    check("media", running.media != new.media);
    check("storage", running.storage != new.storage);
    check("log", running.log != new.log);
    check("voicemail", running.voicemail != new.voicemail);
    check("http", running.http != new.http);
    check("metrics", running.metrics != new.metrics);
    sections
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_that_need_a_restart_are_named() {
        let base =
            "[xmpp]\ndomain = \"gw.test\"\nsecret = \"s\"\n[endpoints.echo]\nkind = \"echo\"\n";
        let running = Config::from_toml_str(base, Vec::new(), &crate::endpoint::KINDS).unwrap();
        let new = Config::from_toml_str(
            &format!("{base}[endpoints.other]\nkind = \"echo\"\n[media]\nport = 10001\n"),
            Vec::new(),
            &crate::endpoint::KINDS,
        )
        .unwrap();
        assert_eq!(needs_restart(&running, &new), ["media"]);
        assert!(needs_restart(&running, &running).is_empty());
    }
}
