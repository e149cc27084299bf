//! `doctor`: the call test an admin sends users to when their calls fail. It says what it is,
//! then echoes the caller's audio one second late (so they hear their own voice as others do),
//! and after the call sends the caller a chat report: what their client offered and did, what
//! the path and the audio were like, and a one-line hint for each problem found.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::player::Player;
use super::{CallInfo, CallReport, Endpoint, EndpointEvent, Incoming, Kind, NewCall, Outgoing};
use crate::config::{no_settings, ConfigError, EndpointSettings};
use crate::media::dtmf::Digit;
use crate::prompt::system::DOCTOR_INTRO;
use crate::prompt::PromptLibrary;
use crate::types::{Codec, EndReason};

/// `kind = "doctor"`, which has no settings of its own.
pub static KIND: DoctorKind = DoctorKind;

/// The kind `doctor`.
pub struct DoctorKind;

/// A call doctor's settings: none, but it plays its introduction.
#[derive(Debug)]
struct DoctorSettings;

impl EndpointSettings for DoctorSettings {
    fn prompts(&self, key: &str) -> Vec<(String, String)> {
        vec![(key.to_string(), DOCTOR_INTRO.to_string())]
    }
}

impl Kind for DoctorKind {
    fn name(&self) -> &'static str {
        "doctor"
    }

    fn settings(
        &self,
        key: &str,
        table: toml::Table,
        errors: &mut Vec<ConfigError>,
    ) -> Option<Arc<dyn EndpointSettings>> {
        no_settings(self.name(), key, &table, errors);
        Some(Arc::new(DoctorSettings))
    }

    fn create(
        &self,
        _settings: &Arc<dyn EndpointSettings>,
        call: &NewCall<'_>,
    ) -> Result<Box<dyn Endpoint>, EndReason> {
        Ok(Box::new(Doctor::new(call.prompts.clone(), call.codec)))
    }
}

/// How late the caller hears themselves.
const DELAY: Duration = Duration::from_secs(1);
/// Samples of 48 kHz audio held at most (a sender running ahead of our clock: the oldest go).
const MAX_HELD: usize = 2 * 48_000;

/// What a client should support for calls, as its disco#info says: (feature, what for).
const CLIENT_FEATURES: [(&str, &str); 5] = [
    ("urn:xmpp:jingle:1", "Jingle"),
    ("urn:xmpp:jingle:apps:rtp:audio", "Jingle RTP audio"),
    ("urn:xmpp:jingle:transports:ice-udp:1", "ICE-UDP"),
    ("urn:xmpp:jingle:apps:dtls:0", "DTLS-SRTP"),
    ("urn:xmpp:jingle-message:0", "Jingle Message Initiation"),
];

/// The call doctor.
pub struct Doctor {
    player: Player,
    /// The caller's audio, waiting its turn: payload (or a gap) and its duration at 48 kHz.
    held: VecDeque<(Option<Bytes>, usize)>,
    held_samples: usize,
    digits: String,
    events: VecDeque<EndpointEvent>,
}

impl Doctor {
    /// A call test in `codec`, playing its introduction from `prompts`.
    pub fn new(prompts: Arc<PromptLibrary>, codec: Codec) -> Self {
        Self {
            player: Player::new(prompts, codec),
            held: VecDeque::new(),
            held_samples: 0,
            digits: String::new(),
            events: VecDeque::new(),
        }
    }

    fn hold(&mut self, payload: Option<Bytes>, duration: usize) {
        self.held.push_back((payload, duration));
        self.held_samples += duration;
        while self.held_samples > MAX_HELD {
            let Some((_, dropped)) = self.held.pop_front() else {
                break;
            };
            self.held_samples -= dropped;
        }
    }
}

impl Endpoint for Doctor {
    fn start(&mut self, _call: &CallInfo) {
        self.player.play(DOCTOR_INTRO);
    }

    fn on_audio(&mut self, audio: Incoming<'_>) {
        // What the caller says during the introduction is not echoed.
        if self.player.is_busy() {
            return;
        }
        match audio {
            Incoming::Audio {
                payload, duration, ..
            } => self.hold(Some(payload.clone()), duration),
            Incoming::Lost { duration, .. } => self.hold(None, duration),
        }
    }

    fn on_dtmf(&mut self, digit: Digit) {
        self.digits.push(digit.as_char());
        self.events.push_back(EndpointEvent::SendDtmf(digit));
    }

