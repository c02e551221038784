//! The learned agent: scores the scenario's candidates with a trained checkpoint and says
//! the best one (or samples with a temperature).
//!
//! Q learners (ILQL, MC) act by argmax_a min(Q1, Q2)(s, a); BC learners by their policy
//! logits. With `beta` (ILQL trained with `bc_weight > 0`), ILQL acts by
//! log π(a|s) + β·(min Q(s,a) − V(s)), the paper's policy extraction. With
//! `repeat=false` it never says a candidate it already said in the conversation.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Result, bail};
use candle_core::{D, Device, Tensor};
use dialogym_engine::{Agent, AgentTurn, Scenario, Spec};
use rand::Rng as _;

use crate::featurize::{Featurizer, HashedNgrams, said_before};
use crate::model::{Network, SaidMatrix};
use crate::nn::{Bags, Params};
use crate::train::{Algo, CheckpointInfo, MODEL_FILE, load_info, load_tensors};

/// A trained checkpoint playing the agent's side.
pub struct LearnedAgent {
    net: Network,
    featurizer: HashedNgrams,
    algo: Algo,
    temperature: f64,
    beta: Option<f64>,
    /// May say an utterance it already said in this conversation.
    repeat: bool,
    spec: String,
    device: Device,
    /// Candidate list → encoded candidates (the list is usually the same every turn).
    encoded: HashMap<Vec<String>, Tensor>,
}

impl LearnedAgent {
    /// Loads `learned:DIR(temperature=0,beta=...,repeat=true)`.
    pub fn from_spec(spec: &Spec) -> Result<LearnedAgent> {
        spec.expect_only(&["temperature", "beta", "repeat"])?;
        let Some(dir) = spec.arg.as_deref() else { bail!("`learned` needs a checkpoint folder: learned:PATH") };
        let temperature: f64 = spec.get("temperature", 0.0)?;
        if !(temperature >= 0.0 && temperature.is_finite()) {
            bail!("`{spec}`: temperature must be ≥ 0");
        }
        let beta = spec.params.get("beta").map(|_| spec.get("beta", 0.0)).transpose()?;
        let mut agent = Self::load(Path::new(dir), temperature, beta, spec.to_string())?;
        agent.repeat = spec.get("repeat", true)?;
        Ok(agent)
    }

    /// Loads a checkpoint folder.
    pub fn load(dir: &Path, temperature: f64, beta: Option<f64>, spec: String) -> Result<LearnedAgent> {
        let info: CheckpointInfo = load_info(dir)?;
        let c = &info.config;
        if beta.is_some() && !(c.algo == Algo::Ilql && c.bc_weight > 0.0) {
            bail!("`{spec}`: beta needs an ILQL checkpoint trained with bc_weight > 0");
        }
        let device = Device::Cpu;
        let mut params = Params::new(&device);
        let mut rng = dialogym_engine::seed::turn_rng(0, 0, dialogym_engine::seed::Stream::Learner);
        let net = Network::new(
            &mut params,
            &c.model,
            c.featurizer.state_buckets(),
            c.featurizer.action_buckets(),
            true,
            &mut rng,
        )?;
        params.load(&load_tensors(&dir.join(MODEL_FILE))?, "online.")?;
        Ok(LearnedAgent {
            net,
            featurizer: c.featurizer.clone(),
            algo: c.algo,
            temperature,
            beta,
            repeat: true,
            spec,
            device,
            encoded: HashMap::new(),
        })
    }

    /// Scores (B, C) of `candidates` in each state.
    pub fn scores(&mut self, states: &[Vec<u32>], said: &SaidMatrix, candidates: &[String]) -> Result<Tensor> {
        if !self.encoded.contains_key(candidates) {
            if self.encoded.len() > 64 {
                self.encoded.clear();
            }
            let feats: Vec<Vec<u32>> = candidates.iter().map(|c| self.featurizer.action(c)).collect();
            let u = self.net.encode_actions(&Bags::new(feats.iter().map(Vec::as_slice), &self.device)?)?;
            self.encoded.insert(candidates.to_vec(), u);
        }
        let u = &self.encoded[candidates];
        let h = self.net.encode_states(&Bags::new(states.iter().map(Vec::as_slice), &self.device)?)?;
        let min_q =
            || -> Result<Tensor> { Ok(self.net.q[0].all(&h, u, said)?.minimum(&self.net.q[1].all(&h, u, said)?)?) };
        Ok(match (self.algo.acts_from_policy(), self.beta) {
            (true, _) => self.net.policy(&h, u, said)?,
            (false, None) => min_q()?,
            (false, Some(beta)) => {
                let logp = candle_nn::ops::log_softmax(&self.net.policy(&h, u, said)?, D::Minus1)?;
                let adv = min_q()?.broadcast_sub(&self.net.value(&h)?.unsqueeze(1)?)?;
                (logp + (adv * beta)?)?
            }
        })
    }
}

impl<S: Scenario> Agent<S> for LearnedAgent {
    fn id(&self) -> String {
        self.spec.clone()
    }

    fn act(&mut self, scenario: &S, turns: &mut [AgentTurn<'_>]) -> Result<Vec<String>> {
        // Conversations that share a candidate list are scored in one forward pass.
        let mut groups: Vec<(Vec<String>, Vec<usize>)> = Vec::new();
        for (i, t) in turns.iter().enumerate() {
            let c = scenario.candidates(t.transcript);
            match groups.iter_mut().find(|g| g.0 == c) {
                Some(g) => g.1.push(i),
                None => groups.push((c, vec![i])),
            }
        }
        let mut out = vec![String::new(); turns.len()];
        for (cands, members) in groups {
            if cands.is_empty() {
                bail!("the scenario offers no candidate utterances to a learned agent");
            }
            let states: Vec<Vec<u32>> = members.iter().map(|&i| self.featurizer.state(turns[i].transcript)).collect();
            let index: HashMap<String, u32> = cands.iter().enumerate().map(|(i, c)| (c.clone(), i as u32)).collect();
            let said: Vec<Vec<(u32, u32)>> =
                members.iter().map(|&i| said_before(turns[i].transcript, &index)).collect();
            let said_m = SaidMatrix::new(said.iter().map(Vec::as_slice), cands.len(), &self.device)?;
            let scores: Vec<Vec<f32>> = self.scores(&states, &said_m, &cands)?.to_vec2()?;
            for ((&i, mut row), said) in members.iter().zip(scores).zip(&said) {
                if !self.repeat && said.len() < row.len() {
                    for &(c, _) in said {
                        row[c as usize] = f32::NEG_INFINITY;
                    }
                }
                out[i] = cands[choose(&row, self.temperature, &mut turns[i].rng)].clone();
            }
        }
        Ok(out)
    }
}

/// Argmax (lowest index on ties) or a softmax sample at `temperature`.
fn choose(scores: &[f32], temperature: f64, rng: &mut dialogym_engine::seed::Rng) -> usize {
    let best = scores.iter().enumerate().fold(0, |b, (i, &s)| if s > scores[b] { i } else { b });
    if temperature <= 0.0 {
        return best;
    }
    let m = scores[best] as f64;
    let w: Vec<f64> = scores.iter().map(|&s| ((s as f64 - m) / temperature).exp()).collect();
    let total: f64 = w.iter().sum();
    let mut u = rng.random::<f64>() * total;
    for (i, x) in w.iter().enumerate() {
        u -= x;
        if u <= 0.0 {
            return i;
        }
    }
    best
}
