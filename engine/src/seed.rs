//! Seeding: every random draw in a run comes from one user-set master seed.
//!
//! A draw made for episode `e`, at message index `t`, by `stream` comes from its own
//! ChaCha8 generator keyed by (master seed, e) with stream (t, stream). Nothing depends on
//! the order in which episodes are played, so the same seed gives the same corpus whatever
//! the concurrency, and a resumed run replays exactly the episodes it lacks.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The generator type used everywhere in dialogym.
pub type Rng = ChaCha8Rng;

/// What a generator is for; part of its stream id, so two uses never share draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Stream {
    /// Sampling the persona's hidden state.
    Hidden = 0,
    /// Choosing the participants of an episode (mixtures of agents or personas).
    Participants = 1,
    /// The agent's draws while it speaks.
    Agent = 2,
    /// The persona's draws while it speaks.
    Persona = 3,
    /// Draws made by learners (minibatch order, initialization).
    Learner = 4,
}

/// SplitMix64 finalizer: a bijective mix that spreads nearby inputs over all 64 bits.
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seed of episode `index` of a run with `master` seed (recorded in the corpus).
pub fn episode_seed(master: u64, index: u64) -> u64 {
    mix64(mix64(master) ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93))
}

/// The generator for one draw site: (episode seed, message index, stream).
pub fn turn_rng(episode_seed: u64, turn: u32, stream: Stream) -> Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&episode_seed.to_le_bytes());
    key[8..16].copy_from_slice(&mix64(episode_seed).to_le_bytes());
    let mut rng = Rng::from_seed(key);
    rng.set_stream(((turn as u64) << 8) | stream as u64);
    rng
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngCore;

    #[test]
    fn streams_differ_and_repeat() {
        let s = episode_seed(7, 3);
        let a = turn_rng(s, 1, Stream::Agent).next_u64();
        assert_eq!(a, turn_rng(s, 1, Stream::Agent).next_u64());
        assert_ne!(a, turn_rng(s, 1, Stream::Persona).next_u64());
        assert_ne!(a, turn_rng(s, 2, Stream::Agent).next_u64());
        assert_ne!(episode_seed(7, 3), episode_seed(7, 4));
        assert_ne!(episode_seed(7, 3), episode_seed(8, 3));
    }
}
