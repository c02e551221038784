//! Entity scenarios as TOML files: the format users write without touching Rust, and the
//! format 20 Questions' own knowledge table is written in. See `docs/scenario-files.md`.
//!
//! ```toml
//! [scenario]
//! name = "guess-the-animal"
//! max_turns = 12
//! [[entity]]
//! names = ["Penguin"]
//! category = "Birds"
//! [[attribute]]
//! id = "can_fly"
//! question = "Can it fly?"
//! yes = ["@Birds"]        # canonical names or @Category
//! no = ["Penguin"]        # an explicit name beats its category
//! ```
//!
//! An entity's answer to an attribute: the list that names it explicitly; else the list
//! that names its category or one of its open values (`continent=Europe`); else "no".
//!
//! Open attributes are answered with a word, not yes/no:
//!
//! ```toml
//! [[open]]
//! id = "continent"
//! question = "What continent is it on?"
//! [[entity]]
//! names = ["Paris"]
//! values = { continent = "Europe" }
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::entity::{Answer, AnswerWords, Attribute, Entity, EntityTable, OpenAttribute, Rules, normalize};

/// A problem in a scenario file, located by line and column (1-based).
#[derive(Clone, Debug, PartialEq)]
pub struct FileError {
    /// The file as the user named it.
    pub path: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.path, self.line, self.column, self.message)
    }
}

/// All the problems found in one file.
#[derive(Clone, Debug, PartialEq)]
pub struct FileErrors(pub Vec<FileError>);

impl fmt::Display for FileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FileErrors {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    scenario: Option<Spanned<Header>>,
    answers: Option<AnswersDoc>,
    #[serde(default)]
    entity: Vec<Spanned<EntityDoc>>,
    #[serde(default)]
    attribute: Vec<Spanned<AttributeDoc>>,
    #[serde(default)]
    open: Vec<Spanned<OpenDoc>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    #[serde(default = "default_noun")]
    noun: String,
    #[serde(default = "default_max_turns")]
    max_turns: Spanned<i64>,
    #[serde(default = "default_cost")]
    question_cost: Spanned<f64>,
    #[serde(default = "zero")]
    success_reward: Spanned<f64>,
    #[serde(default = "zero")]
    slip: Spanned<f64>,
    #[serde(default = "default_guess")]
    guess_template: String,
    persona_card: Option<String>,
    agent_brief: Option<String>,
}

