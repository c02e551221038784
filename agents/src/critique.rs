//! The critique-and-rewrite pass of imagination (Hong et al.): a language model reads an
//! imagined dialogue, says in one line what the agent did badly, and rewrites the dialogue
//! so the agent reaches its goal better. Both versions are kept: a revision is a new
//! transcript beside the original, never an edit of it, and an output that does not parse
//! as a dialogue is retried with a fresh seed and counted, never fatal.

use anyhow::Result;
use dialogym_engine::lm::{ChatMessage, ChatRequest, LanguageModel, Sampling};
use dialogym_engine::seed::mix64;
use dialogym_engine::{Message, Role};
use serde::Serialize;

/// Tries per dialogue (the first and the retries).
pub const ROUNDS: usize = 3;

/// What a critique pass produced.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CritiqueStats {
    /// Dialogues with a valid revision.
    pub revised: usize,
    /// Outputs that did not parse, each retried.
    pub invalid_retried: usize,
    /// Dialogues still without a revision after every round.
    pub unrevised: usize,
}

/// One dialogue and its revision.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Revision {
    /// The episode index in its corpus.
    pub episode: u64,
    /// The original transcript, as played.
    pub original: Vec<Message>,
    /// The critique line of the accepted output.
    pub critique: Option<String>,
    /// The rewritten transcript (None: no valid output in [`ROUNDS`] tries).
    pub revised: Option<Vec<Message>>,
    /// The model's raw outputs, one per try.
    pub raw: Vec<String>,
}

/// The request for one dialogue: the task brief as the system prompt, the dialogue as the
/// user turn.
pub fn request(brief: &str, transcript: &[Message], seed: u64) -> ChatRequest {
    let system = format!(
        "You improve dialogues for a goal-directed task.\nTask of the agent: {brief}\n\
         Read the dialogue. First write one line that starts with \"Critique:\" and says what the \
         agent did badly. Then write the improved dialogue, one message per line, each line \
         starting with \"Agent:\" or \"Persona:\", the agent first. The improved agent reaches \
         the goal in fewer turns; the persona stays the same person with the same hidden answers."
    );
    let mut dialogue = String::new();
    for m in transcript {
        let who = if m.role == Role::Agent { "Agent" } else { "Persona" };
        dialogue.push_str(&format!("{who}: {}\n", m.content.trim()));
    }
    ChatRequest {
        messages: vec![
            ChatMessage { role: "system".into(), content: system },
            ChatMessage { role: "user".into(), content: dialogue },
        ],
        sampling: Sampling { temperature: 0.7, top_p: 0.9, top_k: 0, max_tokens: 384, stop: Vec::new(), seed },
    }
}

/// Reads a model's output: the critique line and the rewritten dialogue. Lines that are
/// neither are ignored; the dialogue must start with the agent, alternate speakers and
/// hold no empty message. Returns why it is invalid otherwise.
pub fn parse(output: &str) -> std::result::Result<(String, Vec<Message>), String> {
    let mut critique = None;
    let mut messages: Vec<Message> = Vec::new();
    for line in output.lines().map(str::trim) {
        let lower = line.to_ascii_lowercase();
        let rest = |n: usize| line.get(n..).unwrap_or("").trim().to_string();
        if lower.starts_with("critique:") && critique.is_none() && messages.is_empty() {
            critique = Some(rest("critique:".len()));
        } else if lower.starts_with("agent:") {
            messages.push(Message::agent(rest("agent:".len())));
        } else if lower.starts_with("persona:") {
            messages.push(Message::persona(rest("persona:".len())));
        }
    }
    let critique = critique.filter(|c| !c.is_empty()).ok_or("no \"Critique:\" line before the dialogue")?;
    if messages.is_empty() {
        return Err("no \"Agent:\" / \"Persona:\" lines".into());
    }
    for (i, m) in messages.iter().enumerate() {
        let want = if i % 2 == 0 { Role::Agent } else { Role::Persona };
        if m.role != want {
            return Err(format!("message {} should be the {:?}'s", i + 1, want));
        }
        if m.content.is_empty() {
            return Err(format!("message {} is empty", i + 1));
        }
    }
    Ok((critique, messages))
}

