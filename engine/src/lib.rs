//! dialogym's engine: the types of a conversation, the ECS world that plays many of them
//! at once, and the corpus they are written to.
//!
//! The engine knows nothing of particular scenarios, agents or models: scenarios implement
//! [`Scenario`], speakers implement [`Agent`] and [`Persona`], language-model backends
//! implement [`lm::LanguageModel`].

pub mod context;
pub mod corpus;
pub mod judge;
pub mod lm;
pub mod scenario;
pub mod seed;
pub mod speaker;
pub mod spec;
pub mod stats;
pub mod transcript;
pub mod util;
pub mod world;

pub use context::Context;
pub use scenario::{Judgement, Scenario};
pub use speaker::{Agent, AgentRow, AgentTurn, Persona, PersonaRow, PersonaTurn, SpeakerRow};
pub use spec::{MixSpec, NonNegative, Probability, Spec};
pub use transcript::{Message, Role};
