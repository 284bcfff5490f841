//! Access-token signatures checked with ring, the crypto library the TLS stack already links:
//! jsonwebtoken's [`CryptoProvider`] for the algorithms this server accepts, so jsonwebtoken keeps
//! doing what it does (the header, the claims, `exp`, `nbf`, `iss`, `aud`) while its own
//! RustCrypto backend (RSA, P-256, P-384 and Ed25519 in pure Rust, a second copy of what ring
//! does) stays out of the binary.
//!
//! Only verification: this server never signs a token. ring holds RSA keys to 2048 to 8192 bits,
//! the range every authorization server publishes (RFC 7518 §3.3 asks for at least 2048).

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::signature::{self, Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::signature::{self as ring_sig, RsaPublicKeyComponents, UnparsedPublicKey};

/// The provider: ring's verification for every asymmetric JWT algorithm, no signing.
static RING: CryptoProvider = CryptoProvider {
    signer_factory: no_signing,
    verifier_factory: verifier,
    key_utils: KeyUtils::new_unimplemented(),
};

/// Makes ring the process's JWT verifier. Once is enough; a provider installed before (in the
/// tests, where jsonwebtoken also has its own backend for signing) stays.
pub fn install() {
    let _ = RING.install_default();
}

fn no_signing(_: &Algorithm, _: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    Err(ErrorKind::InvalidAlgorithm.into())
}

/// The verifier for `algorithm` with `key`: asymmetric algorithms only, and only with a key of
/// their family (an RSA key never checks an ES256 signature).
fn verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    let scheme: &'static dyn ring_sig::VerificationAlgorithm = match algorithm {
        Algorithm::RS256 => &ring_sig::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &ring_sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &ring_sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &ring_sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &ring_sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &ring_sig::RSA_PSS_2048_8192_SHA512,
        Algorithm::ES256 => &ring_sig::ECDSA_P256_SHA256_FIXED,
        Algorithm::ES384 => &ring_sig::ECDSA_P384_SHA384_FIXED,
        Algorithm::EdDSA => &ring_sig::ED25519,
        // HMAC (whose "secret" would be the public key), and whatever comes next.
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    };
    if key.family() != algorithm.family() {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    Ok(Box::new(Ring {
        algorithm: *algorithm,
        scheme,
        key: key.clone(),
    }))
}

struct Ring {
    algorithm: Algorithm,
    scheme: &'static dyn ring_sig::VerificationAlgorithm,
    key: DecodingKey,
}

