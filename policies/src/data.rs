//! Transitions for offline RL, built from a corpus.
//!
//! For every agent utterance `i` of an episode:
//! - state `s` = the transcript before it (`messages[..i]`), featurized;
//! - action `a` = the utterance, as an index into the candidate vocabulary (the scenario's
//!   candidates, plus any utterance of the data that is not among them);
//! - reward `r` = the rewards emitted from it up to the next agent utterance;
//! - next state `s'` = the transcript before the next agent utterance (the next
//!   transition's state), or none when the episode ended (`done`);
//! - return-to-go `G` = Σ_k γ^k r_{t+k}, discounted per utterance, for MC regression.

use std::collections::HashMap;

use anyhow::{Result, bail};
use candle_core::{Device, Tensor};
use dialogym_engine::Role;
use dialogym_engine::corpus::EpisodeRecord;
use dialogym_engine::seed::Rng;
use rand::Rng as _;

use crate::featurize::Featurizer;
use crate::model::SaidMatrix;
use crate::nn::Bags;

/// All transitions of a corpus, featurized.
#[derive(Clone, Debug, Default)]
pub struct Transitions {
    /// The action vocabulary.
    pub candidates: Vec<String>,
    /// Features of each candidate.
    pub candidate_features: Vec<Vec<u32>>,
    /// Features of each transition's state.
    pub states: Vec<Vec<u32>>,
    /// Candidate index of each transition's action.
    pub actions: Vec<u32>,
    /// Candidates said before each transition's state, with their class
    /// (`featurize::said_before`).
    pub said: Vec<Vec<(u32, u32)>>,
    /// Reward of each transition.
    pub rewards: Vec<f32>,
    /// Index of the transition whose state is this one's next state (None: done).
    pub next: Vec<Option<u32>>,
    /// Discounted return from each transition on.
    pub returns_to_go: Vec<f32>,
    /// Row (episode) of each transition.
    pub episode: Vec<u32>,
    /// Return of each episode.
    pub episode_returns: Vec<f32>,
    /// Data actions that were not among the scenario's candidates (added to the vocabulary).
    pub added_candidates: usize,
}

impl Transitions {
    /// Builds the transitions of `records`; `candidates` is the scenario's action list.
    pub fn build(
        records: &[EpisodeRecord],
        candidates: &[String],
        featurizer: &dyn Featurizer,
        gamma: f64,
    ) -> Result<Self> {
        let mut t = Transitions::default();
        let mut index: HashMap<String, u32> = HashMap::new();
        for c in candidates {
            if !index.contains_key(c) {
                index.insert(c.clone(), t.candidates.len() as u32);
                t.candidates.push(c.clone());
            }
        }
        for (row, r) in records.iter().enumerate() {
            if r.rewards.len() != r.messages.len() {
                bail!("episode {}: {} rewards for {} messages", r.episode, r.rewards.len(), r.messages.len());
            }
            let acts: Vec<usize> = (0..r.messages.len()).filter(|&i| r.messages[i].role == Role::Agent).collect();
            let first = t.actions.len();
            for (k, &i) in acts.iter().enumerate() {
                let end = acts.get(k + 1).copied().unwrap_or(r.messages.len());
                let text = &r.messages[i].content;
                let a = match index.get(text) {
                    Some(&a) => a,
                    None => {
                        let a = t.candidates.len() as u32;
                        index.insert(text.clone(), a);
                        t.candidates.push(text.clone());
                        t.added_candidates += 1;
                        a
                    }
                };
                t.states.push(featurizer.state(&r.messages[..i]));
                t.said.push(crate::featurize::said_before(&r.messages[..i], &index));
                t.actions.push(a);
                t.rewards.push(r.rewards[i..end].iter().sum::<f64>() as f32);
                t.next.push(if k + 1 < acts.len() { Some((first + k + 1) as u32) } else { None });
                t.episode.push(row as u32);
            }
            // Returns-to-go, backwards.
            let mut g = 0.0f64;
            let mut rtg = vec![0.0f32; acts.len()];
            for k in (0..acts.len()).rev() {
                g = t.rewards[first + k] as f64 + gamma * g;
                rtg[k] = g as f32;
            }
            t.returns_to_go.extend(rtg);
            t.episode_returns.push(r.ret as f32);
        }
        t.candidate_features = t.candidates.iter().map(|c| featurizer.action(c)).collect();
        Ok(t)
    }

    /// Number of transitions.
    pub fn len(&self) -> usize {
        self.actions.len()
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// Transitions of the top `fraction` of episodes by return (filtered BC's data).
    pub fn top_episodes(&self, fraction: f64) -> Vec<u32> {
        let mut rets: Vec<f32> = self.episode_returns.clone();
        rets.sort_by(|a, b| b.total_cmp(a));
        let keep = ((fraction * rets.len() as f64).ceil() as usize).clamp(1, rets.len().max(1));
        let cutoff = rets.get(keep - 1).copied().unwrap_or(f32::NEG_INFINITY);
        (0..self.len() as u32).filter(|&i| self.episode_returns[self.episode[i as usize] as usize] >= cutoff).collect()
    }
}

/// One minibatch on a device.
pub struct Batch {
    /// States.
    pub s: Bags,
    /// Next states (empty bags where done).
    pub s_next: Bags,
    /// (B,) candidate index of the action.
    pub a: Tensor,
    /// (B,) rewards.
    pub r: Tensor,
    /// (B,) 1.0 where the episode ended after this action.
    pub done: Tensor,
    /// (B,) returns-to-go.
    pub rtg: Tensor,
    /// "Already said" class of every (state, candidate).
    pub said: SaidMatrix,
    /// (B,) "already said" class of the data action.
    pub said_a: Tensor,
}

/// Draws `size` transitions (with replacement) from `pool` using `rng`.
pub fn sample(t: &Transitions, pool: &[u32], size: usize, rng: &mut Rng, device: &Device) -> Result<Batch> {
    let idx: Vec<usize> = (0..size).map(|_| pool[rng.random_range(0..pool.len())] as usize).collect();
    let empty: Vec<u32> = Vec::new();
    let s = Bags::new(idx.iter().map(|&i| t.states[i].as_slice()), device)?;
    let s_next = Bags::new(
        idx.iter().map(|&i| t.next[i].map_or(empty.as_slice(), |n| t.states[n as usize].as_slice())),
        device,
    )?;
    let f = |v: Vec<f32>| Tensor::from_vec(v, size, device);
    Ok(Batch {
        s,
        s_next,
        a: Tensor::from_vec(idx.iter().map(|&i| t.actions[i]).collect::<Vec<u32>>(), size, device)?,
        r: f(idx.iter().map(|&i| t.rewards[i]).collect())?,
        done: f(idx.iter().map(|&i| t.next[i].is_none() as u8 as f32).collect())?,
        rtg: f(idx.iter().map(|&i| t.returns_to_go[i]).collect())?,
        said: SaidMatrix::new(idx.iter().map(|&i| t.said[i].as_slice()), t.candidates.len(), device)?,
        said_a: Tensor::from_vec(
            idx.iter()
                .map(|&i| t.said[i].iter().find(|(c, _)| *c == t.actions[i]).map_or(0, |x| x.1))
                .collect::<Vec<u32>>(),
            size,
            device,
        )?,
    })
}
