//! Sound devices: a call through Prosody to a `sound-device` JID whose speaker and microphone
//! are ALSA PCMs the test controls (the `file` plugin writing playback to a FIFO the test reads
//! in real time, and reading capture from a FIFO the test writes in real time).

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::support::audio::{dominant_frequency, tone_share, Tone};
use crate::support::caller::{CallSetup, Exchange, TestCaller};
use crate::support::servers::{Kind, Server};
use crate::support::{wait_attached, within, GatewayProcess, TempDir};

/// `O_NONBLOCK` on Linux: the test's ends of the FIFOs never block it.
const O_NONBLOCK: i32 = 0o4000;
/// One 20 ms frame of 48 kHz 16-bit mono.
const FRAME_BYTES: usize = 1920;

/// The test's sound card: a speaker (what the gateway plays) and a microphone (what it records).
struct TestSoundCard {
    alsa_config: PathBuf,
    heard: Arc<Mutex<Vec<i16>>>,
    speaker_paused: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl TestSoundCard {
    /// PCMs `gw_speaker` and `gw_mic` in an ALSA config under `dir`; the microphone plays a
    /// tone at `mic_hz`.
    fn new(dir: &Path, mic_hz: f32) -> Self {
        let speaker = dir.join("speaker.fifo");
        let mic = dir.join("mic.fifo");
        for fifo in [&speaker, &mic] {
            let status = std::process::Command::new("mkfifo")
                .arg(fifo)
                .status()
                .expect("mkfifo");
            assert!(status.success(), "mkfifo {}", fifo.display());
        }
        let alsa_config = dir.join("asound.conf");
        let pcm = |name: &str, description: &str, file: &str, infile: &str| {
            format!(
                "pcm.{name} {{\n  type plug\n  slave {{ pcm \"{name}_file\" format S16_LE \
                 channels 1 rate 48000 }}\n  hint {{ show on description \"{description}\" }}\n}}\n\
                 pcm.{name}_file {{\n  type file\n  slave.pcm \"null\"\n  file \"{file}\"\n{infile}  \
                 format \"raw\"\n}}\n"
            )
        };
        let text = pcm(
            "gw_speaker",
            "test speaker",
            &speaker.display().to_string(),
            "",
        ) + &pcm(
            "gw_mic",
            "test microphone",
            "/dev/null",
            &format!("  infile \"{}\"\n", mic.display()),
        );
        std::fs::write(&alsa_config, text).expect("asound.conf");

        let heard = Arc::new(Mutex::new(Vec::new()));
        let speaker_paused = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = vec![
            spawn_speaker(
                &speaker,
                heard.clone(),
                speaker_paused.clone(),
                stop.clone(),
            ),
            spawn_microphone(&mic, mic_hz, stop.clone()),
        ];
        Self {
            alsa_config,
            heard,
            speaker_paused,
            stop,
            threads,
        }
    }

    /// `ALSA_CONFIG_PATH` for the gateway: the system's config, then the test's.
    fn alsa_config_path(&self) -> String {
        format!("/usr/share/alsa/alsa.conf:{}", self.alsa_config.display())
    }

    /// What the speaker played so far.
    fn heard(&self) -> Vec<i16> {
        self.heard.lock().unwrap().clone()
    }
}

impl Drop for TestSoundCard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Opens a FIFO without blocking, holding both ends so the gateway's opens and closes never
/// block or break it.
fn open_fifo(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(O_NONBLOCK)
        .open(path)
        .expect("open fifo")
}

/// Every 20 ms: takes up to 20 ms of what the gateway played (unless paused, as a device that
/// stopped would).
fn spawn_speaker(
    path: &Path,
    heard: Arc<Mutex<Vec<i16>>>,
    paused: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    let mut fifo = open_fifo(path);
    std::thread::spawn(move || {
        let mut buffer = [0u8; FRAME_BYTES];
        let mut odd: Option<u8> = None;
        let mut tick = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            tick += Duration::from_millis(20);
            std::thread::sleep(tick.saturating_duration_since(Instant::now()));
            if paused.load(Ordering::Relaxed) {
                continue;
            }
            let Ok(n) = fifo.read(&mut buffer) else {
                continue;
            };
            let mut bytes: Vec<u8> = odd.take().into_iter().collect();
            bytes.extend_from_slice(&buffer[..n]);
            if bytes.len() % 2 == 1 {
                odd = bytes.pop();
            }
            let mut heard = heard.lock().unwrap();
            heard.extend(
                bytes
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]])),
            );
        }
    })
}

