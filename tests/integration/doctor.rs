//! The call doctor (`kind = "doctor"`), called by the test caller through Prosody over a path
//! that loses one in ten of the caller's packets during the introduction: the caller hears the
//! introduction, then itself a second late, and after hanging up gets a chat report whose
//! figures match what the path did.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::support::audio::dominant_frequency;
use crate::support::caller::{CallSetup, Exchange, TestCaller};
use crate::support::relay::Relay;
use crate::support::servers::{Kind, Server};
use crate::support::{gateway_config, wait_attached, within, Gateway, TempDir};

/// The number before `unit` in `text` (the first such), e.g. "10.3" of "10.3 % lost".
fn figure(text: &str, unit: &str) -> Option<f64> {
    let end = text.find(unit)?;
    let start = text[..end].trim_end().rfind(' ')? + 1;
    text[start..end].trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_doctor_reports_what_the_call_saw() {
    within(90, async {
        let server = Server::start(Kind::Prosody);
        let data = TempDir::new("gw-doctor");
        let gateway = Gateway::start(gateway_config(&server, &data, &[]));
        let mut alice = TestCaller::new(server.c2s_port, "alice").await;
        wait_attached(&mut alice.client).await;
        let relay = Arc::new(Relay::start().await);
        relay.rules.drop_every_nth_rtp.store(10, Ordering::Relaxed);
        let setup = CallSetup {
            relay: Some(relay.clone()),
            jmi: true,
            ..CallSetup::browser()
        };
        let mut call = alice
            .call("doctor@gw.localhost", &setup)
            .await
            .expect("call");
        let plan = Exchange {
            dtmf: "1#",
            ..Exchange::tone(12, 440.0)
        };
        // Lossy while the introduction plays (7.6 s), clean after, so the echo can be heard
        // as it was sent (the test caller conceals nothing).
        let rules = relay.rules.clone();
        let lossless_later = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(7)).await;
            rules.drop_every_nth_rtp.store(0, Ordering::Relaxed);
        });
        let received = alice.exchange(&mut call, &plan).await;
        lossless_later.await.expect("relay switch");
        assert_eq!(received.terminated, None);
        alice.hang_up(call).await;
        // The introduction (7.6 s), then the caller's own tone a second late.
        let tail = &received.pcm[received.pcm.len().saturating_sub(2 * 48_000)..];
        let (hz, share) = dominant_frequency(tail, 1.0);
        assert!(
            (hz - 440.0).abs() <= 10.0 && share > 0.5,
            "heard {hz} Hz ({share:.2}) at the end"
        );

        let message = alice
            .client
            .expect("the doctor's report", Duration::from_secs(10), |stanza| {
                stanza.name() == "message" && stanza.attr("from") == Some("doctor@gw.localhost")
            })
            .await;
        let report = message
            .get_child("body", crate::support::client::NS_CLIENT)
            .map(|b| b.text())
            .expect("a body");
        eprintln!("{report}");
        let dropped = relay.rules.rtp_dropped.load(Ordering::Relaxed) as f64;
        let seen = relay.rules.rtp_seen.load(Ordering::Relaxed) as f64;
        assert!(dropped > 20.0, "the relay dropped only {dropped} packets");
        let expected = dropped / seen * 100.0;
        for line in [
            "Call test report",
            "Client: announces Jingle audio, ICE-UDP, DTLS-SRTP and JMI.",
            "Ringing: with Jingle Message Initiation",
            "(Opus with in-band FEC); used: opus.",
            "Security: DTLS-SRTP, your fingerprint sha-256, setup actpass",
            "Candidates from your client: host 1; pair used: host ",
            "Keys: 1# arrived.",
            "- over 3 % of your audio was lost",
            "- no relay (TURN) candidates",
        ] {
            assert!(report.contains(line), "{line:?} missing from:\n{report}");
        }
        let loss = figure(&report, "% lost").expect("a loss figure");
        eprintln!("reported {loss} % lost; the relay dropped {expected:.1} % of the RTP");
        assert!(
            (loss - expected).abs() <= 1.5,
            "reported {loss} % lost for {expected:.1} % dropped"
        );
        let rtt = figure(&report, "ms.\n").expect("a round trip");
        assert!(rtt < 100.0, "a {rtt} ms round trip on loopback");
        gateway.stop().await;
        alice.close().await;
    })
    .await;
}