/// Critiques and rewrites `dialogues` (episode index, transcript): every pending dialogue
/// of a round goes to the model as one batch; invalid outputs are retried with a fresh
/// seed derived from (`seed`, episode, round). A model error (a dead server) is an error.
pub fn critique(
    model: &mut dyn LanguageModel,
    brief: &str,
    dialogues: &[(u64, Vec<Message>)],
    seed: u64,
) -> Result<(Vec<Revision>, CritiqueStats)> {
    let mut out: Vec<Revision> = dialogues
        .iter()
        .map(|(episode, t)| Revision {
            episode: *episode,
            original: t.clone(),
            critique: None,
            revised: None,
            raw: vec![],
        })
        .collect();
    let mut stats = CritiqueStats::default();
    for round in 0..ROUNDS {
        let pending: Vec<usize> = (0..out.len()).filter(|&i| out[i].revised.is_none()).collect();
        if pending.is_empty() {
            break;
        }
        let batch: Vec<ChatRequest> = pending
            .iter()
            .map(|&i| {
                let key = mix64(seed ^ mix64(out[i].episode ^ ((round as u64) << 48)));
                request(brief, &out[i].original, key)
            })
            .collect();
        let replies = model.complete(&batch)?;
        if replies.len() != batch.len() {
            anyhow::bail!("the model returned {} completions for {} requests", replies.len(), batch.len());
        }
        for (&i, text) in pending.iter().zip(replies) {
            match parse(&text) {
                Ok((c, messages)) => {
                    out[i].critique = Some(c);
                    out[i].revised = Some(messages);
                }
                Err(_) => stats.invalid_retried += 1,
            }
            out[i].raw.push(text);
        }
    }
    stats.revised = out.iter().filter(|r| r.revised.is_some()).count();
    stats.unrevised = out.len() - stats.revised;
    Ok((out, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers request k of its life with `script[k % len]`, and records the seeds.
    struct Scripted {
        script: Vec<String>,
        calls: usize,
        seeds: Vec<u64>,
    }

    impl LanguageModel for Scripted {
        fn id(&self) -> String {
            "scripted".into()
        }

        fn complete(&mut self, batch: &[ChatRequest]) -> Result<Vec<String>> {
            Ok(batch
                .iter()
                .map(|r| {
                    self.seeds.push(r.sampling.seed);
                    let t = self.script[self.calls % self.script.len()].clone();
                    self.calls += 1;
                    t
                })
                .collect())
        }
    }

    fn dialogue() -> Vec<Message> {
        vec![
            Message::agent("Is it a penguin?"),
            Message::persona("No."),
            Message::agent("Is it alive?"),
            Message::persona("Yes."),
        ]
    }

    const GOOD: &str = "Sure.\nCritique: it guessed before asking anything.\nAgent: Is it alive?\nPersona: Yes.\n\
                        agent: Is it a penguin?\n";

    #[test]
    fn a_good_output_parses_into_critique_and_alternating_messages() {
        let (c, m) = parse(GOOD).expect("valid");
        assert_eq!(c, "it guessed before asking anything.");
        assert_eq!(
            m,
            vec![Message::agent("Is it alive?"), Message::persona("Yes."), Message::agent("Is it a penguin?")]
        );
        assert!(m.iter().all(|x| x.is_action == (x.role == Role::Agent)));
    }

    #[test]
    fn malformed_outputs_are_rejected_with_a_reason() {
        for bad in [
            "Agent: Is it alive?",                                 // no critique
            "Critique: fine.",                                     // no dialogue
            "Critique: x\nPersona: Yes.\nAgent: Is it alive?",     // persona first
            "Critique: x\nAgent: Is it alive?\nAgent: Is it red?", // no alternation
            "Critique: x\nAgent:   \nPersona: No.",                // empty message
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be invalid");
        }
    }

    #[test]
    fn invalid_outputs_are_retried_counted_and_both_versions_kept() {
        // Dialogue 0 gets a bad output first, dialogue 1 a good one; the retry of 0 is good.
        let mut model = Scripted { script: vec!["nonsense".into(), GOOD.into(), GOOD.into()], calls: 0, seeds: vec![] };
        let dialogues = vec![(7, dialogue()), (9, dialogue())];
        let (revs, stats) = critique(&mut model, "find the object", &dialogues, 1).expect("critique");
        assert_eq!(stats, CritiqueStats { revised: 2, invalid_retried: 1, unrevised: 0 });
        assert_eq!(revs.iter().map(|r| r.episode).collect::<Vec<_>>(), vec![7, 9]);
        assert!(revs.iter().all(|r| r.original == dialogue()), "the original is kept verbatim");
        assert_eq!(revs[0].raw.len(), 2);
        assert_eq!(revs[1].raw.len(), 1);
        // Seeds differ per episode and per round, and are reproducible.
        assert_eq!(model.seeds.len(), 3);
        assert!(model.seeds[0] != model.seeds[1] && model.seeds[0] != model.seeds[2]);
        let mut again = Scripted { script: vec!["nonsense".into(), GOOD.into(), GOOD.into()], calls: 0, seeds: vec![] };
        let (revs2, _) = critique(&mut again, "find the object", &dialogues, 1).expect("critique");
        assert_eq!((revs, model.seeds), (revs2, again.seeds));
    }

    #[test]
    fn a_model_that_never_complies_leaves_dialogues_unrevised() {
        let mut model = Scripted { script: vec!["I cannot help with that.".into()], calls: 0, seeds: vec![] };
        let (revs, stats) = critique(&mut model, "find the object", &[(0, dialogue())], 0).expect("critique");
        assert_eq!(stats, CritiqueStats { revised: 0, invalid_retried: ROUNDS, unrevised: 1 });
        assert_eq!(revs[0].revised, None);
        assert_eq!(revs[0].raw.len(), ROUNDS);
    }
}
