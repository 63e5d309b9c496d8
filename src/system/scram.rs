//! A SCRAM-SHA-256 password verifier, computed here so that the password
//! itself never reaches the server: `CREATE ROLE … PASSWORD 'SCRAM-SHA-256$…'`
//! stores the verifier as it is (RFC 5802, RFC 7677; PostgreSQL's format is
//! `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, base64).
//!
//! psql's `\password` does the same: a statement that fails is written to
//! the server's log with its text, and a plain password would be in it.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// PostgreSQL's default (`scram_iterations`).
const ITERATIONS: u32 = 4096;

/// The verifier of `password` with a 16-byte `salt`.
pub fn verifier(password: &str, salt: &[u8; 16]) -> String {
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, ITERATIONS, &mut salted);
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac(&salted, b"Server Key");
    format!(
        "SCRAM-SHA-256${ITERATIONS}:{}${}:{}",
        B64.encode(salt),
        B64.encode(stored_key),
        B64.encode(server_key)
    )
}

fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape PostgreSQL stores; that the server accepts it for a login
    /// is tested with a real server in tests/it/provision.rs.
    #[test]
    fn the_format_is_postgresqls() {
        let v = verifier("pencil", &[7u8; 16]);
        let parts: Vec<&str> = v.split(['$', ':']).collect();
        assert_eq!(parts[0], "SCRAM-SHA-256");
        assert_eq!(parts[1], "4096");
        assert_eq!(B64.decode(parts[2]).unwrap(), vec![7u8; 16]);
        assert_eq!(B64.decode(parts[3]).unwrap().len(), 32);
        assert_eq!(B64.decode(parts[4]).unwrap().len(), 32);
        assert_ne!(verifier("pencil", &[8u8; 16]), v, "the salt matters");
        assert_ne!(verifier("pencib", &[7u8; 16]), v, "the password matters");
    }

    /// RFC 7677's example (password `pencil`, its salt, 4096 iterations);
    /// the keys were computed independently with Python's hashlib.
    #[test]
    fn rfc7677_keys() {
        let salt: [u8; 16] = B64
            .decode("W22ZaJ0SNY7soEsUEjb6gQ==")
            .unwrap()
            .try_into()
            .unwrap();
        let v = verifier("pencil", &salt);
        assert_eq!(
            v,
            "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
        );
    }
}
