//! Metric numbers in results files, run reports, gate decisions and `promotions.yaml`: a finite
//! value is a JSON (or YAML) number, and a non-finite one is one of the strings `"inf"`, `"-inf"`
//! and `"nan"`.
//!
//! JSON has no spelling for NaN or ±∞, and `serde_json` writes them as `null`, which then does
//! not read back as a number: one infinite `word_perplexity` (a text without spaces) used to make
//! every later read of its cached results fail. With these (de)serialisers every `f64` reads back
//! bit for bit (`-0.0`, subnormals and the extremes included: numbers are written in their
//! shortest round-trip form and parsed exactly), except that a NaN's sign and payload are not
//! kept: every NaN reads back as the canonical quiet NaN (`f64::NAN`).
//!
//! Reading accepts a number, one of the three strings, and `null`, which medrun wrote for a
//! non-finite value before it had these spellings and which reads as NaN (for an optional value,
//! `null` is "none"). Any other string is an error that names the accepted ones.
//!
//! Use with `#[serde(with = "crate::eval::number::float")]`, `…::option` (`Option<f64>`) or
//! `…::map` (`BTreeMap<String, f64>`).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde_json::Value;

pub const INF: &str = "inf";
pub const NEG_INF: &str = "-inf";
pub const NAN: &str = "nan";

/// The spelling of a non-finite value; `None` for a finite one.
pub fn non_finite_name(x: f64) -> Option<&'static str> {
    if x.is_nan() {
        Some(NAN)
    } else if x == f64::INFINITY {
        Some(INF)
    } else if x == f64::NEG_INFINITY {
        Some(NEG_INF)
    } else {
        None
    }
}

/// The value a non-finite spelling stands for.
pub fn parse_name(s: &str) -> Option<f64> {
    match s {
        INF => Some(f64::INFINITY),
        NEG_INF => Some(f64::NEG_INFINITY),
        NAN => Some(f64::NAN),
        _ => None,
    }
}

/// `x` as a JSON value (see the module docs).
pub fn to_json(x: f64) -> Value {
    match non_finite_name(x) {
        Some(name) => Value::String(name.into()),
        None => serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number),
    }
}

/// A JSON value as written by [`to_json`] (or a legacy `null`, read as NaN); `None` for anything
/// else.
pub fn from_json(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => parse_name(s),
        Value::Null => Some(f64::NAN),
        _ => None,
    }
}

/// `x` for people: `inf`, `-inf` or `nan`, else with `decimals` decimals.
pub fn show(x: f64, decimals: usize) -> String {
    match non_finite_name(x) {
        Some(name) => name.into(),
        None => format!("{x:.decimals$}"),
    }
}

/// [`show`] with a sign (`+0.150`, `-inf`), for differences.
pub fn show_signed(x: f64, decimals: usize) -> String {
    match non_finite_name(x) {
        Some(NAN) => NAN.into(),
        Some(name) if x > 0.0 => format!("+{name}"),
        Some(name) => name.into(),
        None => format!("{x:+.decimals$}"),
    }
}

fn put<S: Serializer>(x: f64, s: S) -> Result<S::Ok, S::Error> {
    match non_finite_name(x) {
        Some(name) => s.serialize_str(name),
        None => s.serialize_f64(x),
    }
}

/// Reads one number; `null` gives `on_null`.
struct Num {
    on_null: Option<f64>,
}

const EXPECTED: &str = "a number, \"inf\", \"-inf\" or \"nan\"";

