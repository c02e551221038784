//! Specs: how a user names a scenario, an agent or a persona on the command line.
//!
//! Grammar: `name[:arg][(key=value,...)]`, e.g. `greedy-eig`, `oracle(slip=0.05)`,
//! `learned:runs/ilql`, `twenty-questions(holdout=0.2,split=train)`. A mixture of agents is
//! `mix:SPEC@WEIGHT,SPEC@WEIGHT,...`; each episode draws one component by weight.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use anyhow::{Context, Result, anyhow, bail};

/// One named component with an optional positional argument and key=value parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    /// The registry name (`greedy-eig`).
    pub name: String,
    /// The positional argument after `:` (a checkpoint or model path).
    pub arg: Option<String>,
    /// Parameters in parentheses, sorted by key so the canonical form is unique.
    pub params: BTreeMap<String, String>,
}

impl Spec {
    /// Parses `name[:arg][(k=v,...)]`.
    pub fn parse(text: &str) -> Result<Spec> {
        let text = text.trim();
        let (head, params_text) = match text.find('(') {
            Some(open) => {
                let inner = text[open + 1..]
                    .strip_suffix(')')
                    .ok_or_else(|| anyhow!("spec `{text}`: `(` without a closing `)` at the end"))?;
                (&text[..open], Some(inner))
            }
            None => (text, None),
        };
        let (name, arg) = match head.split_once(':') {
            Some((n, a)) => (n, Some(a.to_string())),
            None => (head, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            bail!("spec `{text}`: the name must be letters, digits, `-` or `_`");
        }
        let mut params = BTreeMap::new();
        if let Some(inner) = params_text {
            for pair in split_top_level(inner, ',') {
                let pair = pair.trim();
                if pair.is_empty() {
                    continue;
                }
                let (k, v) = pair
                    .split_once('=')
                    .ok_or_else(|| anyhow!("spec `{text}`: parameter `{pair}` is not key=value"))?;
                if params.insert(k.trim().to_string(), v.trim().to_string()).is_some() {
                    bail!("spec `{text}`: parameter `{}` given twice", k.trim());
                }
            }
        }
        Ok(Spec { name: name.to_string(), arg, params })
    }

    /// A parameter parsed as `T`, or `default` when absent.
    pub fn get<T: FromStr>(&self, key: &str, default: T) -> Result<T>
    where
        T::Err: fmt::Display,
    {
        match self.params.get(key) {
            None => Ok(default),
            Some(v) => v.parse::<T>().map_err(|e| anyhow!("`{self}`: parameter {key}={v}: {e}")),
        }
    }

    /// A probability parameter in [0, 1].
    pub fn probability(&self, key: &str, default: f64) -> Result<f64> {
        let p: f64 = self.get(key, default)?;
        if !(0.0..=1.0).contains(&p) {
            bail!("`{self}`: parameter {key}={p} must lie in [0, 1]");
        }
        Ok(p)
    }

    /// The parameters as a typed struct `P` (serde, usually with `deny_unknown_fields` and
    /// `default`s): each value is read as the type of its field, so `eps=0.3` fills an
    /// `f64`, `one_by_one=true` a `bool`, `level=standard` a `String`, and a key the struct
    /// does not have is an error that names the spec and the known keys.
    pub fn params<P: serde::de::DeserializeOwned>(&self) -> Result<P> {
        P::deserialize(params::ParamMap(&self.params)).map_err(|e| {
            // serde's words are about fields; a spec has parameters.
            let e = e
                .to_string()
                .replace("unknown field", "unknown parameter")
                .replace("there are no fields", "it takes none");
            anyhow!("`{self}`: {e}")
        })
    }

    /// Fails unless the spec has no parameters (for components that take none).
    pub fn no_params(&self) -> Result<()> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct NoParams {}
        self.params::<NoParams>().map(|_| ())
    }

    /// Fails on parameters the component does not know (a typo must not pass silently).
    pub fn expect_only(&self, known: &[&str]) -> Result<()> {
        for k in self.params.keys() {
            if !known.contains(&k.as_str()) {
                let list = if known.is_empty() { "none".to_string() } else { known.join(", ") };
                bail!("`{self}`: unknown parameter `{k}` (known: {list})");
            }
        }
        Ok(())
    }
}

/// A serde deserializer over a spec's `key=value` strings: each value is parsed as the type
/// its field asks for.
mod params {
    use std::collections::BTreeMap;

    use serde::de::value::{Error, MapDeserializer};
    use serde::de::{Deserializer, IntoDeserializer, Visitor};
    use serde::forward_to_deserialize_any;

