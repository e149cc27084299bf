//! RFC 4733 `telephone-event` digits: received ones are reported once per key press (the
//! packets of one event share a timestamp, and the end packet is sent three times); digits to
//! send become a paced series of event packets. Presses reported by several ways count once.

use std::time::{Duration, Instant};

/// A DTMF key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digit(char);

impl Digit {
    /// The key for an RFC 4733 event code (0–15), if it is a DTMF key.
    pub fn from_event(code: u8) -> Option<Self> {
        const KEYS: &[u8; 16] = b"0123456789*#ABCD";
        KEYS.get(usize::from(code)).map(|k| Self(char::from(*k)))
    }

    /// The key for a character `0-9 * # A-D`.
    pub fn from_char(c: char) -> Option<Self> {
        let c = c.to_ascii_uppercase();
        matches!(c, '0'..='9' | '*' | '#' | 'A'..='D').then_some(Self(c))
    }

    /// The RFC 4733 event code.
    pub fn event(&self) -> u8 {
        match self.0 {
            '0'..='9' => self.0 as u8 - b'0',
            '*' => 10,
            '#' => 11,
            c => c as u8 - b'A' + 12,
        }
    }

    /// The key as a character.
    pub fn as_char(&self) -> char {
        self.0
    }
}

/// The way a key press came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigitSource {
    /// RFC 4733 `telephone-event`.
    Rfc4733,
    /// Tones in the audio.
    Inband,
    /// Typed in a chat message.
    Chat,
}

/// A key press that arrives by two ways (a client sending RFC 4733 and leaving the tone in the
/// audio, say) counts once: the same key from another way within [`MERGE_WINDOW`] is the same
/// press.
#[derive(Debug, Default)]
pub struct DigitMerger {
    last: Option<(Digit, DigitSource, Instant)>,
}

/// How far apart two reports of one press may be.
pub const MERGE_WINDOW: Duration = Duration::from_millis(600);

impl DigitMerger {
    /// Whether `digit` from `source` at `now` is a new press.
    pub fn accept(&mut self, digit: Digit, source: DigitSource, now: Instant) -> bool {
        if let Some((last, last_source, at)) = self.last {
            if last == digit
                && last_source != source
                && now.saturating_duration_since(at) < MERGE_WINDOW
            {
                return false;
            }
        }
        self.last = Some((digit, source, now));
        true
    }
}

/// One received `telephone-event` payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPayload {
    /// Event code.
    pub event: u8,
    /// End of the event.
    pub end: bool,
    /// Volume (dBm0, negated).
    pub volume: u8,
    /// Duration so far, in timestamp units.
    pub duration: u16,
}

impl EventPayload {
    /// Reads a 4-byte event payload.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let bytes: &[u8; 4] = payload.get(..4)?.try_into().ok()?;
        Some(Self {
            event: bytes[0],
            end: bytes[1] & 0x80 != 0,
            volume: bytes[1] & 0x3F,
            duration: u16::from_be_bytes([bytes[2], bytes[3]]),
        })
    }

    /// Writes the 4-byte event payload.
    pub fn to_bytes(&self) -> [u8; 4] {
        let duration = self.duration.to_be_bytes();
        [
            self.event,
            (u8::from(self.end) << 7) | (self.volume & 0x3F),
            duration[0],
            duration[1],
        ]
    }
}

/// Reports each received key press once.
#[derive(Debug, Default)]
pub struct DtmfReceiver {
    last: Option<(u32, u8)>,
}

impl DtmfReceiver {
    /// A received event packet with RTP timestamp `timestamp`: the key, the first time its event
    /// (start timestamp and code) is seen.
    pub fn receive(&mut self, timestamp: u32, payload: &[u8]) -> Option<Digit> {
        let event = EventPayload::parse(payload)?;
        if self.last == Some((timestamp, event.event)) {
            return None;
        }
        let digit = Digit::from_event(event.event)?;
        self.last = Some((timestamp, event.event));
        Some(digit)
    }
}

/// An event packet to send: payload and RTP header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPacket {
    /// The payload.
    pub payload: EventPayload,
    /// Marker bit (first packet of an event).
    pub marker: bool,
    /// Offset of the event's start from the stream's current timestamp, in frames.
    pub started_frames_ago: u32,
}

/// Turns queued digits into event packets, one per 20 ms frame: the tone for
/// [`TONE_FRAMES`] frames, the end packet three times, then [`GAP_FRAMES`] frames of audio.
#[derive(Debug, Default)]
pub struct DtmfSender {
    queue: std::collections::VecDeque<Digit>,
    current: Option<(Digit, u32)>,
    gap: u32,
}

/// Frames of tone per digit (100 ms).
pub const TONE_FRAMES: u32 = 5;
/// End packets sent for each digit.
const END_COPIES: u32 = 3;
/// Frames of audio between digits.
const GAP_FRAMES: u32 = 3;

/// Keys waiting to be sent, at most (more are dropped: they would take seconds to send).
const MAX_QUEUED: usize = 16;

