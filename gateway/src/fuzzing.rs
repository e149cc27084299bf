//! Entry points of the fuzz targets in `tests/fuzz/` (cargo-fuzz, nightly): one per parser of
//! outside data, each taking arbitrary bytes. A panic is a bug, either in the code under test or
//! of a property checked here (a payload that reads differently once written, a byte range
//! outside the file, a recovered recording that does not read back). The unit tests at the end
//! replay the committed corpora (`tests/fuzz/corpus/<target>/`) with the stable toolchain, so
//! `cargo test` keeps every input the fuzzers found interesting.

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use minidom::Element;

use crate::call::audio::AudioPath;
use crate::config::{Config, DtmfSourcesConfig, RecordingFormat};
use crate::endpoint::{Echo, Endpoint, EndpointEvent, Incoming, Outgoing};
use crate::http::request::{byte_range, parse_request};
use crate::jingle::negotiate::{read_answer, read_offer, Negotiated, PayloadKind};
use crate::mailbox::store::finish_part;
use crate::media::codec::{AudioFrame, FRAME_SAMPLES, SAMPLE_RATE};
use crate::media::dtmf::Digit;
use crate::media::rtcp::read_report;
use crate::prompt::decode::decode;
use crate::prompt::PromptSpec;
use crate::protocol::adhoc::Command;
use crate::protocol::ice_udp::{Candidate, IceUdpTransport, NS_ICE_UDP};
use crate::protocol::jingle::{Action, Creator, Description, Jingle, Transport};
use crate::protocol::jmi::Jmi;
use crate::protocol::rtp::{PayloadType, RtpDescription, NS_RTP};
use crate::types::{Codec, DtlsRole, RemoteFingerprint};
use crate::xmpp::stream::{ReadLimits, StanzaReader, StreamItem};

/// Largest XML input the protocol targets parse.
const MAX_XML: usize = 64 * 1024;
/// Deepest nesting of XML the protocol targets parse: recursion on deep trees is the stanza
/// reader's to refuse, not what these targets test.
const MAX_DEPTH: usize = 64;
/// Most `<` in XML the protocol targets parse (a bound on depth that no markup can fool).
const MAX_TAGS: usize = 1024;

/// The component stream reader ([`StanzaReader`]): a stream header, then the input as the
/// stream's body, fed in pieces whose size the first byte picks. Reading in pieces gives what
/// reading at once gives, every element kept is within the limits, and nothing panics.
pub fn stanza_reader(data: &[u8]) {
    let Some((&chunk, body)) = data.split_first() else {
        return;
    };
    const HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
        xmlns:stream='http://etherx.jabber.org/streams' id='fuzz' from='gw.example'>";
    // Tight limits, so that small inputs reach every one of them.
    let limits = ReadLimits {
        max_depth: 8,
        max_name: 16,
        max_attribute: 64,
        max_attributes: 4,
        max_text: 128,
        max_stanza: 512,
    };
    let read = |piece: usize| {
        let mut reader = StanzaReader::new(limits);
        let mut items = Vec::new();
        let mut failed = false;
        for bytes in std::iter::once(HEADER).chain(body.chunks(piece.max(1))) {
            // What came complete before an error is read all the same.
            let pushed = reader.push(bytes);
            items.extend(std::iter::from_fn(|| reader.poll()).map(|item| summary(&item)));
            if pushed.is_err() {
                failed = true;
                break;
            }
        }
        (items, failed)
    };
    let whole = read(body.len());
    let pieces = read(usize::from(chunk % 16) + 1);
    assert_eq!(whole, pieces, "reading in pieces differs");
}

/// What a stream item says, comparable and checked against the limits on the way.
fn summary(item: &StreamItem) -> String {
    match item {
        StreamItem::Stanza(stanza) => {
            let element = match &**stanza {
                xmpp_parsers::stanza::Stanza::Iq(iq) => Element::from(iq.clone()),
                xmpp_parsers::stanza::Stanza::Message(m) => Element::from(m.clone()),
                xmpp_parsers::stanza::Stanza::Presence(p) => Element::from(p.clone()),
            };
            assert!(
                depth(&element) <= 8,
                "a stanza beyond the depth limit was kept"
            );
            format!("stanza {}", String::from(&element))
        }
        other => format!("{other:?}"),
    }
}