/// Every 20 ms: offers 20 ms of a tone to the gateway's capture.
fn spawn_microphone(path: &Path, hz: f32, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    let mut fifo = open_fifo(path);
    std::thread::spawn(move || {
        let mut tone = Tone::new(hz);
        let mut tick = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            tick += Duration::from_millis(20);
            std::thread::sleep(tick.saturating_duration_since(Instant::now()));
            let bytes: Vec<u8> = tone
                .next_frame()
                .iter()
                .flat_map(|s| s.to_le_bytes())
                .collect();
            // A full FIFO (nobody capturing yet) drops the frame, as a microphone would.
            let _ = fifo.write(&bytes);
        }
    })
}

/// The gateway's log lines about the sound device.
fn sound_log(gateway: &GatewayProcess) -> String {
    gateway
        .log()
        .lines()
        .filter(|line| line.contains("sound"))
        .collect::<Vec<_>>()
        .join("\n")
}

const TABLES: &str = r#"
[endpoints.lobby]
kind = "sound-device"
output = "gw_speaker"
input = "gw_mic"

[endpoints.paging]
kind = "sound-device"
output = "gw_speaker"
input = "gw_mic"
when_busy = "mix"

[endpoints.nowhere]
kind = "sound-device"
output = "no-such-device"
input = false
"#;

