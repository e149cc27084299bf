//! jingle-gateway: an XEP-0114 component that answers Jingle audio calls for virtual JIDs.
//!
//! `main.rs` parses the command line, loads the config and calls [`run`]; tests call the same
//! [`run`].

pub mod admin;
pub mod call;
pub mod config;
pub mod endpoint;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod jingle;
pub mod mailbox;
pub mod media;
pub mod metrics;
pub mod prompt;
pub mod protocol;
pub mod rate;
pub mod reload;
mod router;
pub mod routes;
#[cfg(feature = "sound")]
pub mod sound;
pub mod systemd;
pub mod types;
pub mod xmpp;

#[cfg(test)]
mod testing;

use std::time::Duration;

use jid::BareJid;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use config::Config;
use endpoint::EndpointFactory;
use jingle::{CallLimits, Signalling, SignallingConfig};
use media::engine::{MediaEngine, MediaStartError};
use media::stats::MediaStats;
use router::{Ids, RouterCore, RouterCoreParts, RouterExit, RouterParts};
use std::sync::Arc;
use xmpp::link::{run_link, LinkConfig};
use xmpp::subscribers::Subscribers;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A value that validation should have caught.
    #[error("config: {0}")]
    Config(String),
    /// The media engine could not start.
    #[error(transparent)]
    Media(#[from] MediaStartError),
    /// An HTTP server cannot listen.
    #[error("{key} {addr}: {source}")]
    Http {
        /// The config key.
        key: &'static str,
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A mailbox directory cannot be used.
    #[error(transparent)]
    Voicemail(#[from] mailbox::OpenError),
    /// The data directory cannot be used.
    #[error("storage.data_dir {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The component link's task ended without being asked to (it failed): the calls were
    /// ended, and a supervisor should start the gateway again.
    #[error("the component link stopped unexpectedly")]
    LinkStopped,
}

/// Runs the gateway with a validated `config` until `shutdown` is cancelled, then ends every
/// call with a Jingle reason and closes the stream. Media counters go to `stats`.
pub async fn run(
    config: Config,
    shutdown: CancellationToken,
    stats: Arc<MediaStats>,
) -> Result<(), RunError> {
    run_with_reloads(config, shutdown, stats, mpsc::unbounded_channel().1).await
}

/// [`run`], taking each config from `reloads` (validated, as `Config::load` gives it) for new
/// calls: virtual JIDs, mailboxes, menus and prompts.
pub async fn run_with_reloads(
    config: Config,
    shutdown: CancellationToken,
    stats: Arc<MediaStats>,
    reloads: mpsc::UnboundedReceiver<Config>,
) -> Result<(), RunError> {
    if !config.ignored_env.is_empty() {
        tracing::warn!(
            variables = %config.ignored_env.join(", "),
            "ignoring GATEWAY_ environment variables that name no config section"
        );
    }
    let (Some(domain), Some(secret)) = (config.xmpp.domain.clone(), config.xmpp.secret.clone())
    else {
        return Err(RunError::Config(
            "xmpp.domain and xmpp.secret are required".into(),
        ));
    };
    let domain_jid =
        BareJid::new(&domain).map_err(|e| RunError::Config(format!("xmpp.domain: {e}")))?;
    let data_dir = config.storage.data_dir.clone();
    let data_dir_error = |source| RunError::DataDir {
        path: data_dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&data_dir).map_err(data_dir_error)?;
    let subscribers = Subscribers::load(&data_dir.join("subscribers"), config.local_domains())
        .map_err(data_dir_error)?;

    let routes = routes::RouteTable::from_config(&config, &domain).map_err(RunError::Config)?;

    let prompts = Arc::new(
        prompt::PromptLibrary::for_config(&config)
            .map_err(|errors| RunError::Config(errors.to_string()))?,
    );
    let metrics = Arc::new(
        metrics::Metrics::new()
            .with_media(stats.clone())
            .with_storage(data_dir.clone()),
    );
    metrics.set_prompts(prompts.clone());
    let (mailboxes, undelivered) = mailbox::Mailboxes::open(&config, metrics.clone())?;
    let recordings_server = bind_http(
        "http.bind",
        config.http.bind,
        config.http.public_url.as_deref(),
    )
    .await?;
    let metrics_shares = config.metrics.bind.is_some() && config.metrics.bind == config.http.bind;
    let metrics_server = match metrics_shares {
        true => None,
        false => bind_http("metrics.bind", config.metrics.bind, None).await?,
    };
    let engine = Arc::new(MediaEngine::start(&config.media, stats).await?);
    let endpoints = Arc::new(EndpointFactory::new(&config, prompts, mailboxes.clone()));
    let core = Signalling::new(SignallingConfig {
        domain: domain.clone(),
        virtual_jids: routes.admission.clone(),
        limits: CallLimits {
            max_calls: config.calls.max_calls as usize,
            max_calls_per_jid: config.calls.max_calls_per_jid as usize,
            max_calls_per_caller: config.calls.max_calls_per_caller as usize,
            max_calls_per_domain: config.calls.max_calls_per_domain as usize,
            per_caller: rate::Rate::per_minute(config.calls.calls_per_caller_per_minute),
            per_domain: rate::Rate::per_minute(config.calls.calls_per_domain_per_minute),
        },
        local_domains: config.local_domains(),
        ring_timeout: config.calls.ring_timeout.0,
        answer_timeout: config.calls.answer_timeout.0,
        max_duration: config.calls.max_duration.0,
        fingerprint_sha256: engine.certificate.fingerprint_sha256.clone(),
        prefer_dtls_active: engine.prefer_dtls_active,
        resource: "gateway".into(),
        iq_id_prefix: format!("gw{:x}-", rand::random::<u32>()),
    });

    let services = CancellationToken::new();
    let (xmpp, requests, online) = xmpp::requests::XmppHandle::new();
    let xmpp_handle = xmpp.clone();
    let delivery = mailbox::delivery::DeliveryConfig {
        domain: domain.clone(),
        upload: mailbox::upload::UploadSetting::from_config(&config.voicemail.upload, &domain),
        base_url: recordings_server
            .as_ref()
            .map(|server| server.base_url().to_string()),
    };
    let (reloaded, reloaded_rx) = mpsc::unbounded_channel();
    let (rereads, rereads_rx) = mpsc::unbounded_channel();
    let mut background = vec![
        tokio::spawn(mailbox::delivery::run(
            mailboxes.clone(),
            undelivered,
            xmpp,
            delivery,
            services.clone(),
        )),
        tokio::spawn(reload::run(
            config.clone(),
            domain.clone(),
            mailboxes.clone(),
            metrics.clone(),
            reloads,
            rereads_rx,
            reloaded,
            services.clone(),
        )),
    ];
    if let Some(server) = recordings_server {
        tracing::info!(url = %server.base_url(), metrics = metrics_shares, "serving recordings over HTTP");
        let site = http::Site {
            recordings: Some(mailboxes.clone()),
            metrics: metrics_shares.then(|| metrics.clone()),
        };
        background.push(tokio::spawn(server.serve(site, services.clone())));
    }
    if let Some(server) = metrics_server {
        tracing::info!(url = %server.base_url(), "serving /metrics and /health");
        let site = http::Site {
            recordings: None,
            metrics: Some(metrics.clone()),
        };
        background.push(tokio::spawn(server.serve(site, services.clone())));
    }

    let link_config = LinkConfig {
        host: config.xmpp.host.clone(),
        port: config.xmpp.port,
        domain,
        secret,
        reconnect_min: config.xmpp.reconnect_min.0,
        reconnect_max: config.xmpp.reconnect_max.0,
        keepalive: config.xmpp.keepalive.0,
        timeout: config.xmpp.timeout.0,
    };
    let (event_tx, event_rx) = mpsc::channel(1024);
    let (outbox, outbound_rx) = xmpp::outbox::outbox();
    let link_stop = CancellationToken::new();
    let mut link = tokio::spawn(run_link(
        link_config,
        event_tx,
        outbound_rx,
        link_stop.clone(),
    ));

    let core = RouterCore::new(RouterCoreParts {
        domain: domain_jid,
        name: config.xmpp.name.clone(),
        routes,
        jingle: core,
        subscribers,
        voicemail: mailboxes.clone(),
        metrics: metrics.clone(),
        ids: Ids::new(format!("{:x}-", rand::random::<u32>())),
    });
    let parts = RouterParts {
        core,
        calls: call::Calls::new(engine.clone(), endpoints, metrics.clone()),
        mailboxes: mailboxes.clone(),
        metrics,
        requests,
        online,
        reloads: reloaded_rx,
        rereads,
        xmpp: xmpp_handle.clone(),
    };
    let mut supervisor = tokio::spawn(systemd::report(xmpp_handle, shutdown.clone()));
    let exit = router::run(parts, event_rx, outbox, shutdown.clone()).await;
    // systemd hears STOPPING=1 before the process goes (the reporter may not have run since
    // the shutdown began; after a lost link, this is when the gateway starts stopping).
    shutdown.cancel();
    if tokio::time::timeout(Duration::from_secs(1), &mut supervisor)
        .await
        .is_err()
    {
        supervisor.abort();
    }
    services.cancel();
    for task in background {
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    }
    // The router dropped its sender: the link sends what is queued, then closes the stream.
    if tokio::time::timeout(Duration::from_secs(3), &mut link)
        .await
        .is_err()
    {
        link_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(1), link).await;
    }
    engine.close().await;
    match exit {
        RouterExit::Shutdown => {
            tracing::info!("stopped");
            Ok(())
        }
        RouterExit::LinkGone => Err(RunError::LinkStopped),
    }
}

/// Binds the HTTP server configured at `key`, if there is one.
async fn bind_http(
    key: &'static str,
    bind: Option<std::net::SocketAddr>,
    public_url: Option<&str>,
) -> Result<Option<http::HttpServer>, RunError> {
    let Some(addr) = bind else {
        return Ok(None);
    };
    http::HttpServer::bind(addr, public_url)
        .await
        .map(Some)
        .map_err(|source| RunError::Http { key, addr, source })
}