/// Nesting depth of `element` (the element itself counts), without recursion.
fn depth(element: &Element) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(element, 1)];
    while let Some((e, d)) = stack.pop() {
        deepest = deepest.max(d);
        stack.extend(e.children().map(|c| (c, d + 1)));
    }
    deepest
}

/// `<jingle/>` ([`Jingle::parse`]); what reads must read the same once written as text, and a
/// session-initiate or session-accept goes on to offer/answer negotiation.
pub fn protocol_jingle(data: &[u8]) {
    let Some(element) = xml(data) else { return };
    let Ok(jingle) = Jingle::parse(&element) else {
        return;
    };
    let reread = Jingle::parse(&rewritten(&jingle.to_element()))
        .unwrap_or_else(|e| panic!("a written <jingle/> does not read: {e}"));
    assert_eq!(reread, as_written(jingle.clone()), "<jingle/> changed");
    match jingle.action {
        Action::SessionInitiate => {
            let _ = read_offer(&jingle, true);
        }
        Action::SessionAccept => {
            let _ = read_answer(&jingle);
        }
        _ => {}
    }
}

/// ICE-UDP `<transport/>` and `<candidate/>` ([`IceUdpTransport::parse`], [`Candidate::parse`]),
/// with the same round trip.
pub fn protocol_ice_udp(data: &[u8]) {
    let Some(element) = xml(data) else { return };
    if let Ok(transport) = IceUdpTransport::parse(&element) {
        let reread = IceUdpTransport::parse(&rewritten(&transport.to_element()))
            .unwrap_or_else(|e| panic!("a written <transport/> does not read: {e}"));
        let written = IceUdpTransport {
            skipped_candidates: 0,
            ..transport
        };
        assert_eq!(reread, written, "<transport/> changed");
    }
    for child in element.children().filter(|c| c.is("candidate", NS_ICE_UDP)) {
        if let Ok(candidate) = Candidate::parse(child) {
            let reread = Candidate::parse(&rewritten(&candidate.to_element()))
                .unwrap_or_else(|e| panic!("a written <candidate/> does not read: {e}"));
            assert_eq!(reread, candidate, "<candidate/> changed");
        }
    }
}

/// RTP `<description/>` and `<payload-type/>` ([`RtpDescription::parse`], [`PayloadType::parse`]),
/// with the same round trip.
pub fn protocol_rtp(data: &[u8]) {
    let Some(element) = xml(data) else { return };
    if let Ok(description) = RtpDescription::parse(&element) {
        let reread = RtpDescription::parse(&rewritten(&description.to_element()))
            .unwrap_or_else(|e| panic!("a written <description/> does not read: {e}"));
        assert_eq!(reread, description, "<description/> changed");
    }
    for child in element.children().filter(|c| c.is("payload-type", NS_RTP)) {
        if let Ok(payload_type) = PayloadType::parse(child) {
            let reread = PayloadType::parse(&rewritten(&payload_type.to_element()))
                .unwrap_or_else(|e| panic!("a written <payload-type/> does not read: {e}"));
            assert_eq!(reread, payload_type, "<payload-type/> changed");
        }
    }
}

/// XEP-0353 elements among a message's payloads ([`Jmi::find`]; the input is the message, or
/// one payload), with the same round trip.
pub fn protocol_jmi(data: &[u8]) {
    let Some(element) = xml(data) else { return };
    let payloads: Vec<Element> = match element.name() {
        "message" => element.children().cloned().collect(),
        _ => vec![element],
    };
    if let Some(Ok(jmi)) = Jmi::find(&payloads) {
        let reread = Jmi::parse(&rewritten(&jmi.to_element()))
            .unwrap_or_else(|e| panic!("a written JMI element does not read: {e}"));
        assert_eq!(reread, jmi, "JMI element changed");
    }
}

