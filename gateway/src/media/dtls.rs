//! DTLS-SRTP: the process certificate and its fingerprint, the handshake config that pins the
//! peer's certificate to the fingerprint it signalled, the demultiplexing connection that feeds
//! DTLS only the DTLS records (RFC 7983), and SRTP keys from the finished handshake.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use dtls::config::{ClientAuthType, Config as DtlsConfig, ExtendedMasterSecretType};
use dtls::conn::DTLSConn;
use dtls::crypto::Certificate;
use dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use sha2::{Digest, Sha256, Sha384, Sha512};
use tokio::sync::{mpsc, Mutex};
use webrtc_srtp::protection_profile::ProtectionProfile;
use webrtc_util::Conn;

use super::srtp::SrtpKeys;
use crate::protocol::ice_udp::Fingerprint;
use crate::types::RemoteFingerprint;

/// Why the certificate could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// Reading the file failed.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a usable certificate and key.
    #[error("{path}: not a PEM private key and certificate (ECDSA P-256 or Ed25519): {message}")]
    Parse {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// Generating one failed.
    #[error("cannot generate a DTLS certificate: {0}")]
    Generate(String),
}

/// The certificate all calls use, with its SHA-256 fingerprint.
#[derive(Clone)]
pub struct LocalCertificate {
    /// The certificate and key.
    pub certificate: Certificate,
    /// `AA:BB:...` over the DER.
    pub fingerprint_sha256: String,
}

impl LocalCertificate {
    /// Loads the PEM at `path`, or generates a new certificate when there is none.
    pub fn load_or_generate(path: Option<&Path>) -> Result<Self, CertificateError> {
        let certificate = match path {
            Some(path) => {
                let name = path.display().to_string();
                let pem =
                    std::fs::read_to_string(path).map_err(|source| CertificateError::Read {
                        path: name.clone(),
                        source,
                    })?;
                Certificate::from_pem(&pem).map_err(|e| CertificateError::Parse {
                    path: name,
                    message: e.to_string(),
                })?
            }
            None => Certificate::generate_self_signed(vec!["jingle-gateway".to_string()])
                .map_err(|e| CertificateError::Generate(e.to_string()))?,
        };
        let der = certificate
            .certificate
            .first()
            .ok_or_else(|| CertificateError::Generate("no certificate in the chain".into()))?;
        let fingerprint_sha256 = Fingerprint::format_hex(&Sha256::digest(der.as_ref()));
        Ok(Self {
            certificate,
            fingerprint_sha256,
        })
    }
}

/// The handshake config for one call: our certificate, SRTP profiles (AEAD first), and a check
/// that the peer's certificate matches `expected`.
pub fn handshake_config(local: &LocalCertificate, expected: &RemoteFingerprint) -> DtlsConfig {
    let expected = expected.clone();
    DtlsConfig {
        certificates: vec![local.certificate.clone()],
        srtp_protection_profiles: vec![
            SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
        ],
        extended_master_secret: ExtendedMasterSecretType::Require,
        // As server, ask for the client's certificate so it can be checked at all.
        client_auth: ClientAuthType::RequireAnyClientCert,
        // Self-signed certificates: trust comes from the signalled fingerprint, checked below.
        insecure_skip_verify: true,
        verify_peer_certificate: Some(Arc::new(move |certificates, _| {
            let Some(der) = certificates.first() else {
                return Err(dtls::Error::Other("the peer sent no certificate".into()));
            };
            let digest = match expected.hash {
                "sha-384" => Sha384::digest(der).to_vec(),
                "sha-512" => Sha512::digest(der).to_vec(),
                _ => Sha256::digest(der).to_vec(),
            };
            if digest == expected.digest {
                Ok(())
            } else {
                tracing::warn!(
                    hash = expected.hash,
                    signalled = %Fingerprint::format_hex(&expected.digest),
                    presented = %Fingerprint::format_hex(&digest),
                    "DTLS certificate does not match the fingerprint in the Jingle offer"
                );
                Err(dtls::Error::Other(
                    "certificate fingerprint mismatch".into(),
                ))
            }
        })),
        ..DtlsConfig::default()
    }
}