    pub struct ParamMap<'a>(pub &'a BTreeMap<String, String>);

    impl<'de> Deserializer<'de> for ParamMap<'_> {
        type Error = Error;

        fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_map(MapDeserializer::new(self.0.iter().map(|(k, v)| (k.as_str(), Value(k, v.as_str())))))
        }

        forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
        }
    }

    /// One value (and its key, for messages): parsed as the visitor's type.
    pub struct Value<'a>(&'a str, &'a str);

    impl<'de> IntoDeserializer<'de, Error> for Value<'_> {
        type Deserializer = Self;
        fn into_deserializer(self) -> Self {
            self
        }
    }

    macro_rules! parse_as {
        ($($method:ident => $visit:ident: $t:ty),* $(,)?) => {$(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
                match self.1.parse::<$t>() {
                    Ok(v) => visitor.$visit(v).map_err(|e| self.explain(e)),
                    Err(e) => Err(serde::de::Error::custom(format!(
                        "parameter {}: `{}` is not a valid {}: {e}", self.0, self.1, stringify!($t)
                    ))),
                }
            }
        )*};
    }

    impl Value<'_> {
        /// A value-level error (a range check) with the parameter it is about.
        fn explain(&self, e: Error) -> Error {
            serde::de::Error::custom(format!("parameter {}={}: {e}", self.0, self.1))
        }
    }

    impl<'de> Deserializer<'de> for Value<'_> {
        type Error = Error;

        fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_str(self.1).map_err(|e| self.explain(e))
        }

        fn deserialize_newtype_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            visitor: V,
        ) -> Result<V::Value, Error> {
            visitor.visit_newtype_struct(self)
        }

        parse_as! {
            deserialize_bool => visit_bool: bool,
            deserialize_i8 => visit_i8: i8, deserialize_i16 => visit_i16: i16,
            deserialize_i32 => visit_i32: i32, deserialize_i64 => visit_i64: i64,
            deserialize_u8 => visit_u8: u8, deserialize_u16 => visit_u16: u16,
            deserialize_u32 => visit_u32: u32, deserialize_u64 => visit_u64: u64,
            deserialize_f32 => visit_f32: f32, deserialize_f64 => visit_f64: f64,
        }

        fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_some(self)
        }

        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _name: &'static str,
            _variants: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, Error> {
            visitor.visit_enum(self.1.into_deserializer())
        }

        forward_to_deserialize_any! {
            i128 u128 char str string bytes byte_buf unit unit_struct seq tuple tuple_struct
            map struct identifier ignored_any
        }
    }
}

/// Number types for spec parameters that carry their range: read with [`Spec::params`], a
/// value outside the range is an error that names the parameter and the range.
macro_rules! bounded {
    ($($(#[$doc:meta])* $name:ident: $ok:expr, $range:literal;)*) => {$(
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Default)]
        pub struct $name(pub f64);

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                struct InRange;
                impl serde::de::Visitor<'_> for InRange {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str(concat!("a number in ", $range))
                    }
                    fn visit_f64<E: serde::de::Error>(self, p: f64) -> std::result::Result<$name, E> {
                        let ok: fn(f64) -> bool = $ok;
                        if ok(p) { Ok($name(p)) } else { Err(E::custom(concat!("must lie in ", $range))) }
                    }
                    fn visit_u64<E: serde::de::Error>(self, p: u64) -> std::result::Result<$name, E> {
                        self.visit_f64(p as f64)
                    }
                    fn visit_i64<E: serde::de::Error>(self, p: i64) -> std::result::Result<$name, E> {
                        self.visit_f64(p as f64)
                    }
                }
                d.deserialize_f64(InRange)
            }
        }
    )*};
}

bounded! {
    /// A probability: a number in [0, 1].
    Probability: |p| (0.0..=1.0).contains(&p), "[0, 1]";
    /// A finite number ≥ 0 (a temperature, a noise level, a cost).
    NonNegative: |x| x >= 0.0 && x.is_finite(), "[0, inf)";
}

impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(a) = &self.arg {
            write!(f, ":{a}")?;
        }
        if !self.params.is_empty() {
            let inner: Vec<String> = self.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            write!(f, "({})", inner.join(","))?;
        }
        Ok(())
    }
}

/// A single component, or a weighted mixture drawn once per episode.
#[derive(Clone, Debug, PartialEq)]
pub struct MixSpec {
    /// Components with their normalized weights (summing to 1).
    pub components: Vec<(Spec, f64)>,
}

impl MixSpec {
    /// Parses `SPEC` or `mix:SPEC@W,SPEC@W,...`.
    pub fn parse(text: &str) -> Result<MixSpec> {
        let text = text.trim();
        let Some(body) = text.strip_prefix("mix:") else {
            return Ok(MixSpec { components: vec![(Spec::parse(text)?, 1.0)] });
        };
        let mut components = Vec::new();
        for part in split_top_level(body, ',') {
            let (spec, weight) = match part.rsplit_once('@') {
                Some((s, w)) => {
                    let w: f64 = w.trim().parse().with_context(|| format!("mixture `{text}`: weight `{w}`"))?;
                    (s, w)
                }
                None => (part, 1.0),
            };
            if !(w_ok(weight)) {
                bail!("mixture `{text}`: weight {weight} must be positive and finite");
            }
            components.push((Spec::parse(spec)?, weight));
        }
        if components.is_empty() {
            bail!("mixture `{text}` has no components");
        }
        let total: f64 = components.iter().map(|c| c.1).sum();
        for c in &mut components {
            c.1 /= total;
        }
        Ok(MixSpec { components })
    }

