//! Prometheus metrics (OpenMetrics text at `/metrics`) and the health the `/health` check
//! reports. The parts of the gateway record into one shared [`Metrics`]; counters that already
//! live elsewhere (the media engine's, the prompt cache's size) are read at each scrape.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::media::stats::MediaStats;
use crate::prompt::PromptLibrary;
use crate::xmpp::outbox::Lane;
use crate::xmpp::stream::scanner::Limit;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FinishedLabels {
    endpoint: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    via: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LaneLabels {
    lane: String,
}

/// The `reason` of a stanza dropped because it is not valid (the others are the read limits').
pub const STANZA_INVALID: &str = "invalid";

/// The `via` of a voicemail message delivered with a link to the server's upload service.
pub const DELIVERED_BY_UPLOAD: &str = "upload";
/// The `via` of a voicemail message delivered with a link to the gateway's own HTTP server.
pub const DELIVERED_BY_GATEWAY: &str = "gateway";

/// Every metric of the gateway.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    calls_active: Family<EndpointLabels, Gauge>,
    calls_finished: Family<FinishedLabels, Counter>,
    setup_seconds: Histogram,
    first_media_seconds: Histogram,
    packets_lost: Counter,
    packets_fec_recovered: Counter,
    packets_late: Counter,
    jitter_seconds: Histogram,
    recordings: Counter,
    deliveries: Family<DeliveryLabels, Counter>,
    undelivered: Gauge,
    connected: Gauge,
    connected_flag: AtomicBool,
    connections: Counter,
    calls_placed: Counter,
    stanzas_dropped: Family<ReasonLabels, Counter>,
    stanzas_not_sent: Family<LaneLabels, Counter>,
    prompts: Arc<RwLock<Option<Arc<PromptLibrary>>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The gateway's own metrics, registered under the prefix `jingle_gateway`.
    pub fn new() -> Self {
        let mut metrics = Self {
            registry: Registry::with_prefix("jingle_gateway"),
            calls_active: Family::default(),
            calls_finished: Family::default(),
            // 5 ms to about 10 s.
            setup_seconds: Histogram::new(exponential_buckets(0.005, 2.0, 12)),
            first_media_seconds: Histogram::new(exponential_buckets(0.005, 2.0, 12)),
            packets_lost: Counter::default(),
            packets_fec_recovered: Counter::default(),
            packets_late: Counter::default(),
            // 1 ms to about 0.5 s.
            jitter_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 10)),
            recordings: Counter::default(),
            deliveries: Family::default(),
            undelivered: Gauge::default(),
            connected: Gauge::default(),
            connected_flag: AtomicBool::new(false),
            connections: Counter::default(),
            calls_placed: Counter::default(),
            stanzas_dropped: Family::default(),
            stanzas_not_sent: Family::default(),
            prompts: Arc::default(),
        };
        // Every known label at zero, so that rates and alerts see the first one.
        let reasons = Limit::ALL.map(Limit::as_str);
        for reason in reasons.into_iter().chain([STANZA_INVALID]) {
            metrics.stanza_dropped_family(reason);
        }
        for lane in Lane::ALL {
            metrics.stanza_not_sent_family(lane.as_str());
        }
        for via in [DELIVERED_BY_UPLOAD, DELIVERED_BY_GATEWAY] {
            let _zero = metrics.deliveries.get_or_create(&DeliveryLabels {
                via: via.to_string(),
            });
        }
        let prompts = PromptCollector(metrics.prompts.clone());
        metrics.registry.register_collector(Box::new(prompts));
        let r = &mut metrics.registry;
        r.register(
            "calls_active",
            "Calls in progress, by endpoint (virtual JID)",
            metrics.calls_active.clone(),
        );
        r.register(
            "calls_finished",
            "Calls ended or refused after their session-initiate, by endpoint and reason",
            metrics.calls_finished.clone(),
        );
        r.register(
            "call_setup_seconds",
            "From session-initiate to the gateway's session-accept",
            metrics.setup_seconds.clone(),
        );
        r.register(
            "call_first_media_seconds",
            "From the gateway's session-accept to the caller's first audio packet",
            metrics.first_media_seconds.clone(),
        );
        r.register(
            "packets_lost",
            "Received audio packets that never came (concealed or recovered), over ended calls",
            metrics.packets_lost.clone(),
        );
        r.register(
            "packets_fec_recovered",
            "Lost audio packets recovered from the next packet's in-band FEC, over ended calls",
            metrics.packets_fec_recovered.clone(),
        );
        r.register(
            "packets_late",
            "Received audio packets that came too late to play, over ended calls",
            metrics.packets_late.clone(),
        );
        r.register(
            "call_jitter_seconds",
            "Interarrival jitter of each ended call (RFC 3550)",
            metrics.jitter_seconds.clone(),
        );
        r.register(
            "recordings_written",
            "Voicemail messages recorded and kept",
            metrics.recordings.clone(),
        );
        r.register(
            "recordings_delivered",
            "Voicemail messages sent to their owners, by where the URL points (upload, gateway)",
            metrics.deliveries.clone(),
        );
        r.register(
            "voicemail_undelivered",
            "Voicemail messages recorded and not yet delivered to their owners",
            metrics.undelivered.clone(),
        );
        r.register(
            "component_connected",
            "1 while the component is connected to the XMPP server",
            metrics.connected.clone(),
        );
        r.register(
            "component_connections",
            "Times the component connected (the first time, then each reconnect)",
            metrics.connections.clone(),
        );
        r.register(
            "calls_placed",
            "Calls the gateway placed (IVR connect, follow-me), each target rung counted once",
            metrics.calls_placed.clone(),
        );
        r.register(
            "stanzas_dropped",
            "Stanzas received and not used, by reason (a read limit: depth, size, name, \
             attribute, attributes, text; or invalid)",
            metrics.stanzas_dropped.clone(),
        );
        r.register(
            "stanzas_not_sent",
            "Stanzas not sent because the link's queue was full, by lane (signalling, bulk)",
            metrics.stanzas_not_sent.clone(),
        );
        metrics
    }

    /// A stanza received was not used, for `reason`.
    pub fn stanza_dropped(&self, reason: &str) {
        self.stanza_dropped_family(reason).inc();
    }

    fn stanza_dropped_family(&self, reason: &str) -> Counter {
        self.stanzas_dropped
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .clone()
    }

    /// A stanza was not sent: the `lane` of the link's queue was full.
    pub fn stanza_not_sent(&self, lane: &str) {
        self.stanza_not_sent_family(lane).inc();
    }

    fn stanza_not_sent_family(&self, lane: &str) -> Counter {
        self.stanzas_not_sent
            .get_or_create(&LaneLabels {
                lane: lane.to_string(),
            })
            .clone()
    }

    /// The gateway placed a call.
    pub fn call_placed(&self) {
        self.calls_placed.inc();
    }

    /// Also reports the media engine's counters.
    pub fn with_media(mut self, media: Arc<MediaStats>) -> Self {
        self.registry
            .register_collector(Box::new(MediaCollector(media)));
        self
    }

    /// Also reports the free and total space of the file system holding `data_dir`.
    pub fn with_storage(mut self, data_dir: PathBuf) -> Self {
        self.registry
            .register_collector(Box::new(StorageCollector(data_dir)));
        self
    }

    /// Reports the size of this prompt library's cache (the one new calls use).
    pub fn set_prompts(&self, prompts: Arc<PromptLibrary>) {
        *self.prompts.write().unwrap_or_else(|e| e.into_inner()) = Some(prompts);
    }

    /// A call to `endpoint` started.
    pub fn call_started(&self, endpoint: &str) {
        self.calls_active
            .get_or_create(&EndpointLabels {
                endpoint: endpoint.to_string(),
            })
            .inc();
    }

    /// A call to `endpoint` ended (`was_active`: it had started) for `reason`.
    pub fn call_ended(&self, endpoint: &str, reason: &str, was_active: bool) {
        if was_active {
            self.calls_active
                .get_or_create(&EndpointLabels {
                    endpoint: endpoint.to_string(),
                })
                .dec();
        }
        self.calls_finished
            .get_or_create(&FinishedLabels {
                endpoint: endpoint.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Time from session-initiate to session-accept.
    pub fn setup(&self, took: Duration) {
        self.setup_seconds.observe(took.as_secs_f64());
    }

    /// Time from session-accept to the first audio packet.
    pub fn first_media(&self, took: Duration) {
        self.first_media_seconds.observe(took.as_secs_f64());
    }

    /// What a call's receiving side saw, at its end.
    pub fn call_media(&self, lost: u64, fec_recovered: u64, late: u64, jitter_ms: f64) {
        self.packets_lost.inc_by(lost);
        self.packets_fec_recovered.inc_by(fec_recovered);
        self.packets_late.inc_by(late);
        self.jitter_seconds.observe(jitter_ms / 1000.0);
    }

    /// A voicemail message was recorded and kept.
    pub fn recording_written(&self) {
        self.recordings.inc();
    }

    /// A voicemail message was sent to its owners, with a URL of `via` (`upload`, `gateway`).
    pub fn recording_delivered(&self, via: &str) {
        self.deliveries
            .get_or_create(&DeliveryLabels {
                via: via.to_string(),
            })
            .inc();
    }

    /// `count` voicemail messages wait for delivery (the one being delivered included).
    pub fn set_undelivered(&self, count: usize) {
        self.undelivered
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// The component link connected or was lost.
    pub fn set_connected(&self, connected: bool) {
        self.connected.set(i64::from(connected));
        let was = self.connected_flag.swap(connected, Ordering::Relaxed);
        if connected && !was {
            self.connections.inc();
        }
    }

    /// Whether the component is connected (what `/health` reports).
    pub fn is_connected(&self) -> bool {
        self.connected_flag.load(Ordering::Relaxed)
    }

    /// The OpenMetrics text of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// The media engine's counters, read at each scrape.
#[derive(Debug)]
struct MediaCollector(Arc<MediaStats>);

impl Collector for MediaCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = &self.0;
        let counters = [
            (
                "rtp_packets_received",
                "Authenticated RTP packets received",
                &stats.rtp_in,
            ),
            ("rtp_packets_sent", "RTP packets sent", &stats.rtp_out),
            (
                "rtp_bytes_received",
                "Bytes of authenticated RTP packets received",
                &stats.rtp_bytes_in,
            ),
            (
                "rtp_bytes_sent",
                "Bytes of RTP packets sent (before SRTP)",
                &stats.rtp_bytes_out,
            ),
            (
                "rtcp_packets_received",
                "Authenticated RTCP packets received",
                &stats.rtcp_in,
            ),
            (
                "packets_dropped_authentication",
                "Packets dropped: SRTP/SRTCP authentication failed",
                &stats.auth_failures,
            ),
            (
                "packets_dropped_replay",
                "Packets dropped as replays",
                &stats.replays,
            ),
            (
                "datagrams_dropped_garbage",
                "Datagrams that were not DTLS, RTP or RTCP",
                &stats.garbage,
            ),
            (
                "candidates_refused",
                "Remote ICE candidates refused by policy",
                &stats.candidates_refused,
            ),
            (
                "unanswered_checks_sent",
                "ICE checks sent to addresses that had not answered yet",
                &stats.unanswered_sent,
            ),
            (
                "unanswered_datagrams_dropped",
                "Datagrams dropped to or from addresses that had not answered or proved they are a call's peer (media and junk, checks over budget)",
                &stats.unanswered_dropped,
            ),
            (
                "media_legs_started",
                "Media legs started",
                &stats.legs_started,
            ),
            (
                "bridge_frames_forwarded",
                "Payloads a bridge passed between two calls as they were (same codec)",
                &stats.bridge_forwarded,
            ),
            (
                "bridge_frames_transcoded",
                "20 ms frames a bridge passed decoded, to be encoded in the other call's codec",
                &stats.bridge_transcoded,
            ),
        ];
        for (name, help, counter) in counters {
            let value = ConstCounter::new(MediaStats::get(counter));
            let metric = encoder.encode_descriptor(name, help, None, value.metric_type())?;
            value.encode(metric)?;
        }
        let open = ConstGauge::new(stats.open_legs());
        let metric = encoder.encode_descriptor(
            "media_legs_open",
            "Media legs holding resources now",
            None,
            open.metric_type(),
        )?;
        open.encode(metric)
    }
}

/// The data directory's file system, read at each scrape (voicemail stops recording when it is
/// full).
#[derive(Debug)]
struct StorageCollector(PathBuf);

impl Collector for StorageCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some((free, size)) = file_system_space(&self.0) else {
            return Ok(());
        };
        for (name, help, bytes) in [
            (
                "storage_free_bytes",
                "Bytes free to the gateway on the file system of storage.data_dir",
                free,
            ),
            (
                "storage_size_bytes",
                "Size of the file system of storage.data_dir, in bytes",
                size,
            ),
        ] {
            let gauge = ConstGauge::new(i64::try_from(bytes).unwrap_or(i64::MAX));
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}

/// Bytes available to unprivileged users, and the size, of the file system holding `path`.
#[allow(clippy::useless_conversion)] // the field types differ between platforms
fn file_system_space(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a NUL-terminated string and `stat` a buffer of the right type; statvfs
    // writes it whole when it returns 0.
    let stat = unsafe {
        if libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) != 0 {
            return None;
        }
        stat.assume_init()
    };
    let block = u64::from(stat.f_frsize);
    Some((
        u64::from(stat.f_bavail).saturating_mul(block),
        u64::from(stat.f_blocks).saturating_mul(block),
    ))
}

/// The prompt cache's size, read at each scrape.
#[derive(Debug)]
struct PromptCollector(Arc<RwLock<Option<Arc<PromptLibrary>>>>);

impl Collector for PromptCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let library = self.0.read().unwrap_or_else(|e| e.into_inner()).clone();
        let bytes = library.map(|l| l.cached_bytes()).unwrap_or(0);
        let size = ConstGauge::new(bytes as i64);
        let metric = encoder.encode_descriptor(
            "prompt_cache_bytes",
            "Bytes of prompts encoded in the codecs in use",
            None,
            size.metric_type(),
        )?;
        size.encode(metric)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_with_their_labels() {
        let media = Arc::new(MediaStats::default());
        MediaStats::bump(&media.replays);
        let metrics = Metrics::new().with_media(media);
        metrics.call_started("echo");
        metrics.call_started("echo");
        metrics.call_ended("echo", "peer_hung_up", true);
        metrics.call_ended("ivr", "busy", false);
        metrics.setup(Duration::from_millis(12));
        metrics.call_media(3, 2, 1, 4.0);
        metrics.set_connected(true);
        metrics.set_connected(false);
        metrics.set_connected(true);
        metrics.recording_delivered("upload");
        let text = metrics.render();
        for line in [
            "jingle_gateway_calls_active{endpoint=\"echo\"} 1",
            "jingle_gateway_calls_finished_total{endpoint=\"echo\",reason=\"peer_hung_up\"} 1",
            "jingle_gateway_calls_finished_total{endpoint=\"ivr\",reason=\"busy\"} 1",
            "jingle_gateway_call_setup_seconds_count 1",
            "jingle_gateway_packets_lost_total 3",
            "jingle_gateway_packets_fec_recovered_total 2",
            "jingle_gateway_component_connected 1",
            "jingle_gateway_component_connections_total 2",
            "jingle_gateway_packets_dropped_replay_total 1",
            "jingle_gateway_media_legs_open 0",
            "jingle_gateway_recordings_delivered_total{via=\"upload\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(metrics.is_connected());
        assert!(text.ends_with("# EOF\n"));
    }
}