    fn next_frame(&mut self) -> Outgoing<'_> {
        if self.player.is_busy() {
            return self.player.next_frame();
        }
        let late = DELAY.as_secs() as usize * 48_000;
        if self.held_samples < late {
            return Outgoing::Silence;
        }
        match self.held.pop_front() {
            Some((payload, duration)) => {
                self.held_samples -= duration;
                payload.map_or(Outgoing::Silence, Outgoing::Encoded)
            }
            None => Outgoing::Silence,
        }
    }

    fn poll_event(&mut self) -> Option<EndpointEvent> {
        self.events.pop_front()
    }

    fn wants_client_features(&self) -> bool {
        true
    }

    fn report(&mut self, call: &CallReport<'_>) -> Option<String> {
        Some(report(call, &self.digits))
    }
}

/// The chat report on `call`, in which the caller pressed `digits`.
fn report(call: &CallReport<'_>, digits: &str) -> String {
    let offer = &call.offer.offered;
    let audio = &call.audio;
    let mut hints = Vec::new();
    let mut text = String::from("Call test report\n");

    match call.client_features {
        Some(features) => {
            let missing: Vec<&str> = CLIENT_FEATURES
                .iter()
                .filter(|(feature, _)| !features.iter().any(|f| f == feature))
                .map(|(_, name)| *name)
                .collect();
            let _ = match missing.is_empty() {
                true => writeln!(
                    text,
                    "Client: announces Jingle audio, ICE-UDP, DTLS-SRTP and JMI."
                ),
                false => writeln!(text, "Client: does not announce {}.", missing.join(", ")),
            };
            if !missing.is_empty() {
                hints.push("your client's disco#info lacks call features: contacts' clients may show no call button for you");
            }
        }
        None => {
            let _ = writeln!(text, "Client: did not answer a disco#info query.");
            hints.push("your client did not answer disco#info: it may not show call buttons, or a server drops the query");
        }
    }
    let _ = writeln!(
        text,
        "Ringing: {}.",
        match call.via_jmi {
            true => "with Jingle Message Initiation (XEP-0353), as Conversations and Dino do",
            false => "a session-initiate without Jingle Message Initiation first",
        }
    );
    let _ = writeln!(
        text,
        "Codecs offered: {}{}; used: {}.",
        offer.payload_types.join(", "),
        if offer.opus_fec {
            " (Opus with in-band FEC)"
        } else {
            ""
        },
        call.offer.codec.name()
    );
    if call.offer.dtmf_payload_type.is_none() {
        hints.push(
            "your client offered no telephone-event: keys will not work in menus and voicemail",
        );
    }
    if call.offer.codec == Codec::Opus && !offer.opus_fec {
        hints.push("your client offered Opus without in-band FEC (useinbandfec=1): a lost packet is lost for good");
    }
    if call.offer.codec != Codec::Opus {
        hints.push(
            "your client offered no Opus: calls use narrowband G.711 and take more bandwidth",
        );
    }
    let _ = writeln!(
        text,
        "Security: DTLS-SRTP, your fingerprint {}, setup {}; the gateway took the DTLS {} role.",
        call.offer.fingerprint.hash,
        offer.setup.as_deref().unwrap_or("not given"),
        match call.offer.dtls_role {
            crate::types::DtlsRole::Client => "client",
            crate::types::DtlsRole::Server => "server",
        }
    );
    let candidates: Vec<String> = call
        .remote_candidates
        .iter()
        .map(|(kind, count)| format!("{kind} {count}"))
        .collect();
    let _ = writeln!(
        text,
        "Candidates from your client: {}; pair used: {}.",
        if candidates.is_empty() {
            "none".to_string()
        } else {
            candidates.join(", ")
        },
        call.selected_pair.unwrap_or("none")
    );
    if !call
        .remote_candidates
        .iter()
        .any(|(kind, _)| *kind == "relay")
    {
        hints.push("no relay (TURN) candidates: behind a strict NAT or firewall calls will fail; ask your server's admin for TURN (XEP-0215)");
    }
    if call.selected_pair.is_none() {
        hints.push(
            "no ICE pair worked: the media could not flow between your client and the gateway",
        );
    }
    let lost = audio.expected.saturating_sub(audio.received);
    let loss = match audio.expected {
        0 => None,
        expected => Some(lost as f64 / expected as f64 * 100.0),
    };
    let _ = writeln!(
        text,
        "Audio from you: {} packets{}, jitter {:.1} ms; round trip {}.",
        audio.received,
        loss.map(|l| format!(", {l:.1} % lost")).unwrap_or_default(),
        audio.jitter_ms,
        audio
            .round_trip_ms
            .map(|rtt| format!("{rtt:.0} ms"))
            .unwrap_or_else(|| "not measured (no RTCP report answered ours)".into())
    );
    if audio.received == 0 {
        hints.push("no audio came from your client: check its microphone permission");
    }
    if loss.is_some_and(|l| l > 3.0) {
        hints.push("over 3 % of your audio was lost on the way: others hear you choppy (Wi-Fi or mobile signal?)");
    }
    if audio.jitter_ms > 30.0 {
        hints.push("high jitter (over 30 ms): your network delays packets unevenly");
    }
    if audio.round_trip_ms.is_some_and(|rtt| rtt > 300.0) {
        hints.push("round trip over 300 ms: people will talk over each other");
    }
    let _ = writeln!(
        text,
        "Keys: {}.",
        match digits.is_empty() {
            true => "none pressed".to_string(),
            false => format!("{digits} arrived"),
        }
    );
    let _ = writeln!(text, "Call length: {} s.", call.duration.as_secs());
    match hints.is_empty() {
        true => text.push_str("No problems found."),
        false => {
            text.push_str("Hints:");
            for hint in hints {
                let _ = write!(text, "\n- {hint}");
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jingle::negotiate::read_offer;
    use crate::media::stats::AudioSummary;
    use crate::protocol::jingle::Jingle;
    use crate::testing::{first_jingle, BROWSER_CALL};

    fn summary(received: u64, expected: u64) -> AudioSummary {
        AudioSummary {
            received,
            expected,
            sent: received,
            concealed: 0,
            fec_recovered: 0,
            late: 0,
            duplicates: 0,
            trimmed: 0,
            jitter_ms: 2.0,
            unknown_payload_types: 0,
            foreign_codec: 0,
            round_trip_ms: Some(42.0),
        }
    }

    #[test]
    fn a_browser_call_with_loss_is_reported_with_its_hints() {
        let jingle = Jingle::parse(&first_jingle(BROWSER_CALL, "session-initiate")).unwrap();
        let offer = read_offer(&jingle, true).unwrap();
        let features: Vec<String> = CLIENT_FEATURES.iter().map(|(f, _)| f.to_string()).collect();
        let call = CallReport {
            offer: &offer,
            via_jmi: true,
            client_features: Some(&features),
            remote_candidates: vec![("host", 2), ("srflx", 1)],
            selected_pair: Some("host 192.0.2.1:10000 - srflx 198.51.100.7:4000"),
            audio: summary(900, 1000),
            duration: Duration::from_secs(21),
        };
        let text = report(&call, "12#");
        for line in [
            "Client: announces Jingle audio, ICE-UDP, DTLS-SRTP and JMI.",
            "with Jingle Message Initiation",
            "opus/48000/2",
            "(Opus with in-band FEC)",
            "used: opus",
            "fingerprint sha-256, setup actpass; the gateway took the DTLS client role",
            "host 2, srflx 1; pair used: host 192.0.2.1:10000 - srflx 198.51.100.7:4000",
            "900 packets, 10.0 % lost, jitter 2.0 ms; round trip 42 ms",
            "Keys: 12# arrived.",
            "- over 3 % of your audio was lost",
            "- no relay (TURN) candidates",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
        assert!(!text.contains("telephone-event:"), "{text}");
    }

    #[test]
    fn a_silent_client_that_hides_is_told_so() {
        let jingle = Jingle::parse(&first_jingle(BROWSER_CALL, "session-initiate")).unwrap();
        let offer = read_offer(&jingle, true).unwrap();
        let call = CallReport {
            offer: &offer,
            via_jmi: false,
            client_features: None,
            remote_candidates: Vec::new(),
            selected_pair: None,
            audio: AudioSummary {
                round_trip_ms: None,
                ..summary(0, 0)
            },
            duration: Duration::from_secs(3),
        };
        let text = report(&call, "");
        for line in [
            "did not answer a disco#info query",
            "without Jingle Message Initiation",
            "Candidates from your client: none; pair used: none.",
            "not measured",
            "Keys: none pressed.",
            "- no audio came from your client",
            "- no ICE pair worked",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
    }

    #[test]
    fn the_echo_comes_a_second_late_after_the_introduction() {
        let library = PromptLibrary::load(&crate::prompt::PromptSource::Builtin, &[], 60, 1 << 20);
        let mut doctor = Doctor::new(Arc::new(library.unwrap()), Codec::Opus);
        // No introduction playing (the library has none here): echo at once, one second late.
        let payload = Bytes::from_static(b"x");
        for n in 0..60 {
            doctor.on_audio(Incoming::Audio {
                payload: &payload,
                timestamp: n * 960,
                duration: 960,
                pcm: None,
            });
            let echoed = matches!(doctor.next_frame(), Outgoing::Encoded(_));
            assert_eq!(echoed, n >= 49, "frame {n}");
        }
    }
}
