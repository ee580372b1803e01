//! Canonical JSON text of an entry's fields: no whitespace, keys sorted at every depth.
//!
//! `serde_json::Map` keeps its keys sorted only while no crate in the build turns on
//! serde_json's `preserve_order` feature; features are unified across the workspace, so this
//! module sorts explicitly instead of relying on it.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};
use serde_json::Value;

/// The canonical JSON text of `fields`.
pub(crate) fn to_canonical(fields: &BTreeMap<String, Value>) -> Result<String, serde_json::Error> {
    serde_json::to_string(&Fields(fields))
}

/// Whether `text` is a JSON object in exactly the form [`to_canonical`] writes.
pub(crate) fn is_canonical(text: &str) -> Result<bool, serde_json::Error> {
    let parsed: BTreeMap<String, Value> = serde_json::from_str(text)?;
    Ok(to_canonical(&parsed)? == text)
}

struct Fields<'a>(&'a BTreeMap<String, Value>);

impl Serialize for Fields<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // A BTreeMap<String, _> iterates in byte order of its keys already.
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, Canonical(v))))
    }
}

struct Canonical<'a>(&'a Value);

impl Serialize for Canonical<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Array(items) => serializer.collect_seq(items.iter().map(Canonical)),
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                serializer.collect_map(entries.into_iter().map(|(k, v)| (k, Canonical(v))))
            }
            scalar => scalar.serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(value: Value) -> BTreeMap<String, Value> {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn sorts_keys_at_every_depth_and_drops_whitespace() {
        let mut nested = serde_json::Map::new();
        nested.insert("z".into(), json!(1));
        nested.insert("a".into(), json!([{"y": true, "b": null}]));
        let mut top = BTreeMap::new();
        top.insert("outer".to_string(), Value::Object(nested));
        top.insert("cmd".to_string(), json!("rm -rf \"/tmp/x\"\n"));
        top.insert("Z".to_string(), json!(-1.5));
        top.insert("é".to_string(), json!(18446744073709551615u64));

        assert_eq!(
            to_canonical(&top).unwrap(),
            r#"{"Z":-1.5,"cmd":"rm -rf \"/tmp/x\"\n","outer":{"a":[{"b":null,"y":true}],"z":1},"é":18446744073709551615}"#
        );
    }

    #[test]
    fn recognises_canonical_text() {
        let cases = [
            (r#"{}"#, true),
            (r#"{"a":1,"b":[2,{"c":3,"d":4}]}"#, true),
            (r#"{"b":1,"a":2}"#, false),
            (r#"{"a":{"d":1,"c":2}}"#, false),
            (r#"{"a": 1}"#, false),
            (r#"{"a":1,"a":2}"#, false),
            (r#"{"a":1e2}"#, false),
            (r#"{"a":0.1}"#, true),
            (r#"{"a":1.2345678901234567e-200}"#, true),
        ];
        let got: Vec<(&str, bool)> = cases
            .iter()
            .map(|(text, _)| (*text, is_canonical(text).unwrap()))
            .collect();
        assert_eq!(got, cases);
    }

    #[test]
    fn round_trips_through_text() {
        let original = fields(json!({"n": 0.1, "big": -9223372036854775808i64, "s": "\u{1}"}));
        let text = to_canonical(&original).unwrap();
        let back: BTreeMap<String, Value> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, original);
    }

    #[test]
    fn rejects_what_is_not_an_object() {
        assert!(is_canonical("[1]").is_err());
        assert!(is_canonical("not json").is_err());
    }
}