/// XEP-0050 `<command/>` ([`Command::parse`]; the input is the command or an IQ carrying it).
pub fn protocol_adhoc(data: &[u8]) {
    let Some(element) = xml(data) else { return };
    let command = match element.name() {
        "iq" => element.children().next().cloned(),
        _ => Some(element),
    };
    if let Some(Ok(command)) = command.as_ref().map(Command::parse) {
        assert!(
            !command.node.is_empty(),
            "a command without a node was read"
        );
    }
}

/// The HTTP request head ([`parse_request`]) and `Range` header ([`byte_range`]): the first 8
/// bytes are a file length, the rest a request head. A range served must lie in the file.
pub fn http_request(data: &[u8]) {
    let (length, head) = match data.split_first_chunk::<8>() {
        Some((length, head)) => (u64::from_le_bytes(*length), head),
        None => (0, data),
    };
    if let Ok(request) = parse_request(head) {
        assert!(!request.path.contains(['?', '#']), "{:?}", request.path);
        check_range(request.range.as_deref(), length);
    }
    if let Ok(header) = std::str::from_utf8(head) {
        check_range(Some(header), length);
    }
}

/// The receive path after SRTP ([`AudioPath::receive_rtp`] and [`AudioPath::receive_rtcp`],
/// jitter buffer, DTMF, the decoders and the transcoding of another offered codec), driven by a
/// fake clock. The first byte chooses the answered codec and what the endpoint asks for; then
/// records of a byte (kind in the low 2 bits, milliseconds to advance the clock in the others),
/// a 16-bit length and the bytes: an RTP packet, an RTCP packet, chat digits, or a tick alone.
pub fn rtp_receive(data: &[u8]) {
    let Some((&setup, mut rest)) = data.split_first() else {
        return;
    };
    let offer = fuzz_offer(Codec::PREFERENCE[usize::from(setup % 3)]);
    let mut endpoint = FuzzEndpoint {
        echo: Echo::default(),
        wants_pcm: setup & 0x04 != 0,
        inband: setup & 0x08 != 0,
        pcm_out: setup & 0x10 != 0,
        frame: None,
    };
    let start = Instant::now();
    let mut now = start;
    let mut path = AudioPath::new(&offer, 0x5EED, start);
    path.start(start);
    let mut received = 0;
    while let Some((&record, tail)) = rest.split_first() {
        now += Duration::from_millis(u64::from(record >> 2));
        let (length, tail) = match tail.split_first_chunk::<2>() {
            Some((length, tail)) => (usize::from(u16::from_be_bytes(*length)), tail),
            None => (0, tail),
        };
        let (bytes, tail) = tail.split_at(length.min(tail.len()));
        rest = tail;
        match record & 3 {
            0 => {
                path.receive_rtp(&Bytes::copy_from_slice(bytes), now, &mut endpoint);
                received += 1;
            }
            1 => {
                let wallclock = std::time::SystemTime::now();
                path.receive_rtcp(bytes, now, wallclock);
                let report = read_report(bytes, path.ssrc(), now, wallclock);
                if let Some(sr) = report.sender_report {
                    assert_eq!(sr.arrived, now);
                }
                if let Some(rtt) = report.round_trip {
                    assert!(rtt < Duration::from_secs(60));
                }
            }
            2 => path.receive_chat_digits(&String::from_utf8_lossy(bytes), now, &mut endpoint),
            _ => {}
        }
        let result = path.tick(now, &mut endpoint);
        for packet in &result.packets {
            assert_eq!(packet.header.ssrc, path.ssrc());
            let pt = packet.header.payload_type;
            assert!(
                pt == offer.payload_type || Some(pt) == offer.dtmf_payload_type,
                "sent payload type {pt}"
            );
        }
        let _ = path.report(now, std::time::SystemTime::now());
    }
    let summary = path.summary();
    assert!(summary.received <= received, "{summary:?}");
}