    /// Index of the component drawn by `u` in [0, 1).
    pub fn pick(&self, u: f64) -> usize {
        crate::util::weighted_index(self.components.iter().map(|c| c.1), u)
    }
}

fn w_ok(w: f64) -> bool {
    w.is_finite() && w > 0.0
}

impl fmt::Display for MixSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [(only, _)] = self.components.as_slice() {
            return write!(f, "{only}");
        }
        let parts: Vec<String> = self.components.iter().map(|(s, w)| format!("{s}@{w}")).collect();
        write!(f, "mix:{}", parts.join(","))
    }
}

/// Splits on `sep` outside parentheses.
fn split_top_level(text: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            c if c == sep && depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct P {
        #[serde(default)]
        eps: f64,
        #[serde(default)]
        one_by_one: bool,
        #[serde(default)]
        level: String,
        #[serde(default)]
        k: Option<usize>,
    }

    #[test]
    fn params_read_each_value_as_its_field_type_and_refuse_unknown_keys() {
        let p: P = Spec::parse("x(eps=0.25,one_by_one=true,level=standard,k=3)").unwrap().params().unwrap();
        assert_eq!(p, P { eps: 0.25, one_by_one: true, level: "standard".into(), k: Some(3) });
        let d: P = Spec::parse("x").unwrap().params().unwrap();
        assert_eq!(d, P { eps: 0.0, one_by_one: false, level: String::new(), k: None });
        let e = Spec::parse("x(epz=1)").unwrap().params::<P>().unwrap_err().to_string();
        assert!(e.contains("x(epz=1)") && e.contains("unknown parameter `epz`") && e.contains("eps"), "{e}");
        let e = Spec::parse("x(eps=lots)").unwrap().params::<P>().unwrap_err().to_string();
        assert!(e.contains("`lots` is not a valid f64"), "{e}");
        let e = Spec::parse("x(k=-1)").unwrap().params::<P>().unwrap_err().to_string();
        assert!(e.contains("parameter k: `-1` is not a valid u64"), "{e}");
    }

    #[derive(serde::Deserialize, Debug, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Q {
        p: Probability,
    }

    impl Default for Q {
        fn default() -> Self {
            Q { p: Probability(0.5) }
        }
    }

    #[test]
    fn probabilities_are_range_checked_and_named() {
        assert_eq!(Spec::parse("x(p=0.25)").unwrap().params::<Q>().unwrap(), Q { p: Probability(0.25) });
        assert_eq!(Spec::parse("x").unwrap().params::<Q>().unwrap(), Q { p: Probability(0.5) });
        let e = Spec::parse("x(p=1.5)").unwrap().params::<Q>().unwrap_err().to_string();
        assert!(e.contains("parameter p=1.5: must lie in [0, 1]"), "{e}");
        let e = Spec::parse("x(p=-0.1)").unwrap().params::<Q>().unwrap_err().to_string();
        assert!(e.contains("must lie in [0, 1]"), "{e}");
    }

    use super::*;

    #[test]
    fn parses_and_prints_canonically() {
        let s = Spec::parse("oracle(slip=0.05, b=2)").unwrap();
        assert_eq!(s.name, "oracle");
        assert_eq!(s.to_string(), "oracle(b=2,slip=0.05)");
        let l = Spec::parse("learned:runs/x(temperature=0.5)").unwrap();
        assert_eq!(l.arg.as_deref(), Some("runs/x"));
        assert_eq!(l.get("temperature", 0.0).unwrap(), 0.5);
        assert!(Spec::parse("bad name").is_err());
        assert!(Spec::parse("x(a)").is_err());
        assert!(Spec::parse("x(a=1").is_err());
        assert!(l.expect_only(&["seed"]).is_err());
    }

    #[test]
    fn mixtures_normalize_and_pick() {
        let m = MixSpec::parse("mix:random@1,eps-greedy(eps=0.3,x=1)@3").unwrap();
        assert_eq!(m.components.len(), 2);
        assert_eq!(m.components[1].0.params.len(), 2);
        assert!((m.components[1].1 - 0.75).abs() < 1e-12);
        assert_eq!(m.pick(0.2), 0);
        assert_eq!(m.pick(0.3), 1);
        assert!(MixSpec::parse("mix:random@-1").is_err());
        assert_eq!(MixSpec::parse("greedy-eig").unwrap().to_string(), "greedy-eig");
    }
}
