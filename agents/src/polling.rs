//! Speakers for opinion polling: the scripted respondent, and pollsters that choose
//! questions at random or by expected information gain and then predict the targets with
//! the model's posterior predictive (so the two differ only in which questions they ask).

use anyhow::{Result, bail};
use dialogym_engine::transcript::agent_turns;
use dialogym_engine::{Agent, AgentRow, AgentTurn, Context, Persona, PersonaRow, PersonaTurn, Role, SpeakerRow, Spec};
use dialogym_scenarios::polling::{Poll, PollUtterance, Respondent};
use rand::Rng as _;

fn pollster(spec: &Spec, _: &Poll, _: &Context) -> Result<Box<dyn Agent<Poll>>> {
    match Pollster::from_spec(spec)? {
        Some(p) => Ok(Box::new(p)),
        None => bail!("`{spec}` is not a pollster"),
    }
}

fn respondent(spec: &Spec, _: &Poll, _: &Context) -> Result<Box<dyn Persona<Poll>>> {
    spec.no_params()?;
    Ok(Box::new(RespondentPersona { spec: "respondent".into() }))
}

/// Agents the polling scenario offers.
pub const POLL_AGENTS: &[AgentRow<Poll>] = &[
    SpeakerRow {
        name: "eig-poll",
        aliases: &[],
        usage: "eig-poll(on=targets)",
        help: "asks the question with the highest expected information gain, then predicts",
        build: pollster,
    },
    SpeakerRow {
        name: "random-poll",
        aliases: &[],
        usage: "random-poll",
        help: "asks random unasked questions, then predicts with the same posterior",
        build: pollster,
    },
];

/// Personas the polling scenario offers.
pub const POLL_PERSONAS: &[PersonaRow<Poll>] = &[SpeakerRow {
    name: "respondent",
    aliases: &["oracle"],
    usage: "respondent",
    help: "answers with the answers drawn for its hidden class (alias: oracle)",
    build: respondent,
}];

/// What the information gain is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Objective {
    /// The respondent's class: I(answer; class).
    Class,
    /// The target answers: the expected drop of their predictive entropy.
    Targets,
}

/// How a pollster picks its next question.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// Uniformly among the questions not asked yet.
    Random,
    /// The highest expected information gain (lowest index on ties).
    Eig(Objective),
}

/// A scripted pollster: `budget` questions, then the posterior predictive of the targets.
pub struct Pollster {
    choice: Choice,
    spec: String,
}

impl Pollster {
    /// `random-poll` or `eig-poll(on=targets|class)`.
    pub fn from_spec(spec: &Spec) -> Result<Option<Pollster>> {
        let choice = match spec.name.as_str() {
            "random-poll" => {
                spec.no_params()?;
                Choice::Random
            }
            "eig-poll" => {
                #[derive(serde::Deserialize, Default)]
                #[serde(rename_all = "lowercase")]
                enum On {
                    #[default]
                    Targets,
                    Class,
                }
                #[derive(serde::Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Params {
                    #[serde(default)]
                    on: On,
                }
                match spec.params::<Params>()?.on {
                    On::Targets => Choice::Eig(Objective::Targets),
                    On::Class => Choice::Eig(Objective::Class),
                }
            }
            _ => return Ok(None),
        };
        Ok(Some(Pollster { choice, spec: spec.to_string() }))
    }
}

impl Agent<Poll> for Pollster {
    fn id(&self) -> String {
        self.spec.clone()
    }

    fn act(&mut self, poll: &Poll, turns: &mut [AgentTurn<'_>]) -> Result<Vec<String>> {
        use dialogym_engine::Scenario;
        let model = &poll.model;
        let mut out = Vec::with_capacity(turns.len());
        for turn in turns.iter_mut() {
            let answers = poll.history(turn.transcript);
            let posterior = model.posterior(&answers);
            let asked: Vec<usize> = turn
                .transcript
                .iter()
                .filter(|m| m.role == Role::Agent)
                .filter_map(|m| match poll.interpret(&m.content) {
                    PollUtterance::Ask(q) => Some(q),
                    _ => None,
                })
                .collect();
            let fresh: Vec<usize> = poll.askable.iter().copied().filter(|q| !asked.contains(q)).collect();
            let last_turn = agent_turns(turn.transcript) + 1 >= poll.max_agent_turns();
            if last_turn || fresh.is_empty() {
                out.push(poll.prediction_text(&posterior));
                continue;
            }
            let q = match self.choice {
                Choice::Random => fresh[turn.rng.random_range(0..fresh.len())],
                Choice::Eig(on) => {
                    let gain = |q: usize| match on {
                        Objective::Class => model.class_eig(&posterior, q),
                        Objective::Targets => model.target_eig(&posterior, q, &poll.targets),
                    };
                    let mut best = (fresh[0], f64::NEG_INFINITY);
                    for &q in &fresh {
                        let g = gain(q);
                        if g > best.1 + 1e-12 {
                            best = (q, g);
                        }
                    }
                    best.0
                }
            };
            out.push(model.questions[q].text.clone());
        }
        Ok(out)
    }
}

/// The scripted respondent: answers askable questions with the answers drawn into its
/// hidden state; declines anything else.
pub struct RespondentPersona {
    spec: String,
}

/// The respondent's reply to anything that is not an askable question.
pub const DECLINE: &str = "Sorry, I can only answer the survey's questions.";

impl Persona<Poll> for RespondentPersona {
    fn id(&self) -> String {
        self.spec.clone()
    }

    fn reply(&mut self, poll: &Poll, turns: &mut [PersonaTurn<'_, Respondent>]) -> Result<Vec<String>> {
        Ok(turns
            .iter()
            .map(|t| {
                let said = t.transcript.last().map(|m| m.content.as_str()).unwrap_or("");
                match poll.interpret(said) {
                    PollUtterance::Ask(q) => poll.option_reply(t.hidden.codes[q]),
                    PollUtterance::Predict(_) => "Thank you!".to_string(),
                    PollUtterance::Other => DECLINE.to_string(),
                }
            })
            .collect())
    }
}