/// The share of the 100 ms windows of `samples` (the silent ones left out) that carry `hz`.
/// Windows this short tolerate the small pitch shift of the device's drift-following
/// resampler (a 0.1 % correction moves 1,000 Hz by 1 Hz, which a one-second DFT bin at exactly
/// 1,000 Hz all but misses: the share measured over one second then fell to 0.04 in some runs).
fn windows_carrying(samples: &[i16], hz: f64) -> f64 {
    let windows: Vec<&[i16]> = samples
        .chunks_exact(4800)
        .filter(|w| w.iter().any(|&x| x.unsigned_abs() > 1000))
        .collect();
    let carrying = windows.iter().filter(|w| tone_share(w, hz) > 0.5).count();
    carrying as f64 / windows.len().max(1) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_bridged_to_a_sound_device_on_prosody() {
    within(90, async {
        let server = Server::start(Kind::Prosody);
        let data = TempDir::new("gw");
        let card = TestSoundCard::new(data.path(), 1000.0);
        let alsa = card.alsa_config_path();
        let gateway = GatewayProcess::start(
            &server,
            &data,
            TABLES,
            &[("ALSA_CONFIG_PATH", alsa.as_str())],
            None,
        );
        let mut alice = TestCaller::new(server.c2s_port, "alice").await;
        let mut bob = TestCaller::new(server.c2s_port, "bob").await;
        wait_attached(&mut alice.client).await;

        // Alice's 440 Hz reaches the speaker; the microphone's 1000 Hz reaches Alice. Bob,
        // calling meanwhile, is refused: the device is in use.
        let mut call = alice
            .call("lobby@gw.localhost", &CallSetup::browser())
            .await
            .expect("call accepted");
        let plan = Exchange::tone(5, 440.0);
        let (received, refused) = tokio::join!(alice.exchange(&mut call, &plan), async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            bob.call("lobby@gw.localhost", &CallSetup::browser())
                .await
                .err()
        });
        assert_eq!(refused.as_deref(), Some("busy"));
        assert_eq!(received.terminated, None, "{}", gateway.log());
        let (hz, share) = dominant_frequency(&received.pcm, 1.0);
        assert!(
            (hz - 1000.0).abs() <= 10.0,
            "caller heard {hz} Hz ({share})"
        );
        let held = windows_carrying(&received.pcm, 1000.0);
        assert!(
            held > 0.9,
            "caller heard 1000 Hz in only {held:.2} of its 100 ms windows\n{}",
            sound_log(&gateway)
        );
        let heard = card.heard();
        assert!(
            heard.len() > 48_000 * 2,
            "speaker got {} samples",
            heard.len()
        );
        let (hz, share) = dominant_frequency(&heard, 1.0);
        assert!(
            (hz - 440.0).abs() <= 10.0,
            "speaker played {hz} Hz ({share})"
        );
        let held = windows_carrying(&heard, 440.0);
        assert!(
            held > 0.9,
            "speaker played 440 Hz in only {held:.2} of its 100 ms windows\n{}",
            sound_log(&gateway)
        );
        alice.hang_up(call).await;
        assert!(
            gateway
                .wait_log("sound device closed", 1, Duration::from_secs(10))
                .await,
            "{}",
            gateway.log()
        );

        // A speaker that stops taking audio mid-call ends the call with a reason; the gateway
        // survives, and the device works again for the next call once it is back.
        let mut call = alice
            .call("lobby@gw.localhost", &CallSetup::browser())
            .await
            .expect("second call accepted");
        card.speaker_paused.store(true, Ordering::Relaxed);
        let received = alice.exchange(&mut call, &Exchange::tone(8, 440.0)).await;
        assert_eq!(
            received.terminated.as_deref(),
            Some("failed-application"),
            "{}",
            gateway.log()
        );
        assert!(gateway.log().contains("the output device stopped playing"));
        card.speaker_paused.store(false, Ordering::Relaxed);
        let mut call = bob
            .call("lobby@gw.localhost", &CallSetup::only("PCMU"))
            .await
            .expect("call after the device came back");
        let received = bob.exchange(&mut call, &Exchange::tone(3, 440.0)).await;
        assert_eq!(received.terminated, None, "{}", gateway.log());
        let (hz, _) = dominant_frequency(&received.pcm, 1.0);
        assert!((hz - 1000.0).abs() <= 10.0, "PCMU caller heard {hz} Hz");
        bob.hang_up(call).await;

        // Mixed: two callers at once are both played, and both hear the microphone.
        let mut first = alice
            .call("paging@gw.localhost", &CallSetup::browser())
            .await
            .expect("first mixed call");
        let mut second = bob
            .call("paging@gw.localhost", &CallSetup::browser())
            .await
            .expect("second mixed call");
        let (low, high) = (Exchange::tone(4, 440.0), Exchange::tone(4, 660.0));
        let before = card.heard().len();
        let (heard_by_first, heard_by_second) = tokio::join!(
            alice.exchange(&mut first, &low),
            bob.exchange(&mut second, &high)
        );
        for received in [&heard_by_first, &heard_by_second] {
            assert_eq!(received.terminated, None, "{}", sound_log(&gateway));
            let (hz, _) = dominant_frequency(&received.pcm, 1.0);
            assert!((hz - 1000.0).abs() <= 10.0, "mixed caller heard {hz} Hz");
        }
        // A second from the middle of what the speaker played meanwhile.
        let heard = card.heard();
        let middle = before + (heard.len() - before) / 2;
        let window = &heard[middle - 24_000..middle + 24_000];
        let (a, b) = (tone_share(window, 440.0), tone_share(window, 660.0));
        assert!(
            a > 0.2 && b > 0.2,
            "speaker: 440 Hz {a}, 660 Hz {b}\n{}",
            sound_log(&gateway)
        );
        alice.hang_up(first).await;
        bob.hang_up(second).await;

        // A device that does not exist: the call ends with a reason naming no secrets, and the
        // log says which device.
        let outcome = alice
            .call_ended(
                "nowhere@gw.localhost",
                &CallSetup::browser(),
                Duration::from_secs(10),
            )
            .await;
        assert_eq!(outcome.as_deref(), Some("failed-application"));
        assert!(
            gateway
                .wait_log(
                    "no output device `no-such-device`",
                    1,
                    Duration::from_secs(5)
                )
                .await,
            "{}",
            gateway.log()
        );
        alice.close().await;
        bob.close().await;
    })
    .await;
}