impl Verifier<Vec<u8>> for Ring {
    fn verify(
        &self,
        message: &[u8],
        signature: &Vec<u8>,
    ) -> std::result::Result<(), signature::Error> {
        let checked = match self.key.kind() {
            // A JWK's RSA key: its modulus and exponent.
            DecodingKeyKind::RsaModulusExponent { n, e } => {
                let Some(rsa) = rsa_parameters(self.algorithm) else {
                    return Err(signature::Error::new());
                };
                RsaPublicKeyComponents { n, e }.verify(rsa, message, signature)
            }
            // An EC point (0x04 ‖ x ‖ y), an Ed25519 key, or an RSA key in DER: as ring reads them.
            DecodingKeyKind::SecretOrDer(bytes) => {
                UnparsedPublicKey::new(self.scheme, bytes).verify(message, signature)
            }
        };
        checked.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for Ring {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

/// ring's RSA parameters for an RSA algorithm (the same as [`verifier`]'s scheme, typed).
fn rsa_parameters(algorithm: Algorithm) -> Option<&'static ring_sig::RsaParameters> {
    Some(match algorithm {
        Algorithm::RS256 => &ring_sig::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &ring_sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &ring_sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &ring_sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &ring_sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &ring_sig::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};

    /// An RSA key made for this test alone (`openssl genpkey -algorithm RSA`), never used
    /// anywhere else.
    const TEST_RSA_KEY: &str = "-----BEGIN PRIVATE KEY-----\n\
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCnNi2BZVyzZ6td\n\
cJT+po+EJX3JoTbegLbmdAVdAbDwpyzDuvJdHdOLC0wJj+xzjes6mDDFTJMSF01R\n\
37BHeAyMvVkig0M+mU7dtLYO+KxQztzbOsdTu9hvptGWOsmgWhXuEDG0WohElpVo\n\
YB+9bYWnbc8lLFhYD5QP4hRHWcEQGXZwLl/FvwTYtkKZ78DXorAz13R3/qYuf7tC\n\
jgLaF7UL3Ao7AnYgY9hEsgzFXHsQcwSGrlP0koAYFYHQmqNd5hJdDwrmvUe8kWyi\n\
9UVduH+2vzwW2+BKT4NlzI5z94zle2fczSY6KHFnNWjMH39AIJ2pwhXMNnYd7Y4V\n\
2+CY1a07AgMBAAECggEAFgiVwCZsVo2oxJ7NsK1KXbZCWDE2ADrYybmXGAAy4dCS\n\
8wBtkxHs6rZki3awyIdLwa8FRN0IHOBU2smNj9VaCKpOFmCn70CXZlqQ35yADwPl\n\
5r4yPtk9YMphdW4uBxhn1F9uP/RACZMILAv36BJdrsgm/XXVoaun2IdIzHV0yHCZ\n\
EnTsBbXOz/clxPBP7q9kahgXPTWi3H9Cz1Cs8O1LwaMkALKbw1AcVUDzMz9nftDS\n\
ny4FXxix/yl6GKB2HTJypNU1ROYfCy2nBrfIysPjsickcQ+GXcUJeUA/369UzbxE\n\
7BiE4FEWlB//UH5nTxrUbKQ36FwNZrVp3FKDZ2BetQKBgQDjdOO9T4wYf6VS094y\n\
XVPXIcbGYY475sYE45X6/SjMPFanzAiwWTbxDTucliIU4UGzEU5WSOg/gcLSz4/Z\n\
1ePThYa3XcMxGo8s3omSPuLXFShLQT0CUPT2zAj0c4BxWMAAW91tNGvepEylM6w2\n\
3to/bByFWGiBAOmLQFnaW80ZBwKBgQC8MeaYzH9W9EXnQiaT8nhMDMTEUlLUE00t\n\
R8cipfERZ6+0+hOVbl2u0XMTM1Dd8vx9WKQNRQkqGLy97oDK5Sh0zijYWz/crhKv\n\
fn8NS7mWSk2MqqNLy8n2sVHGa5UbjDnXQqQ16slRfnMD5fzINE+RF0N0zBXXWRl5\n\
5ZQikkbBLQKBgQC+Q9gBUtpI3/XGLE4w6Rqp2aox5gcZmnhIPKwH0N7gwRRntmgK\n\
RAaOa1hTKs8Fkkvn43EZAlGsVfpHZ7LYMHAsTwSavEb7+1CK4vhHKm2MJzmWgdLr\n\
7haLn69Z9IgbyHaLlkzJ/dDB48PtaSUEnTQJW4EcFhEM4Ft7zW+cFbCh3wKBgCpX\n\
a9NrBydwNB4Q0w8sWYZ6xPaKsxoF8bJDWPlhrnhFBNJKBYf0Wd2QQDzMqeAV4Frv\n\
S5G0u5geErEE7TM5Fb4Z+DSdayPigk+7vSgnpmy68PG6Hp1aD2mSgZyL7fNRvF3D\n\
H6EF3x+XvJbe8t20b0Zsnn+zvyJBaKr1TTvt/z9NAoGADaGJC4kRb+8jXCn8/pDr\n\
TQK9Xr2gv3BbZ4f3HVUVkwNQ0NoAr8vQR0IuPQT+t6C4KzuAVaoGNmnhMExkAydH\n\
fPFGDhqOjVYq0YWHIzLw1qyXS9ekURDwyEboeS4yqabrJuc8hh9jCAXup4YkFecj\n\
0oDvNz3BsazX8uZFBHKN5LU=\n\
-----END PRIVATE KEY-----";

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A signature of `message` under `algorithm` with a fresh key (the test's RSA key), and the
    /// public key as a JWK gives it.
    fn signed(algorithm: Algorithm, message: &[u8]) -> (Vec<u8>, DecodingKey) {
        let rng = SystemRandom::new();
        let rsa = |padding: &'static dyn ring_sig::RsaEncoding| {
            let der: String = TEST_RSA_KEY
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .collect();
            let pair = RsaKeyPair::from_pkcs8(&STANDARD.decode(der).unwrap()).unwrap();
            let mut signature = vec![0; pair.public().modulus_len()];
            pair.sign(padding, &rng, message, &mut signature).unwrap();
            let public: RsaPublicKeyComponents<Vec<u8>> = pair.public().into();
            let key = DecodingKey::from_rsa_components(&b64(&public.n), &b64(&public.e)).unwrap();
            (signature, key)
        };
        let ec = |signing: &'static ring_sig::EcdsaSigningAlgorithm| {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(signing, &rng).unwrap();
            let pair = EcdsaKeyPair::from_pkcs8(signing, pkcs8.as_ref(), &rng).unwrap();
            let point = pair.public_key().as_ref();
            let (x, y) = point[1..].split_at((point.len() - 1) / 2);
            let key = DecodingKey::from_ec_components(&b64(x), &b64(y)).unwrap();
            (pair.sign(&rng, message).unwrap().as_ref().to_vec(), key)
        };
        match algorithm {
            Algorithm::RS256 => rsa(&ring_sig::RSA_PKCS1_SHA256),
            Algorithm::RS384 => rsa(&ring_sig::RSA_PKCS1_SHA384),
            Algorithm::RS512 => rsa(&ring_sig::RSA_PKCS1_SHA512),
            Algorithm::PS256 => rsa(&ring_sig::RSA_PSS_SHA256),
            Algorithm::PS384 => rsa(&ring_sig::RSA_PSS_SHA384),
            Algorithm::PS512 => rsa(&ring_sig::RSA_PSS_SHA512),
            Algorithm::ES256 => ec(&ring_sig::ECDSA_P256_SHA256_FIXED_SIGNING),
            Algorithm::ES384 => ec(&ring_sig::ECDSA_P384_SHA384_FIXED_SIGNING),
            Algorithm::EdDSA => {
                let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
                let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
                let key =
                    DecodingKey::from_ed_components(&b64(pair.public_key().as_ref())).unwrap();
                (pair.sign(message).as_ref().to_vec(), key)
            }
            other => panic!("no asymmetric algorithm: {other:?}"),
        }
    }

    /// Every algorithm the resource server accepts: ring and jsonwebtoken's own RustCrypto
    /// backend (in the tests through the dev-dependency) agree on a good signature, on one over
    /// another message, and on one damaged in a byte.
    #[test]
    fn ring_agrees_with_jsonwebtokens_own_backend() {
        let rust_crypto = &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
        let message = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwZXJzb24ifQ";
        for algorithm in crate::oauth::ALLOWED_ALGORITHMS {
            let (signature, key) = signed(algorithm, message);
            let ours = verifier(&algorithm, &key).unwrap();
            let theirs = (rust_crypto.verifier_factory)(&algorithm, &key).unwrap();
            let mut damaged = signature.clone();
            damaged[7] ^= 1;
            for (text, sig, good) in [
                (&message[..], &signature, true),
                (&b"another.message"[..], &signature, false),
                (&message[..], &damaged, false),
            ] {
                assert_eq!(ours.verify(text, sig).is_ok(), good, "{algorithm:?}");
                assert_eq!(theirs.verify(text, sig).is_ok(), good, "{algorithm:?}");
            }
        }
    }

    /// A key of another family than the token's algorithm, and HMAC, are refused outright.
    #[test]
    fn keys_of_another_family_and_hmac_are_refused() {
        let (_, rsa) = signed(Algorithm::RS256, b"m");
        let (_, ec) = signed(Algorithm::ES256, b"m");
        assert!(verifier(&Algorithm::ES256, &rsa).is_err());
        assert!(verifier(&Algorithm::RS256, &ec).is_err());
        assert!(verifier(&Algorithm::EdDSA, &ec).is_err());
        let secret = DecodingKey::from_secret(b"the public key, as HMAC secret").unwrap();
        assert!(verifier(&Algorithm::HS256, &secret).is_err());
        assert!(no_signing(&Algorithm::RS256, &EncodingKey::from_secret(b"k").unwrap()).is_err());
    }
}
