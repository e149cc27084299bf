//! DTLS-SRTP terms agreed in signalling and used by the media leg.

/// Our DTLS role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsRole {
    /// We send the ClientHello (`setup='active'`).
    Client,
    /// We wait for the ClientHello (`setup='passive'`).
    Server,
}

/// Hash functions accepted for the peer's certificate fingerprint, best first.
pub const FINGERPRINT_HASHES: [&str; 3] = ["sha-256", "sha-384", "sha-512"];

/// The peer's DTLS certificate fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFingerprint {
    /// Hash function name (one of [`FINGERPRINT_HASHES`]).
    pub hash: &'static str,
    /// The digest.
    pub digest: Vec<u8>,
}
