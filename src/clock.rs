//! The outside world's time and randomness, passed in as values.
//!
//! Nothing below the HTTP layer reads the system clock or an RNG on its own: policy evaluation,
//! session sealing and the OIDC flow take `now` and random bytes as parameters, and the server
//! state holds the one [`Clock`] and the one [`Entropy`] they come from. Tests substitute both.
//! `clippy.toml` bans the hidden clocks everywhere else.

use std::sync::Arc;

/// A source of the current time in Unix seconds (a parameter, so tests can move it).
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock: the one place that reads it.
#[allow(clippy::disallowed_methods)]
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    })
}

/// Fills a buffer with random bytes.
type Fill = dyn Fn(&mut [u8]) + Send + Sync;

/// A source of random bytes: the operating system's, or a test's.
#[derive(Clone)]
pub struct Entropy(Arc<Fill>);

impl Entropy {
    /// The operating system's randomness (through `rand`'s thread-local CSPRNG).
    pub fn system() -> Self {
        Entropy(Arc::new(|buf: &mut [u8]| {
            rand::RngCore::fill_bytes(&mut rand::thread_rng(), buf)
        }))
    }

    /// Randomness from a function (tests: a counter or a seeded generator).
    pub fn from_fn(f: impl Fn(&mut [u8]) + Send + Sync + 'static) -> Self {
        Entropy(Arc::new(f))
    }

    /// `N` fresh random bytes.
    pub fn bytes<const N: usize>(&self) -> [u8; N] {
        let mut b = [0u8; N];
        (self.0)(&mut b);
        b
    }
}

impl std::fmt::Debug for Entropy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Entropy")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_entropy_differs_between_draws() {
        let e = Entropy::system();
        assert_ne!(e.bytes::<16>(), e.bytes::<16>());
    }

    #[test]
    fn test_entropy_is_whatever_the_test_says() {
        let e = Entropy::from_fn(|b| b.fill(7));
        assert_eq!(e.bytes::<3>(), [7, 7, 7]);
    }
}