/// `.part` recovery of an Ogg Opus recording ([`finish_part`]): see [`recover_part`].
pub fn part_recovery_ogg(data: &[u8]) {
    recover_part(data, RecordingFormat::OggOpus);
}

/// `.part` recovery of a WAV recording ([`finish_part`]): see [`recover_part`].
pub fn part_recovery_wav(data: &[u8]) {
    recover_part(data, RecordingFormat::Wav);
}

/// The config ([`Config::from_toml_str`]): TOML text, then after a NUL byte `KEY=VALUE`
/// overrides separated by NUL bytes (as `GATEWAY_KEY`). It is valid, or says why; a valid
/// config gives every virtual JID a JID, as the start needs.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (toml, env) = text.split_once('\0').unwrap_or((&text, ""));
    let env = env
        .split('\0')
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (format!("GATEWAY_{key}"), value.to_string()));
    match Config::from_toml_str(toml, env, &crate::endpoint::KINDS) {
        Ok(config) => {
            let domain = config.xmpp.domain.as_deref().unwrap_or("example.org");
            if let Err(e) = crate::routes::RouteTable::from_config(&config, domain) {
                panic!("a valid config cannot start: {e}");
            }
        }
        Err(errors) => assert!(!errors.0.is_empty(), "refused without a reason"),
    }
}

/// A prompt file ([`decode`]): the first byte picks the file name extension given as a hint,
/// the rest is the file. What decodes is audio, and no longer than allowed.
pub fn prompt_file(data: &[u8]) {
    const EXTENSIONS: [Option<&str>; 6] = [
        None,
        Some("wav"),
        Some("flac"),
        Some("mp3"),
        Some("ogg"),
        Some("opus"),
    ];
    let Some((&hint, bytes)) = data.split_first() else {
        return;
    };
    let max_seconds = crate::config::PromptsConfig::default()
        .max_length
        .0
        .as_secs();
    if let Ok(samples) = decode(bytes, EXTENSIONS[usize::from(hint) % 6], max_seconds) {
        assert!(!samples.is_empty());
        // One resampler chunk of slack beyond the limit.
        let most = (max_seconds + 1) * u64::from(SAMPLE_RATE);
        assert!(samples.len() as u64 <= most, "{} samples", samples.len());
    }
}

/// An inline prompt ([`PromptSpec::parse`]: `tone:…`, `silence:…`, `builtin:…`, a file name)
/// and its samples.
pub fn prompt_spec(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(spec) = PromptSpec::parse(text) else {
        return;
    };
    let seconds = match &spec {
        PromptSpec::Tone { on, off, .. } => Some((*on + *off).as_secs_f64()),
        PromptSpec::Silence(duration) => Some(duration.as_secs_f64()),
        PromptSpec::File(_) | PromptSpec::Builtin(_) => None,
    };
    let samples = spec.synthesize().map(|s| s.len() as f64);
    let expected = seconds.map(|s| s * f64::from(SAMPLE_RATE));
    match (samples, expected) {
        (Some(samples), Some(expected)) => {
            assert!(
                (samples - expected).abs() <= 2.0,
                "{samples} for {expected}"
            )
        }
        (None, None) => {}
        other => panic!("{spec:?}: {other:?}"),
    }
}

/// The element `data` holds, if it is UTF-8 XML within the harness's bounds.
fn xml(data: &[u8]) -> Option<Element> {
    if data.len() > MAX_XML {
        return None;
    }
    let text = std::str::from_utf8(data).ok()?;
    if text.matches('<').count() > MAX_TAGS || nesting(text) > MAX_DEPTH {
        return None;
    }
    text.parse().ok()
}

/// How deep elements nest, told from `<x`, `</` and `/>` alone.
fn nesting(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let bytes = text.as_bytes();
    for (i, &byte) in bytes.iter().enumerate() {
        let next = bytes.get(i + 1).copied();
        match (byte, next) {
            (b'<', Some(b'/')) | (b'/', Some(b'>')) => depth = depth.saturating_sub(1),
            (b'<', Some(b'!' | b'?')) => {}
            (b'<', _) => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            _ => {}
        }
    }
    deepest
}

