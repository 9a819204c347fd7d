//! Announce tokens (BEP 5): a `get_peers` answer carries a token bound to the querier's IP address, and only
//! that address may `announce_peer` with it. A token is the SHA-1 of a secret and the address, cut to 8
//! bytes; the secret is replaced every rotation period and the previous one still accepted, so a token lives
//! between one and two periods.

use rand_core::RngCore;
use sha1::{Digest, Sha1};
use std::net::IpAddr;

/// Bytes of a token we hand out.
pub const TOKEN_LEN: usize = 8;

/// The current and previous token secrets.
#[derive(Debug, Clone)]
pub struct Tokens {
    current: [u8; 16],
    previous: [u8; 16],
}

impl Tokens {
    /// Fresh secrets drawn from `rng`.
    pub fn new(rng: &mut impl RngCore) -> Tokens {
        let mut current = [0u8; 16];
        let mut previous = [0u8; 16];
        rng.fill_bytes(&mut current);
        rng.fill_bytes(&mut previous);
        Tokens { current, previous }
    }

    /// Replace the secret; tokens made with the one before the current stop being accepted.
    pub fn rotate(&mut self, rng: &mut impl RngCore) {
        self.previous = self.current;
        rng.fill_bytes(&mut self.current);
    }

    /// The token for `ip`.
    pub fn issue(&self, ip: IpAddr) -> [u8; TOKEN_LEN] {
        token(&self.current, ip)
    }

    /// Whether `presented` is a token we issued to `ip` under the current or previous secret.
    pub fn accepts(&self, ip: IpAddr, presented: &[u8]) -> bool {
        presented == token(&self.current, ip) || presented == token(&self.previous, ip)
    }
}

fn token(secret: &[u8; 16], ip: IpAddr) -> [u8; TOKEN_LEN] {
    let mut h = Sha1::new();
    h.update(secret);
    match ip {
        IpAddr::V4(a) => h.update(a.octets()),
        IpAddr::V6(a) => h.update(a.octets()),
    }
    let digest = h.finalize();
    let mut out = [0u8; TOKEN_LEN];
    for (o, d) in out.iter_mut().zip(digest.iter()) {
        *o = *d;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn tokens_are_bound_to_the_address_and_live_two_rotations() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut t = Tokens::new(&mut rng);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let tok = t.issue(a);
        assert!(t.accepts(a, &tok));
        assert!(!t.accepts(b, &tok), "another address");
        assert!(!t.accepts(a, &tok[..4]), "a cut token");
        t.rotate(&mut rng);
        assert!(t.accepts(a, &tok), "still valid after one rotation");
        t.rotate(&mut rng);
        assert!(!t.accepts(a, &tok), "expired after two");
    }
}