impl DtmfSender {
    /// Queues a key to send; returns false when the queue is full and the key is dropped.
    pub fn push(&mut self, digit: Digit) -> bool {
        if self.queue.len() >= MAX_QUEUED {
            return false;
        }
        self.queue.push_back(digit);
        true
    }

    /// The event packet for this frame, if a digit is being sent. `units_per_frame` is the RTP
    /// clock's units in 20 ms.
    pub fn next_frame(&mut self, units_per_frame: u32) -> Option<EventPacket> {
        if self.current.is_none() {
            if self.gap > 0 {
                self.gap -= 1;
                return None;
            }
            self.current = Some((self.queue.pop_front()?, 0));
        }
        let (digit, frame) = self.current?;
        let tone_frames = TONE_FRAMES.min(frame + 1);
        let end = frame + 1 >= TONE_FRAMES;
        let packet = EventPacket {
            payload: EventPayload {
                event: digit.event(),
                end,
                volume: 10,
                duration: u16::try_from(tone_frames * units_per_frame).unwrap_or(u16::MAX),
            },
            marker: frame == 0,
            started_frames_ago: frame,
        };
        if frame + 1 >= TONE_FRAMES + END_COPIES - 1 {
            self.current = None;
            self.gap = GAP_FRAMES;
        } else {
            self.current = Some((digit, frame + 1));
        }
        Some(packet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(code: u8, end: bool, duration: u16) -> [u8; 4] {
        EventPayload {
            event: code,
            end,
            volume: 10,
            duration,
        }
        .to_bytes()
    }

    #[test]
    fn each_key_press_is_reported_once() {
        let mut receiver = DtmfReceiver::default();
        let mut keys = String::new();
        // "1" then "1" again: same key, different events (timestamps).
        for (ts, payload) in [
            (1000, event(1, false, 160)),
            (1000, event(1, false, 320)),
            (1000, event(1, true, 800)),
            (1000, event(1, true, 800)),
            (1000, event(1, true, 800)),
            (5000, event(1, false, 160)),
            (5000, event(1, true, 800)),
            (9000, event(11, true, 800)), // only the end packets arrived: still one press
            (9000, event(11, true, 800)),
        ] {
            if let Some(digit) = receiver.receive(ts, &payload) {
                keys.push(digit.as_char());
            }
        }
        assert_eq!(keys, "11#");
    }

    #[test]
    fn junk_events_are_ignored() {
        let mut receiver = DtmfReceiver::default();
        assert_eq!(receiver.receive(1, &[1, 2]), None);
        assert_eq!(receiver.receive(2, &event(200, false, 1)), None);
    }

    #[test]
    fn sender_paces_tone_end_copies_and_gap() {
        let mut sender = DtmfSender::default();
        sender.push(Digit::from_char('5').unwrap());
        sender.push(Digit::from_char('#').unwrap());
        let frames: Vec<Option<EventPacket>> = (0..20).map(|_| sender.next_frame(960)).collect();
        let first: Vec<&EventPacket> = frames[..7].iter().map(|f| f.as_ref().unwrap()).collect();
        assert!(first[0].marker && !first[1].marker);
        assert_eq!(first.iter().filter(|p| p.payload.end).count(), 3);
        assert_eq!(first[6].payload.duration, 5 * 960);
        assert!(first.iter().all(|p| p.payload.event == 5));
        assert!(frames[7..10].iter().all(Option::is_none));
        assert_eq!(frames[10].unwrap().payload.event, 11);
        assert!(frames[17..].iter().all(Option::is_none));
    }

    #[test]
    fn the_send_queue_is_bounded() {
        let mut sender = DtmfSender::default();
        let five = Digit::from_char('5').unwrap();
        assert!((0..MAX_QUEUED).all(|_| sender.push(five)));
        assert!(!sender.push(five));
    }

    #[test]
    fn round_trip_of_a_sent_digit() {
        let mut sender = DtmfSender::default();
        let mut receiver = DtmfReceiver::default();
        sender.push(Digit::from_char('*').unwrap());
        let mut got = Vec::new();
        while let Some(packet) = sender.next_frame(160) {
            got.extend(receiver.receive(42, &packet.payload.to_bytes()));
        }
        assert_eq!(got, [Digit::from_char('*').unwrap()]);
    }
}

#[cfg(test)]
mod merger_tests {
    use super::*;

    #[test]
    fn a_press_seen_two_ways_counts_once() {
        let start = Instant::now();
        let five = Digit::from_char('5').unwrap();
        let mut merger = DigitMerger::default();
        assert!(merger.accept(five, DigitSource::Rfc4733, start));
        // The tone in the audio, found a little later: the same press.
        assert!(!merger.accept(five, DigitSource::Inband, start + Duration::from_millis(80)));
        // The same way again is a new press; so is another way much later.
        assert!(merger.accept(
            five,
            DigitSource::Rfc4733,
            start + Duration::from_millis(300)
        ));
        assert!(merger.accept(five, DigitSource::Chat, start + Duration::from_secs(2)));
        assert!(merger.accept(
            Digit::from_char('6').unwrap(),
            DigitSource::Inband,
            start + Duration::from_secs(2)
        ));
    }
}