/// `element` written as the gateway sends it (text) and read again.
fn rewritten(element: &Element) -> Element {
    let text = String::from(element);
    text.parse()
        .unwrap_or_else(|e| panic!("written XML does not read: {e}: {text}"))
}

/// What of `jingle` its `to_element` writes: descriptions and transports the gateway does not
/// speak are kept by namespace only and not written, and skipped candidates are gone.
fn as_written(mut jingle: Jingle) -> Jingle {
    for content in &mut jingle.contents {
        if matches!(content.description, Some(Description::Other(_))) {
            content.description = None;
        }
        match &mut content.transport {
            Some(Transport::Other(_)) => content.transport = None,
            Some(Transport::IceUdp(transport)) => transport.skipped_candidates = 0,
            None => {}
        }
    }
    jingle
}

fn check_range(header: Option<&str>, length: u64) {
    if let Ok(Some((first, last))) = byte_range(header, length) {
        assert!(
            first <= last && last < length,
            "{header:?} of {length}: {first}-{last}"
        );
    }
}

/// An answered offer in `codec`, with the others of a browser's offer (Opus 111, PCMU 0,
/// PCMA 8, `telephone-event` 110 at 48 kHz and 126 at 8 kHz) as other payload types.
fn fuzz_offer(codec: Codec) -> Negotiated {
    let audio = [(111, Codec::Opus), (0, Codec::Pcmu), (8, Codec::Pcma)];
    let payload_type = audio.iter().find(|(_, c)| *c == codec).map_or(111, |a| a.0);
    let dtmf = if codec == Codec::Opus { 110 } else { 126 };
    Negotiated {
        content_name: "audio".into(),
        creator: Creator::Initiator,
        codec,
        payload_type,
        dtmf_payload_type: Some(dtmf),
        other_payload_types: audio
            .iter()
            .filter(|(_, c)| *c != codec)
            .map(|(pt, c)| (*pt, PayloadKind::Audio(*c)))
            .chain([(110 + 126 - dtmf, PayloadKind::TelephoneEvent)])
            .collect(),
        ice_ufrag: "fuzz".into(),
        ice_pwd: "fuzzfuzzfuzzfuzzfuzzfu".into(),
        candidates: Vec::new(),
        fingerprint: RemoteFingerprint {
            hash: "sha-256",
            digest: vec![0; 32],
        },
        dtls_role: DtlsRole::Client,
        bundle: false,
        offered: Default::default(),
    }
}

/// The endpoint of [`rtp_receive`]: echoes like [`Echo`], and as the setup byte says asks for
/// decoded audio, hears in-band keys, and sends the last decoded frame back (so the encoder runs).
struct FuzzEndpoint {
    echo: Echo,
    wants_pcm: bool,
    inband: bool,
    pcm_out: bool,
    frame: Option<Box<AudioFrame>>,
}

impl Endpoint for FuzzEndpoint {
    fn wants_pcm(&self) -> bool {
        self.wants_pcm
    }

    fn dtmf_sources(&self) -> DtmfSourcesConfig {
        DtmfSourcesConfig {
            rfc4733: true,
            inband: self.inband,
            chat: true,
        }
    }

    fn on_audio(&mut self, audio: Incoming<'_>) {
        if let Incoming::Audio { pcm: Some(pcm), .. } | Incoming::Lost { pcm: Some(pcm), .. } =
            &audio
        {
            let frame = self
                .frame
                .get_or_insert_with(|| Box::new([0; FRAME_SAMPLES]));
            let n = pcm.len().min(FRAME_SAMPLES);
            frame[..n].copy_from_slice(&pcm[..n]);
        }
        self.echo.on_audio(audio);
    }

    fn on_dtmf(&mut self, digit: Digit) {
        self.echo.on_dtmf(digit);
    }

    fn next_frame(&mut self) -> Outgoing<'_> {
        match &self.frame {
            Some(frame) if self.pcm_out => Outgoing::Pcm(frame),
            _ => self.echo.next_frame(),
        }
    }

    fn poll_event(&mut self) -> Option<EndpointEvent> {
        self.echo.poll_event()
    }
}

