//! Helpers shared by the unit tests: the captured client stanzas of `tests/fixtures/interop/`.

use minidom::Element;

/// A browser (StanzaJS + libwebrtc) calling two virtual JIDs, as the component saw it.
pub const BROWSER_CALL: &str =
    include_str!("../../../tests/fixtures/interop/browser-call-as-seen-by-component.xml");
/// A browser call whose offer was restricted to PCMU and telephone-event.
pub const BROWSER_PCMU_CALL: &str =
    include_str!("../../../tests/fixtures/interop/browser-pcmu-only-call.xml");
/// A browser answering a call.
pub const BROWSER_CALLEE: &str =
    include_str!("../../../tests/fixtures/interop/browser-callee-answer.xml");

/// Every stanza in a capture file, in order (comments dropped).
pub fn stanzas(capture: &str) -> Vec<Element> {
    let mut text = String::with_capacity(capture.len());
    let mut rest = capture;
    while let Some(start) = rest.find("<!--") {
        text.push_str(&rest[..start]);
        match rest[start..].find("-->") {
            Some(end) => rest = &rest[start + end + 3..],
            None => rest = "",
        }
    }
    text.push_str(rest);
    let wrapped = format!("<capture xmlns='jabber:component:accept'>{text}</capture>");
    let root: Element = wrapped.parse().expect("capture file is well-formed XML");
    root.children().cloned().collect()
}

/// The `<jingle/>` payloads of every IQ set in a capture, in order.
pub fn jingle_payloads(capture: &str) -> Vec<Element> {
    stanzas(capture)
        .into_iter()
        .filter(|s| s.name() == "iq" && s.attr("type") == Some("set"))
        .filter_map(|s| {
            s.get_child("jingle", crate::protocol::jingle::NS_JINGLE)
                .cloned()
        })
        .collect()
}

/// The `<jingle/>` payloads of the IQ sets sent by `from` in a capture, in order.
pub fn jingle_payloads_from(capture: &str, from: &str) -> Vec<Element> {
    stanzas(capture)
        .into_iter()
        .filter(|s| {
            s.name() == "iq" && s.attr("type") == Some("set") && s.attr("from") == Some(from)
        })
        .filter_map(|s| {
            s.get_child("jingle", crate::protocol::jingle::NS_JINGLE)
                .cloned()
        })
        .collect()
}

/// The first `<jingle/>` payload with `action` in a capture.
pub fn first_jingle(capture: &str, action: &str) -> Element {
    jingle_payloads(capture)
        .into_iter()
        .find(|j| j.attr("action") == Some(action))
        .unwrap_or_else(|| panic!("capture has no {action}"))
}

/// A config of one mailbox `vm` with `settings` (and `extra` sections), prompts from the test
/// fixtures; its problems as (key, message).
pub fn mailbox_config(
    settings: &str,
    extra: &str,
) -> Result<crate::config::Config, Vec<(String, String)>> {
    let text = format!(
        "[xmpp]\ndomain = \"gw.test\"\nsecret = \"s\"\n{extra}\n[prompts]\ndirectory = \"{}/../tests/fixtures/audio\"\n\
         [endpoints.vm]\nkind = \"voicemail\"\n{settings}",
        env!("CARGO_MANIFEST_DIR")
    );
    crate::config::Config::from_toml_str(&text, Vec::new(), &crate::endpoint::KINDS)
        .map_err(|e| e.0.into_iter().map(|e| (e.key, e.message)).collect())
}

/// The Jingle core's settings the unit tests run with, for `virtual_jids`.
pub fn signalling_config(
    virtual_jids: std::collections::HashMap<String, crate::jingle::VirtualJidPolicy>,
) -> crate::jingle::SignallingConfig {
    use std::time::Duration;
    crate::jingle::SignallingConfig {
        domain: "gw.localhost".into(),
        virtual_jids,
        limits: crate::jingle::CallLimits {
            max_calls: 10,
            max_calls_per_jid: 5,
            max_calls_per_caller: 5,
            max_calls_per_domain: 8,
            per_caller: crate::rate::Rate::per_minute(100),
            per_domain: crate::rate::Rate::per_minute(100),
        },
        local_domains: vec!["localhost".into()],
        ring_timeout: Duration::from_secs(30),
        answer_timeout: Duration::from_secs(20),
        max_duration: Duration::from_secs(3600),
        fingerprint_sha256: "AA:BB:CC".into(),
        prefer_dtls_active: true,
        resource: "gateway".into(),
        iq_id_prefix: "gw-".into(),
    }
}