fn default_noun() -> String {
    "object".into()
}
fn default_max_turns() -> Spanned<i64> {
    Spanned::new(0..0, 20)
}
fn default_cost() -> Spanned<f64> {
    Spanned::new(0..0, 1.0)
}
fn zero() -> Spanned<f64> {
    Spanned::new(0..0, 0.0)
}
fn default_guess() -> String {
    "Is it {article} {name}?".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnswersDoc {
    yes: Option<String>,
    no: Option<String>,
    sometimes: Option<String>,
    unknown: Option<String>,
    correct: Option<String>,
    wrong: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntityDoc {
    names: Vec<Spanned<String>>,
    #[serde(default)]
    category: String,
    /// Open attribute id → this entity's value.
    #[serde(default)]
    values: BTreeMap<Spanned<String>, Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenDoc {
    id: Spanned<String>,
    question: Spanned<String>,
    /// The vocabulary in order; when empty, the values the entities use, in order of first use.
    #[serde(default)]
    options: Vec<Spanned<String>>,
    /// How the persona says a value (default "{value}.").
    reply: Option<Spanned<String>>,
    /// The value of entities that do not give one.
    default: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttributeDoc {
    id: Spanned<String>,
    question: Spanned<String>,
    #[serde(default)]
    yes: Vec<Spanned<String>>,
    #[serde(default)]
    sometimes: Vec<Spanned<String>>,
    #[serde(default)]
    no: Vec<Spanned<String>>,
}

/// A parsed scenario file: rules and table.
#[derive(Clone, Debug)]
pub struct ScenarioFile {
    /// Rules of play.
    pub rules: Rules,
    /// The knowledge table.
    pub table: EntityTable,
}

struct Ctx<'a> {
    path: &'a str,
    text: &'a str,
    errors: Vec<FileError>,
}

impl Ctx<'_> {
    fn err(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, column) = line_col(self.text, span.start);
        self.errors.push(FileError { path: self.path.to_string(), line, column, message: message.into() });
    }
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Parses a scenario file. `path` only names the file in errors. `entities`: entities given
/// outside the file (20 Questions keeps LMRL-Gym's object list in its own JSON); when None
/// the file's `[[entity]]` tables are used.
pub fn parse(path: &str, text: &str, entities: Option<Vec<Entity>>) -> Result<ScenarioFile, FileErrors> {
    let mut cx = Ctx { path, text, errors: Vec::new() };
    let doc: Doc = match toml::from_str(text) {
        Ok(d) => d,
        Err(e) => {
            cx.err(e.span().unwrap_or(0..0), e.message().to_string());
            return Err(FileErrors(cx.errors));
        }
    };
    let header = match doc.scenario {
        Some(h) => h.into_inner(),
        None => {
            cx.err(0..0, "missing [scenario] table (name, max_turns, question_cost, ...)");
            return Err(FileErrors(cx.errors));
        }
    };
    // Each entity's open values, with the span of its table (for "no value" errors).
    let mut entity_values: Vec<(Range<usize>, BTreeMap<Spanned<String>, Spanned<String>>)> = Vec::new();
    let entities = match entities {
        Some(list) => {
            if !doc.entity.is_empty() {
                cx.err(doc.entity[0].span(), "this scenario's entities come from elsewhere; remove [[entity]]");
            }
            entity_values.resize_with(list.len(), || (0..0, BTreeMap::new()));
            list
        }
        None => {
            let mut list = Vec::new();
            for e in doc.entity {
                let span = e.span();
                let e = e.into_inner();
                if e.names.is_empty() {
                    cx.err(span, "an entity needs at least one name");
                    continue;
                }
                list.push(Entity {
                    names: e.names.into_iter().map(Spanned::into_inner).collect(),
                    category: e.category,
                });
                entity_values.push((span, e.values));
            }
            list
        }
    };
    if entities.len() < 2 {
        cx.err(0..0, format!("a scenario needs at least 2 entities, found {}", entities.len()));
    }
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    for (i, e) in entities.iter().enumerate() {
        if by_name.insert(e.names[0].as_str(), i).is_some() {
            cx.err(0..0, format!("two entities share the name `{}`", e.names[0]));
        }
    }
    let categories: HashSet<&str> = entities.iter().map(|e| e.category.as_str()).collect();

    let max_turns = *header.max_turns.get_ref();
    if max_turns < 1 {
        cx.err(header.max_turns.span(), "max_turns must be at least 1");
    }
    for (field, v) in [("question_cost", &header.question_cost), ("success_reward", &header.success_reward)] {
        if !v.get_ref().is_finite() {
            cx.err(v.span(), format!("{field} must be a finite number"));
        }
    }
    if !(0.0..=1.0).contains(header.slip.get_ref()) {
        cx.err(header.slip.span(), "slip must lie in [0, 1]");
    }
    if !header.guess_template.contains("{name}") && !header.guess_template.contains("{Name}") {
        cx.err(header.name.span(), "guess_template must contain {name} or {Name}");
    }

    let mut ids = HashSet::new();
    let mut questions = HashSet::new();
    let (open, open_values) = parse_open(&mut cx, doc.open, &entities, &entity_values, &mut ids, &mut questions);
    let open_ids: HashMap<&str, usize> = open.iter().enumerate().map(|(o, a)| (a.id.as_str(), o)).collect();

    let mut attributes = Vec::new();
    let mut answers = Vec::new();
    if doc.attribute.is_empty() && open.is_empty() {
        cx.err(0..0, "a scenario needs at least one [[attribute]] or [[open]] attribute");
    }
    for attr in doc.attribute {
        let attr = attr.into_inner();
        if !ids.insert(attr.id.get_ref().clone()) {
            cx.err(attr.id.span(), format!("attribute id `{}` is used twice", attr.id.get_ref()));
        }
        if !questions.insert(crate::entity::normalize(attr.question.get_ref())) {
            cx.err(attr.question.span(), format!("question `{}` is asked twice", attr.question.get_ref()));
        }
        let mut explicit: Vec<Option<Answer>> = vec![None; entities.len()];
        let mut by_category: HashMap<&str, Answer> = HashMap::new();
        // Open-value selectors (`continent=Europe`): (open attribute, value, answer, span).
        let mut by_value: Vec<(usize, usize, Answer, Range<usize>)> = Vec::new();
        for (answer, list) in [(Answer::Yes, &attr.yes), (Answer::Sometimes, &attr.sometimes), (Answer::No, &attr.no)] {
            for item in list {
                let name = item.get_ref().as_str();
                if !by_name.contains_key(name)
                    && let Some((id, value)) = name.split_once('=')
                {
                    let (id, value) = (id.trim(), value.trim());
                    let Some(&o) = open_ids.get(id) else {
                        cx.err(item.span(), format!("unknown open attribute `{id}` in selector `{name}`"));
                        continue;
                    };
                    let Some(v) = open[o].values.iter().position(|x| x == value) else {
                        let options = open[o].values.join(", ");
                        cx.err(item.span(), format!("`{value}` is not a value of `{id}` (values: {options})"));
                        continue;
                    };
                    if by_value.iter().any(|s| (s.0, s.1) == (o, v)) {
                        cx.err(item.span(), format!("`{name}` appears twice in attribute `{}`", attr.id.get_ref()));
                    }
                    by_value.push((o, v, answer, item.span()));
                    continue;
                }
                if let Some(cat) = name.strip_prefix('@') {
                    let Some(&cat) = categories.get(cat) else {
                        cx.err(item.span(), format!("unknown category `{cat}`"));
                        continue;
                    };
                    if by_category.insert(cat, answer).is_some() {
                        cx.err(
                            item.span(),
                            format!("category `{cat}` appears twice in attribute `{}`", attr.id.get_ref()),
                        );
                    }
                } else {
                    let Some(&e) = by_name.get(name) else {
                        cx.err(item.span(), format!("unknown entity `{name}` (use its first name)"));
                        continue;
                    };
                    if explicit[e].replace(answer).is_some() {
                        cx.err(item.span(), format!("`{name}` appears twice in attribute `{}`", attr.id.get_ref()));
                    }
                }
            }
        }
        let mut column = Vec::with_capacity(entities.len());
        for (e, ent) in entities.iter().enumerate() {
            let mut group = by_category.get(ent.category.as_str()).copied();
            for (o, v, answer, span) in &by_value {
                if open_values[*o][e] != *v {
                    continue;
                }
                match group {
                    Some(g) if g != *answer && explicit[e].is_none() => cx.err(
                        span.clone(),
                        format!(
                            "`{}` is matched by two selectors with different answers in attribute `{}`; \
                             name it explicitly",
                            ent.names[0],
                            attr.id.get_ref()
                        ),
                    ),
                    _ => group = Some(*answer),
                }
            }
            column.push(explicit[e].or(group).unwrap_or(Answer::No));
        }
        attributes.push(Attribute { id: attr.id.into_inner(), question: attr.question.into_inner() });
        answers.push(column);
    }

    let mut words = AnswerWords::default();
    if let Some(a) = doc.answers {
        let slots = [
            (a.yes, &mut words.yes),
            (a.no, &mut words.no),
            (a.sometimes, &mut words.sometimes),
            (a.unknown, &mut words.unknown),
            (a.correct, &mut words.correct),
            (a.wrong, &mut words.wrong),
        ];
        for (given, slot) in slots {
            if let Some(g) = given {
                *slot = g;
            }
        }
    }
    let noun = header.noun.clone();
    let rules = Rules {
        name: header.name.get_ref().clone(),
        description: header.description,
        max_turns: max_turns.max(1) as usize,
        question_cost: *header.question_cost.get_ref(),
        slip: *header.slip.get_ref(),
        success_reward: *header.success_reward.get_ref(),
        guess_template: header.guess_template,
        answers: words,
        persona_card: header.persona_card.unwrap_or_else(|| {
            format!(
                "You are playing a guessing game. You are thinking of this {noun}: {{name}} ({{category}}). \
                 The other player asks questions to find it. Answer each question truthfully about a typical \
                 {{name}} with exactly one of: Yes. No. Sometimes. Never say its name."
            )
        }),
        agent_brief: header.agent_brief.unwrap_or_else(|| {
            format!(
                "You are playing a guessing game. The other player is thinking of a {noun}. Ask short yes/no \
                 questions to narrow it down; when you are fairly sure, ask \"Is it a <{noun}>?\". Ask one \
                 question per turn."
            )
        }),
        noun,
    };
    if !cx.errors.is_empty() {
        return Err(FileErrors(cx.errors));
    }
    match EntityTable::new(entities, attributes, answers).and_then(|t| t.with_open(open, open_values)) {
        Ok(table) => Ok(ScenarioFile { rules, table }),
        Err(e) => {
            cx.err(0..0, e.to_string());
            Err(FileErrors(cx.errors))
        }
    }
}

/// Parses the `[[open]]` tables and every entity's values: the attributes and, per
/// attribute, each entity's value code. Ids and questions join the file-wide sets.
fn parse_open(
    cx: &mut Ctx<'_>,
    docs: Vec<Spanned<OpenDoc>>,
    entities: &[Entity],
    entity_values: &[(Range<usize>, BTreeMap<Spanned<String>, Spanned<String>>)],
    ids: &mut HashSet<String>,
    questions: &mut HashSet<String>,
) -> (Vec<OpenAttribute>, Vec<Vec<usize>>) {
    let mut open = Vec::new();
    let mut codes = Vec::new();
    for doc in docs {
        let span = doc.span();
        let doc = doc.into_inner();
        let id = doc.id.get_ref().clone();
        if !ids.insert(id.clone()) {
            cx.err(doc.id.span(), format!("attribute id `{id}` is used twice"));
        }
        if !questions.insert(normalize(doc.question.get_ref())) {
            cx.err(doc.question.span(), format!("question `{}` is asked twice", doc.question.get_ref()));
        }
        let reply = doc.reply.map_or_else(
            || "{value}.".to_string(),
            |r| {
                if !r.get_ref().contains("{value}") {
                    cx.err(r.span(), "reply must contain {value}");
                }
                r.into_inner()
            },
        );
        let mut values: Vec<String> = Vec::new();
        for o in &doc.options {
            if values.contains(o.get_ref()) {
                cx.err(o.span(), format!("option `{}` is listed twice", o.get_ref()));
            } else {
                values.push(o.get_ref().clone());
            }
        }
        let declared = !values.is_empty();
        let default = doc.default.as_ref().map(|d| d.get_ref().clone());
        if let Some(d) = &doc.default
            && declared
            && !values.contains(d.get_ref())
        {
            cx.err(d.span(), format!("default `{}` is not one of the options", d.get_ref()));
        }
        let mut column = Vec::with_capacity(entities.len());
        for (e, ent) in entities.iter().enumerate() {
            let (ent_span, given) = &entity_values[e];
            let value = match given.iter().find(|(k, _)| k.get_ref() == &id) {
                Some((_, v)) => {
                    if declared && !values.contains(v.get_ref()) {
                        cx.err(
                            v.span(),
                            format!("`{}` is not an option of `{id}` (options: {})", v.get_ref(), values.join(", ")),
                        );
                    }
                    v.get_ref().clone()
                }
                None => match &default {
                    Some(d) => d.clone(),
                    None => {
                        cx.err(
                            ent_span.clone(),
                            format!("`{}` has no value for open attribute `{id}`, which has no default", ent.names[0]),
                        );
                        String::new()
                    }
                },
            };
            let code = match values.iter().position(|x| *x == value) {
                Some(c) => c,
                None => {
                    values.push(value);
                    values.len() - 1
                }
            };
            column.push(code);
        }
        if values.is_empty() {
            cx.err(span.clone(), format!("open attribute `{id}` has no values"));
        }
        let mut seen = HashMap::new();
        for v in &values {
            if let Some(prev) = seen.insert(normalize(v), v) {
                cx.err(span.clone(), format!("open attribute `{id}`: values `{prev}` and `{v}` read alike"));
            }
        }
        open.push(OpenAttribute { id, question: doc.question.into_inner(), values, reply });
        codes.push(column);
    }
    let known: HashSet<&str> = open.iter().map(|a| a.id.as_str()).collect();
    for (_, given) in entity_values {
        for k in given.keys() {
            if !known.contains(k.get_ref().as_str()) {
                cx.err(k.span(), format!("unknown open attribute `{}` (declare it in an [[open]] table)", k.get_ref()));
            }
        }
    }
    (open, codes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"
[scenario]
name = "tiny"
max_turns = 5
[[entity]]
names = ["Penguin"]
category = "Birds"
[[entity]]
names = ["Robin"]
category = "Birds"
[[entity]]
names = ["Cat", "Kitty"]
category = "Mammals"
[[attribute]]
id = "fly"
question = "Can it fly?"
yes = ["@Birds"]
no = ["Penguin"]
[[attribute]]
id = "fur"
question = "Does it have fur?"
yes = ["@Mammals"]
"#;

    #[test]
    fn explicit_names_beat_categories() {
        let f = parse("t.toml", OK, None).unwrap();
        let t = &f.table;
        assert_eq!(t.answer(0, 0), Answer::No);
        assert_eq!(t.answer(1, 0), Answer::Yes);
        assert_eq!(t.answer(2, 0), Answer::No);
        assert_eq!(t.answer(2, 1), Answer::Yes);
        assert_eq!(f.rules.max_turns, 5);
    }

    #[test]
    fn errors_carry_line_and_column() {
        let bad = OK.replace("no = [\"Penguin\"]", "no = [\"Pengin\"]");
        let e = parse("t.toml", &bad, None).unwrap_err();
        assert_eq!(e.0.len(), 1);
        assert_eq!((e.0[0].line, e.0[0].column), (18, 7));
        assert!(e.to_string().starts_with("t.toml:18:7: unknown entity `Pengin`"), "{e}");

        let syntax = parse("t.toml", "[scenario]\nname = \n", None).unwrap_err();
        assert_eq!(syntax.0[0].line, 2, "{syntax}");

        let unknown_key = parse("t.toml", &OK.replace("max_turns = 5", "max_turn = 5"), None).unwrap_err();
        assert!(unknown_key.to_string().contains("max_turn"), "{unknown_key}");
        assert_eq!(unknown_key.0[0].line, 4);

        let zero = parse("t.toml", &OK.replace("max_turns = 5", "max_turns = 0"), None).unwrap_err();
        assert!(zero.to_string().contains("t.toml:4:13: max_turns must be at least 1"), "{zero}");
    }
}