/// Writes `data` as a `.part` file of `format`, recovers it, and checks what is kept: a prefix
/// of the input for Ogg (cut after its last complete page), the input's length or less for
/// WAV; recovering it again changes nothing; and another reader opens it (hound for WAV,
/// the `ogg` crate to the last packet for Ogg).
fn recover_part(data: &[u8], format: RecordingFormat) {
    static FILES: AtomicU64 = AtomicU64::new(0);
    let path: PathBuf = std::env::temp_dir().join(format!(
        "jingle-gateway-fuzz-{}-{}.{}.part",
        std::process::id(),
        FILES.fetch_add(1, Ordering::Relaxed),
        format.extension()
    ));
    std::fs::write(&path, data).expect("temporary file");
    let recovered = finish_part(&path, format);
    let kept = std::fs::read(&path).expect("temporary file");
    let again = recovered.as_ref().ok().map(|_| finish_part(&path, format));
    let kept_again = std::fs::read(&path).expect("temporary file");
    let _ = std::fs::remove_file(&path);
    let Ok(duration) = recovered else {
        return;
    };
    assert!(kept.len() <= data.len(), "recovery grew the file");
    match again {
        Some(Ok(again)) => assert_eq!(again, duration, "a second recovery changed the length"),
        other => panic!("a recovered file does not recover again: {other:?}"),
    }
    assert_eq!(kept, kept_again, "a second recovery changed the file");
    match format {
        RecordingFormat::OggOpus => {
            assert_eq!(&data[..kept.len()], &kept[..], "not cut after a page");
            let mut reader = ogg::PacketReader::new(Cursor::new(&kept));
            while reader.read_packet().expect("kept pages read").is_some() {}
        }
        RecordingFormat::Wav => {
            let reader = hound::WavReader::new(Cursor::new(&kept))
                .unwrap_or_else(|e| panic!("a recovered WAV does not open: {e}"));
            let spec = reader.spec();
            let seconds = f64::from(reader.duration()) / f64::from(spec.sample_rate.max(1));
            assert!(
                (seconds - duration.as_secs_f64()).abs() < 0.001,
                "recovered {duration:?}, holds {seconds} s"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The committed corpora.
    fn corpora() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fuzz/corpus")
    }

    /// Runs `target` on every file of its corpus, which must not be empty.
    fn replay(name: &str, target: fn(&[u8])) {
        let dir = corpora().join(name);
        let entries =
            std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()));
        let mut files = 0;
        for entry in entries {
            let path = entry.expect("corpus entry").path();
            let data = std::fs::read(&path).expect("corpus file");
            if std::panic::catch_unwind(|| target(&data)).is_err() {
                panic!("{} fails", path.display());
            }
            files += 1;
        }
        assert!(files > 0, "corpus {} is empty", dir.display());
    }

    macro_rules! replays {
        ($($target:ident),* $(,)?) => {
            $(
                #[test]
                fn $target() {
                    replay(stringify!($target), super::$target);
                }
            )*
            /// The targets replayed here.
            const REPLAYED: &[&str] = &[$(stringify!($target)),*];
        };
    }

    replays!(
        stanza_reader,
        protocol_jingle,
        protocol_ice_udp,
        protocol_rtp,
        protocol_jmi,
        protocol_adhoc,
        http_request,
        rtp_receive,
        part_recovery_ogg,
        part_recovery_wav,
        config,
        prompt_file,
        prompt_spec,
    );

    #[test]
    fn every_fuzz_target_is_replayed() {
        let dir = corpora().join("../fuzz_targets");
        let mut targets: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|entry| {
                let name = entry.ok()?.file_name().into_string().ok()?;
                name.strip_suffix(".rs").map(str::to_string)
            })
            .collect();
        targets.sort();
        let mut replayed: Vec<String> = REPLAYED.iter().map(|t| t.to_string()).collect();
        replayed.sort();
        assert_eq!(targets, replayed);
    }
}
