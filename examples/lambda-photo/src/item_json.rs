//! DynamoDB items as plain JSON: `{"id": "p-001", "width": 4032, "tags": ["sea"]}` rather than
//! the typed wire form `{"id": {"S": "p-001"}, "width": {"N": "4032"}, ...}`.
//!
//! Numbers stay numbers: DynamoDB sends them as decimal strings, and they become JSON integers
//! when they fit 64 bits, JSON floats otherwise. Strings, booleans, null, lists and maps map
//! one to one (maps with their keys sorted, so the same item always gives the same bytes);
//! string and number sets become arrays; binary values become base64 strings.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Map, Number, Value};

/// One item (a map of attribute names to values) as a JSON object.
pub fn item_to_json(item: &HashMap<String, AttributeValue>) -> Result<Value, String> {
    let mut object = Map::new();
    for (name, value) in item {
        let json = attribute_to_json(value).map_err(|e| format!("attribute {name:?}: {e}"))?;
        object.insert(name.clone(), json);
    }
    Ok(Value::Object(object))
}

/// One attribute value as JSON.
pub fn attribute_to_json(value: &AttributeValue) -> Result<Value, String> {
    Ok(match value {
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => Value::Number(number(n)?),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::L(list) => Value::Array(
            list.iter()
                .enumerate()
                .map(|(i, v)| attribute_to_json(v).map_err(|e| format!("list element {i}: {e}")))
                .collect::<Result<_, _>>()?,
        ),
        AttributeValue::M(map) => item_to_json(map)?,
        AttributeValue::Ss(set) => Value::Array(set.iter().cloned().map(Value::String).collect()),
        AttributeValue::Ns(set) => Value::Array(
            set.iter()
                .map(|n| number(n).map(Value::Number))
                .collect::<Result<_, _>>()?,
        ),
        AttributeValue::B(blob) => Value::String(aws_smithy_types::base64::encode(blob.as_ref())),
        AttributeValue::Bs(set) => Value::Array(
            set.iter()
                .map(|b| Value::String(aws_smithy_types::base64::encode(b.as_ref())))
                .collect(),
        ),
        other => return Err(format!("unsupported attribute type {other:?}")),
    })
}

/// A DynamoDB number (a decimal string of up to 38 significant digits) as a JSON number:
/// an integer when it fits `i64` or `u64`, a float otherwise (which keeps about 15 significant
/// digits).
fn number(text: &str) -> Result<Number, String> {
    let text = text.trim();
    if let Ok(i) = text.parse::<i64>() {
        return Ok(Number::from(i));
    }
    if let Ok(u) = text.parse::<u64>() {
        return Ok(Number::from(u));
    }
    text.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .ok_or_else(|| format!("{text:?} is not a finite number"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::primitives::Blob;
    use serde_json::json;

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.into())
    }
    fn n(v: &str) -> AttributeValue {
        AttributeValue::N(v.into())
    }

    #[test]
    fn every_type_maps_to_plain_json() {
        let camera = HashMap::from([
            ("make".to_string(), s("Fujifilm")),
            ("iso".into(), n("400")),
        ]);
        let item = HashMap::from([
            ("id".to_string(), s("p-007")),
            ("width".into(), n("4032")),
            ("rating".into(), n("4.5")),
            ("offset".into(), n("-12")),
            ("big".into(), n("18446744073709551615")),
            ("public".into(), AttributeValue::Bool(true)),
            ("location".into(), AttributeValue::Null(true)),
            ("tags".into(), AttributeValue::L(vec![s("sea"), n("3")])),
            ("camera".into(), AttributeValue::M(camera)),
            ("albums".into(), AttributeValue::Ss(vec!["a".into()])),
            (
                "sizes".into(),
                AttributeValue::Ns(vec!["1".into(), "2.25".into()]),
            ),
            (
                "thumb".into(),
                AttributeValue::B(Blob::new(b"hi!".to_vec())),
            ),
        ]);
        let json = item_to_json(&item).unwrap();
        assert_eq!(
            json,
            json!({
                "id": "p-007", "width": 4032, "rating": 4.5, "offset": -12,
                "big": 18446744073709551615u64, "public": true, "location": null,
                "tags": ["sea", 3], "camera": {"make": "Fujifilm", "iso": 400},
                "albums": ["a"], "sizes": [1, 2.25], "thumb": "aGkh"
            })
        );
        // Numbers are JSON numbers, not strings, and keys come out sorted.
        let text = serde_json::to_string(&json).unwrap();
        assert!(text.contains(r#""width":4032"#), "{text}");
        assert!(text.starts_with(r#"{"albums":"#), "{text}");
    }

    #[test]
    fn large_and_exponent_numbers_become_floats() {
        assert_eq!(number("1E+2").unwrap(), Number::from_f64(100.0).unwrap());
        assert_eq!(
            number("123456789012345678901234567890").unwrap().as_f64(),
            Some(1.2345678901234568e29)
        );
    }

    #[test]
    fn a_bad_number_names_the_attribute() {
        let item = HashMap::from([("size".to_string(), AttributeValue::L(vec![n("abc")]))]);
        let error = item_to_json(&item).unwrap_err();
        assert_eq!(
            error,
            r#"attribute "size": list element 0: "abc" is not a finite number"#
        );
    }
}
