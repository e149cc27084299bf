//! The audio codecs the gateway speaks.

/// An audio codec the gateway speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Opus at 48 kHz.
    Opus,
    /// G.711 µ-law at 8 kHz.
    Pcmu,
    /// G.711 A-law at 8 kHz.
    Pcma,
}

impl Codec {
    /// Codecs in order of preference.
    pub const PREFERENCE: [Codec; 3] = [Codec::Opus, Codec::Pcmu, Codec::Pcma];

    /// RTP clock rate in Hz.
    pub fn clock_rate(&self) -> u32 {
        match self {
            Self::Opus => 48000,
            Self::Pcmu | Self::Pcma => 8000,
        }
    }

    /// Encoding name as in SDP and Jingle.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Opus => "opus",
            Self::Pcmu => "PCMU",
            Self::Pcma => "PCMA",
        }
    }

    /// Channel count announced in Jingle (Opus is always announced as 2).
    pub fn announced_channels(&self) -> u8 {
        match self {
            Self::Opus => 2,
            Self::Pcmu | Self::Pcma => 1,
        }
    }
}
