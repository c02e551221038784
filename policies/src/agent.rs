//! The learned agent: scores the scenario's candidates with a trained checkpoint and says
//! the best one (or samples with a temperature).
//!
//! Q learners (ILQL, MC) act by argmax_a min(Q1, Q2)(s, a); BC learners by their policy
//! logits. With `beta` (ILQL trained with `bc_weight > 0`), ILQL acts by
//! log π(a|s) + β·(min Q(s,a) − V(s)), the paper's policy extraction. With
//! `repeat=false` it never says a candidate it already said in the conversation.
//!
//! A checkpoint records the scenario it was trained in and its candidate list; at its first
//! turn the agent refuses another scenario (by name: parameters that only choose which
//! secrets are drawn, such as `split=test`, may differ) or another candidate list.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Result, bail};
use candle_core::{D, Device, Tensor};
use dialogym_engine::{Agent, AgentTurn, NonNegative, Scenario, Spec};
use rand::Rng as _;

use crate::featurize::{Featurizer, HashedNgrams, said_before};
use crate::learners::Acting;
use crate::model::{Network, SaidMatrix};
use crate::nn::{Bags, Params};
use crate::train::{CheckpointInfo, MODEL_FILE, load_info, load_tensors};

/// A trained checkpoint playing the agent's side.
pub struct LearnedAgent {
    net: Network,
    featurizer: HashedNgrams,
    acting: Acting,
    /// What the checkpoint was trained on, checked against the scenario at the first turn.
    trained_on: TrainedOn,
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
        #[derive(serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        struct Params {
            temperature: NonNegative,
            beta: Option<f64>,
            repeat: bool,
        }
        impl Default for Params {
            fn default() -> Self {
                Params { temperature: NonNegative(0.0), beta: None, repeat: true }
            }
        }
        let p: Params = spec.params()?;
        let Some(dir) = spec.arg.as_deref() else { bail!("`learned` needs a checkpoint folder: learned:PATH") };
        let mut agent = Self::load(Path::new(dir), p.temperature.0, p.beta, spec.to_string())?;
        agent.repeat = p.repeat;
        Ok(agent)
    }

    /// Loads a checkpoint folder.
    pub fn load(dir: &Path, temperature: f64, beta: Option<f64>, spec: String) -> Result<LearnedAgent> {
        let info: CheckpointInfo = load_info(dir)?;
        let c = &info.config;
        let acting = c.learner()?.acting();
        if beta.is_some() && acting != (Acting::MinQ { beta: true }) {
            bail!("`{spec}`: beta needs an ILQL checkpoint trained with bc_weight > 0 (this one is `{}`)", c.algo);
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
            acting,
            trained_on: TrainedOn {
                dir: dir.display().to_string(),
                scenario: info.scenario.clone(),
                candidates: info.candidates,
                candidate_list: info.candidate_list.clone(),
                checked: false,
            },
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
        Ok(match (self.acting, self.beta) {
            (Acting::Policy, _) => self.net.policy(&h, u, said)?,
            (Acting::MinQ { .. }, None) => min_q()?,
            (Acting::MinQ { .. }, Some(beta)) => {
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
        if !self.trained_on.checked {
            self.trained_on.check(&scenario.id(), &scenario.candidates(&[]))?;
        }
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

/// The scenario and candidates a checkpoint was trained on.
struct TrainedOn {
    dir: String,
    scenario: String,
    candidates: usize,
    /// Empty for version-1 checkpoints (only `candidates`, the count, was recorded).
    candidate_list: Vec<String>,
    checked: bool,
}

impl TrainedOn {
    /// Refuses a scenario of another name or another candidate list, naming both.
    fn check(&mut self, scenario: &str, candidates: &[String]) -> Result<()> {
        let (mine, theirs) = (scenario_name(&self.scenario), scenario_name(scenario));
        if mine != theirs {
            bail!(
                "checkpoint {} was trained on scenario `{}`, not `{scenario}`; train one on this scenario's corpus",
                self.dir,
                self.scenario
            );
        }
        let same = if self.candidate_list.is_empty() {
            self.candidates == candidates.len()
        } else {
            self.candidate_list.as_slice() == candidates
        };
        if !same {
            let first_difference =
                self.candidate_list.iter().zip(candidates).position(|(a, b)| a != b).map_or(String::new(), |i| {
                    format!("; candidate {i} was `{}`, is `{}`", self.candidate_list[i], candidates[i])
                });
            bail!(
                "checkpoint {} was trained on `{}` with {} candidate utterances, but `{scenario}` offers {} other ones{first_difference}",
                self.dir,
                self.scenario,
                self.candidates,
                candidates.len()
            );
        }
        self.checked = true;
        Ok(())
    }
}

/// A scenario spec's name without its parameters (`twenty-questions(split=test)` →
/// `twenty-questions`); for a scenario file, the file's name without its folder.
fn scenario_name(spec: &str) -> &str {
    let name = spec.split('(').next().unwrap_or(spec).trim();
    let name = name.strip_prefix("file:").unwrap_or(name);
    name.rsplit(['/', '\\']).next().unwrap_or(name)
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
