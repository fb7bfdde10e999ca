//! The TLS that proa speaks, as a rustls `CryptoProvider` over ring: only what a Kubernetes API server needs, so
//! that the rest is not in the binary. Cipher suites: AES-GCM, TLS 1.3 and TLS 1.2 (ECDHE), which every Go
//! `crypto/tls` server offers, FIPS builds included (ChaCha20-Poly1305 is the one suite left out: Go never
//! prefers it on a CPU with AES instructions, and a FIPS server refuses it). Key exchange: X25519 and P-256 (a
//! FIPS server offers no X25519; every server offers P-256, so P-384 would never be picked). Certificates: every signature webpki verifies with ring (RSA PKCS#1 and PSS,
//! ECDSA P-256 and P-384, Ed25519). No private keys: proa sends no client certificate. Randomness from getrandom(2).

use std::sync::Arc;

use rustls::SignatureScheme;
use rustls::crypto::ring::{cipher_suite, kx_group};
use rustls::crypto::{CryptoProvider, GetRandomFailed, KeyProvider, SecureRandom, WebPkiSupportedAlgorithms};
use rustls::pki_types::PrivateKeyDer;
use rustls::sign::SigningKey;
use webpki::ring as algs;

/// The provider every HTTP client of proa's uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider {
        cipher_suites: vec![
            cipher_suite::TLS13_AES_128_GCM_SHA256,
            cipher_suite::TLS13_AES_256_GCM_SHA384,
            cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        ],
        kx_groups: vec![kx_group::X25519, kx_group::SECP256R1],
        signature_verification_algorithms: SIGNATURES,
        secure_random: &Random,
        key_provider: &NoKeys,
    })
}

/// What rustls's own ring provider verifies, spelt out here so that its cipher suites are not linked in.
static SIGNATURES: WebPkiSupportedAlgorithms = WebPkiSupportedAlgorithms {
    all: &[
        algs::ECDSA_P256_SHA256,
        algs::ECDSA_P256_SHA384,
        algs::ECDSA_P384_SHA256,
        algs::ECDSA_P384_SHA384,
        algs::ED25519,
        algs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
        algs::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
        algs::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
        algs::RSA_PKCS1_2048_8192_SHA256,
        algs::RSA_PKCS1_2048_8192_SHA384,
        algs::RSA_PKCS1_2048_8192_SHA512,
        algs::RSA_PKCS1_2048_8192_SHA256_ABSENT_PARAMS,
        algs::RSA_PKCS1_2048_8192_SHA384_ABSENT_PARAMS,
        algs::RSA_PKCS1_2048_8192_SHA512_ABSENT_PARAMS,
    ],
    mapping: &[
        // TLS 1.2 does not tie the curve to the scheme; TLS 1.3 does.
        (SignatureScheme::ECDSA_NISTP384_SHA384, &[algs::ECDSA_P384_SHA384, algs::ECDSA_P256_SHA384]),
        (SignatureScheme::ECDSA_NISTP256_SHA256, &[algs::ECDSA_P256_SHA256, algs::ECDSA_P384_SHA256]),
        (SignatureScheme::ED25519, &[algs::ED25519]),
        (SignatureScheme::RSA_PSS_SHA512, &[algs::RSA_PSS_2048_8192_SHA512_LEGACY_KEY]),
        (SignatureScheme::RSA_PSS_SHA384, &[algs::RSA_PSS_2048_8192_SHA384_LEGACY_KEY]),
        (SignatureScheme::RSA_PSS_SHA256, &[algs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY]),
        (SignatureScheme::RSA_PKCS1_SHA512, &[algs::RSA_PKCS1_2048_8192_SHA512]),
        (SignatureScheme::RSA_PKCS1_SHA384, &[algs::RSA_PKCS1_2048_8192_SHA384]),
        (SignatureScheme::RSA_PKCS1_SHA256, &[algs::RSA_PKCS1_2048_8192_SHA256]),
    ],
};

/// The kernel's random numbers: getrandom(2), which blocks only until the pool is first seeded.
#[derive(Debug)]
struct Random;

impl SecureRandom for Random {
    #[allow(unsafe_code)] // getrandom(2): std has no public call for it
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        let mut filled = 0;
        while filled < buf.len() {
            let rest = &mut buf[filled..];
            // SAFETY: `rest` is valid for writes of `rest.len()` bytes.
            let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
            match n {
                n if n > 0 => filled += n as usize,
                _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
                _ => return Err(GetRandomFailed),
            }
        }
        Ok(())
    }
}

/// proa has no private keys: it never authenticates with a client certificate.
#[derive(Debug)]
struct NoKeys;

impl KeyProvider for NoKeys {
    fn load_private_key(&self, _: PrivateKeyDer<'static>) -> Result<Arc<dyn SigningKey>, rustls::Error> {
        Err(rustls::Error::General("proa uses no client certificates".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_bytes_fill_the_buffer() {
        let mut a = [0u8; 64];
        let mut b = [0u8; 64];
        Random.fill(&mut a).unwrap();
        Random.fill(&mut b).unwrap();
        assert_ne!(a, b);
        assert_ne!(a, [0u8; 64]);
    }

    #[test]
    fn it_verifies_what_rustls_s_own_ring_provider_verifies() {
        let theirs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        assert_eq!(format!("{:?}", SIGNATURES), format!("{theirs:?}"));
    }

    #[test]
    fn the_provider_is_usable_and_has_no_chacha() {
        let provider = provider();
        assert!(provider.cipher_suites.iter().all(|s| !format!("{:?}", s.suite()).contains("CHACHA")));
        let config = rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions();
        assert!(config.is_ok(), "TLS 1.2 and 1.3 both have suites");
    }
}
