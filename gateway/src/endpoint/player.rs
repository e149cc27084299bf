//! Plays a queue of prompts (already encoded in the call's codec, from the shared library) or
//! decoded audio (a voicemail message, decoded off the call) one packet time at a time.

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;

use super::Outgoing;
use crate::media::codec::{AudioFrame, FRAME_SAMPLES};
use crate::prompt::{EncodedPrompt, PromptLibrary};
use crate::types::Codec;

/// One thing to play.
enum Item {
    /// A prompt of the library, by spec.
    Prompt(String),
    /// 48 kHz mono samples, once decoded (`None`: they could not be).
    Samples(Receiver<Option<Arc<[i16]>>>),
}

enum Playing {
    Prompt(Arc<EncodedPrompt>, usize),
    Samples(Arc<[i16]>, usize),
}

/// A queue of prompts and audio for one call.
pub struct Player {
    prompts: Arc<PromptLibrary>,
    codec: Codec,
    queue: VecDeque<Item>,
    playing: Option<Playing>,
    frame: AudioFrame,
}

impl Player {
    /// A player of `prompts` for a call in `codec`.
    pub fn new(prompts: Arc<PromptLibrary>, codec: Codec) -> Self {
        Self {
            prompts,
            codec,
            queue: VecDeque::new(),
            playing: None,
            frame: [0; FRAME_SAMPLES],
        }
    }

    /// Plays `spec` after what is queued.
    pub fn queue(&mut self, spec: &str) {
        self.queue.push_back(Item::Prompt(spec.to_string()));
    }

    /// Plays audio (48 kHz mono) after what is queued, once `loading` has it; meanwhile
    /// (should it come late) silence.
    pub fn queue_samples(&mut self, loading: Receiver<Option<Arc<[i16]>>>) {
        self.queue.push_back(Item::Samples(loading));
    }

    /// Stops what is playing and forgets what is queued.
    pub fn stop(&mut self) {
        self.queue.clear();
        self.playing = None;
    }

    /// Stops, then plays `spec`.
    pub fn play(&mut self, spec: &str) {
        self.stop();
        self.queue(spec);
    }

    /// Whether anything is playing or queued.
    pub fn is_busy(&self) -> bool {
        self.playing.is_some() || !self.queue.is_empty()
    }

    /// The next packet time's audio (silence when idle).
    pub fn next_frame(&mut self) -> Outgoing<'_> {
        loop {
            if self.playing.is_none() {
                match self.queue.pop_front() {
                    None => return Outgoing::Silence,
                    Some(Item::Prompt(spec)) => match self.prompts.encoded(&spec, self.codec) {
                        Some(prompt) => self.playing = Some(Playing::Prompt(prompt, 0)),
                        None => {
                            tracing::warn!(%spec, "prompt not available; skipped");
                            continue;
                        }
                    },
                    Some(Item::Samples(loading)) => match loading.try_recv() {
                        Ok(Some(samples)) => self.playing = Some(Playing::Samples(samples, 0)),
                        Ok(None) | Err(TryRecvError::Disconnected) => continue,
                        Err(TryRecvError::Empty) => {
                            self.queue.push_front(Item::Samples(loading));
                            return Outgoing::Silence;
                        }
                    },
                }
            }
            match self.playing.as_mut() {
                Some(Playing::Prompt(prompt, position)) => {
                    let Some(frame) = prompt.frames.get(*position).cloned() else {
                        self.playing = None;
                        continue;
                    };
                    *position += 1;
                    if *position >= prompt.frames.len() {
                        self.playing = None;
                    }
                    return Outgoing::Encoded(frame);
                }
                Some(Playing::Samples(samples, position)) => {
                    if *position >= samples.len() {
                        self.playing = None;
                        continue;
                    }
                    let end = (*position + FRAME_SAMPLES).min(samples.len());
                    let chunk = &samples[*position..end];
                    self.frame[..chunk.len()].copy_from_slice(chunk);
                    self.frame[chunk.len()..].fill(0);
                    *position = end;
                    if *position >= samples.len() {
                        self.playing = None;
                    }
                    return Outgoing::Pcm(&self.frame);
                }
                None => return Outgoing::Silence,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompt::PromptSource;

    fn library() -> Arc<PromptLibrary> {
        let uses = vec![
            ("a".to_string(), "tone:440:100ms".to_string()),
            ("b".to_string(), "silence:40ms".to_string()),
        ];
        Arc::new(PromptLibrary::load(&PromptSource::Builtin, &uses, 60, 1 << 20).unwrap())
    }

    #[test]
    fn plays_the_queue_in_order_then_silence() {
        let mut player = Player::new(library(), Codec::Pcmu);
        player.queue("tone:440:100ms");
        player.queue("missing");
        let (decoded, loading) = std::sync::mpsc::channel();
        player.queue_samples(loading);
        let (_, never) = std::sync::mpsc::channel();
        player.queue_samples(never);
        decoded.send(Some(Arc::from(vec![7i16; 1000]))).unwrap();
        player.queue("silence:40ms");
        let mut kinds = Vec::new();
        while player.is_busy() {
            kinds.push(match player.next_frame() {
                Outgoing::Encoded(_) => 'e',
                Outgoing::Pcm(frame) => {
                    assert!(frame[..40].iter().all(|s| *s == 7));
                    'p'
                }
                Outgoing::Silence => 's',
            });
        }
        assert_eq!(kinds.iter().collect::<String>(), "eeeeeppee");
        assert!(matches!(player.next_frame(), Outgoing::Silence));
        player.queue("tone:440:100ms");
        player.stop();
        assert!(!player.is_busy());
    }
}