impl<'de> Visitor<'de> for Num {
    type Value = Option<f64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXPECTED)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Option<f64>, E> {
        Ok(Some(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Option<f64>, E> {
        Ok(Some(v as f64))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Option<f64>, E> {
        Ok(Some(v as f64))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<f64>, E> {
        parse_name(v)
            .map(Some)
            .ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &EXPECTED))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Option<f64>, E> {
        Ok(self.on_null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Option<f64>, E> {
        Ok(self.on_null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<f64>, D::Error> {
        d.deserialize_any(self)
    }
}

/// `f64` fields.
pub mod float {
    use super::*;

    pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        put(*x, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        let v = d.deserialize_any(Num {
            on_null: Some(f64::NAN),
        })?;
        Ok(v.unwrap_or(f64::NAN))
    }
}

/// `Option<f64>` fields: `None` is `null`.
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(x: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match x {
            Some(v) => put(*v, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        d.deserialize_any(Num { on_null: None })
    }
}

/// `Option<[f64; 2]>` fields (intervals), serialised only.
pub mod pair {
    use super::*;

    pub fn serialize<S: Serializer>(x: &Option<[f64; 2]>, s: S) -> Result<S::Ok, S::Error> {
        match x {
            Some([a, b]) => s.collect_seq([to_json(*a), to_json(*b)]),
            None => s.serialize_none(),
        }
    }
}

/// `BTreeMap<String, f64>` fields.
pub mod map {
    use super::*;

    pub fn serialize<S: Serializer>(m: &BTreeMap<String, f64>, s: S) -> Result<S::Ok, S::Error> {
        let mut out = s.serialize_map(Some(m.len()))?;
        for (k, v) in m {
            out.serialize_entry(k, &to_json(*v))?;
        }
        out.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, f64>, D::Error> {
        struct Entries;
        struct One(f64);
        impl<'de> serde::Deserialize<'de> for One {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<One, D::Error> {
                super::float::deserialize(d).map(One)
            }
        }
        impl<'de> Visitor<'de> for Entries {
            type Value = BTreeMap<String, f64>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of names to numbers")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((k, One(v))) = a.next_entry::<String, One>()? {
                    out.insert(k, v);
                }
                Ok(out)
            }
        }
        d.deserialize_map(Entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Serialize, Deserialize)]
    struct Doc {
        #[serde(with = "super::float")]
        value: f64,
        #[serde(with = "super::option")]
        stderr: Option<f64>,
        #[serde(with = "super::map")]
        metrics: BTreeMap<String, f64>,
    }

    fn same(a: f64, b: f64) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.to_bits() == f64::NAN.to_bits())
    }

    fn round_trip(x: f64) -> (Doc, String) {
        let doc = Doc {
            value: x,
            stderr: Some(x),
            metrics: [("s/t/m".to_string(), x)].into(),
        };
        let text = serde_json::to_string_pretty(&doc).unwrap();
        (serde_json::from_str(&text).unwrap(), text)
    }

    #[test]
    fn special_values_have_names_and_read_back() {
        for (x, name) in [
            (f64::INFINITY, "\"inf\""),
            (f64::NEG_INFINITY, "\"-inf\""),
            (f64::NAN, "\"nan\""),
            (-f64::NAN, "\"nan\""),
        ] {
            let (back, text) = round_trip(x);
            assert!(text.contains(&format!("\"value\": {name}")), "{text}");
            assert!(same(x, back.value) && same(x, back.stderr.unwrap()));
            assert!(same(x, back.metrics["s/t/m"]));
        }
        for x in [
            0.0,
            -0.0,
            f64::MIN_POSITIVE,
            5e-324,
            -5e-324,
            f64::MAX,
            f64::MIN,
            0.1,
            1e300,
        ] {
            let (back, _) = round_trip(x);
            assert_eq!(back.value.to_bits(), x.to_bits(), "{x:e}");
            assert_eq!(back.metrics["s/t/m"].to_bits(), x.to_bits(), "{x:e}");
        }
    }

    #[test]
    fn null_reads_as_nan_or_none_and_other_strings_are_refused() {
        let d: Doc = serde_json::from_str(
            r#"{"value": null, "stderr": null, "metrics": {"a": null, "b": 2}}"#,
        )
        .unwrap();
        assert!(d.value.is_nan() && d.stderr.is_none() && d.metrics["a"].is_nan());
        assert_eq!(d.metrics["b"], 2.0);
        let e =
            serde_json::from_str::<Doc>(r#"{"value": "Infinity", "stderr": null, "metrics": {}}"#)
                .unwrap_err();
        assert!(
            e.to_string().contains("\"inf\", \"-inf\" or \"nan\""),
            "{e}"
        );
        assert!(
            serde_json::from_str::<Doc>(r#"{"value": [], "stderr": null, "metrics": {}}"#).is_err()
        );
    }

    #[test]
    fn shown_for_people() {
        assert_eq!(show(f64::INFINITY, 3), "inf");
        assert_eq!(show(f64::NAN, 3), "nan");
        assert_eq!(show(0.25, 3), "0.250");
        assert_eq!(show_signed(f64::INFINITY, 3), "+inf");
        assert_eq!(show_signed(f64::NEG_INFINITY, 3), "-inf");
        assert_eq!(show_signed(0.15, 3), "+0.150");
        assert_eq!(
            from_json(&to_json(f64::NEG_INFINITY)),
            Some(f64::NEG_INFINITY)
        );
        assert_eq!(from_json(&serde_json::json!("x")), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        /// Every bit pattern, NaNs included (those read back as the canonical NaN).
        #[test]
        fn every_f64_round_trips_bit_exactly(bits in any::<u64>()) {
            let x = f64::from_bits(bits);
            let (back, _) = round_trip(x);
            prop_assert!(same(x, back.value), "{:#x} -> {:#x}", bits, back.value.to_bits());
            prop_assert!(same(x, back.stderr.unwrap()));
            prop_assert!(same(x, back.metrics["s/t/m"]));
        }
    }
}