/// The SRTP profile and keys of a finished handshake.
pub async fn srtp_keys(
    conn: &DTLSConn,
    is_client: bool,
) -> Result<(ProtectionProfile, SrtpKeys), String> {
    let profile = match conn.selected_srtpprotection_profile() {
        SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm => ProtectionProfile::AeadAes128Gcm,
        SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80 => {
            ProtectionProfile::Aes128CmHmacSha1_80
        }
        other => return Err(format!("no usable SRTP profile negotiated ({other:?})")),
    };
    let mut config = webrtc_srtp::config::Config {
        profile,
        ..Default::default()
    };
    config
        .extract_session_keys_from_dtls(conn.connection_state().await, is_client)
        .await
        .map_err(|e| e.to_string())?;
    let keys = config.keys;
    Ok((
        profile,
        SrtpKeys {
            local_key: keys.local_master_key,
            local_salt: keys.local_master_salt,
            remote_key: keys.remote_master_key,
            remote_salt: keys.remote_master_salt,
        },
    ))
}

/// Whether a datagram is a DTLS record (RFC 7983: first byte 20 to 63).
pub fn is_dtls(packet: &[u8]) -> bool {
    matches!(packet.first(), Some(20..=63))
}

/// The connection DTLS runs on: reads only the DTLS records the call task hands it, writes
/// straight to the ICE connection.
pub struct DtlsTransport {
    ice: Arc<dyn Conn + Send + Sync>,
    records: Mutex<mpsc::Receiver<Vec<u8>>>,
}

impl DtlsTransport {
    /// A transport over `ice`, and the sender the call task feeds DTLS records into.
    pub fn new(ice: Arc<dyn Conn + Send + Sync>) -> (Arc<Self>, mpsc::Sender<Vec<u8>>) {
        let (tx, rx) = mpsc::channel(64);
        (
            Arc::new(Self {
                ice,
                records: Mutex::new(rx),
            }),
            tx,
        )
    }
}

#[async_trait::async_trait]
impl Conn for DtlsTransport {
    async fn connect(&self, _addr: SocketAddr) -> webrtc_util::Result<()> {
        Err(webrtc_util::Error::Other("not applicable".into()))
    }

    async fn recv(&self, buf: &mut [u8]) -> webrtc_util::Result<usize> {
        match self.records.lock().await.recv().await {
            Some(record) if record.len() <= buf.len() => {
                buf[..record.len()].copy_from_slice(&record);
                Ok(record.len())
            }
            Some(_) => Err(webrtc_util::Error::ErrBufferShort),
            // The call is over: never return an error in a loop (the DTLS reader would spin).
            None => std::future::pending().await,
        }
    }

    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        let n = self.recv(buf).await?;
        let from = self
            .ice
            .remote_addr()
            .ok_or_else(|| webrtc_util::Error::Other("no selected pair".into()))?;
        Ok((n, from))
    }

    async fn send(&self, buf: &[u8]) -> webrtc_util::Result<usize> {
        self.ice.send(buf).await
    }

    async fn send_to(&self, _buf: &[u8], _target: SocketAddr) -> webrtc_util::Result<usize> {
        Err(webrtc_util::Error::Other("not applicable".into()))
    }

    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        self.ice.local_addr()
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        self.ice.remote_addr()
    }

    async fn close(&self) -> webrtc_util::Result<()> {
        // The ICE connection is closed with its agent.
        Ok(())
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certificate_has_a_sha256_fingerprint() {
        let local = LocalCertificate::load_or_generate(None).unwrap();
        let bytes = Fingerprint {
            hash: "sha-256".into(),
            setup: None,
            value: local.fingerprint_sha256.clone(),
        }
        .bytes()
        .unwrap();
        assert_eq!(bytes.len(), 32);
    }

    #[test]
    fn broken_certificate_files_are_named() {
        let dir = std::env::temp_dir().join(format!("cert-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("broken.pem");
        std::fs::write(&path, "-----BEGIN NONSENSE-----\nAAAA\n").unwrap();
        let error = LocalCertificate::load_or_generate(Some(&path))
            .err()
            .unwrap();
        assert!(error.to_string().contains("broken.pem"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rfc_7983_first_byte() {
        assert!(is_dtls(&[22, 254, 253]));
        assert!(!is_dtls(&[0x80, 111]));
        assert!(!is_dtls(&[0, 1]));
        assert!(!is_dtls(&[]));
    }
}
