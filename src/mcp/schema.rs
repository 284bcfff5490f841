//! The JSON Schemas agents see, derived from the Rust types and then tidied for clients.
//!
//! schemars describes Rust faithfully: `Option<T>` becomes `["T", "null"]` and integers carry
//! formats such as `uint` and `uint64`. Neither helps an agent: optional fields are simply left
//! out (the server never writes a null either), and validators such as Ajv, used by the MCP
//! Inspector and many hosts, warn about formats JSON Schema does not define. This module removes
//! both (every format but the standard ones), so the schemas say exactly what to send and what
//! comes back.

use std::sync::Arc;

use rmcp::handler::server::common::{schema_for_input, schema_for_output};
use rmcp::model::JsonObject;
use schemars::JsonSchema;
use serde_json::Value;

/// The input schema of a tool taking `T` as its arguments. A model reads it on every turn, so
/// it keeps only what says what to send: no `$schema` (every tool's would be the same line;
/// MCP's default dialect is 2020-12 anyway).
pub fn input<T: JsonSchema + 'static>() -> Arc<JsonObject> {
    let schema = schema_for_input::<T>().unwrap_or_else(|e| {
        panic!(
            "invalid input schema for {}: {e}",
            std::any::type_name::<T>()
        )
    });
    let mut schema = tidy(schema.as_ref());
    schema.remove("$schema");
    Arc::new(schema)
}

/// The output schema of a tool whose `structuredContent` is a `T`.
pub fn output<T: JsonSchema + 'static>() -> Arc<JsonObject> {
    Arc::new(tidy(schema_for_output::<T>().as_ref()))
}

fn tidy(schema: &JsonObject) -> JsonObject {
    let mut value = Value::Object(schema.clone());
    clean(&mut value);
    match value {
        Value::Object(map) => map,
        _ => unreachable!("a schema object stays an object"),
    }
}

/// The formats JSON Schema 2020-12 defines (its "Defined Formats"). Any other, such as the
/// `uint`, `int64` or `double` schemars gives Rust's number types, is unknown to validators:
/// Ajv (the MCP Inspector's) warns about it on every call. The range stays in `minimum`.
const STANDARD_FORMATS: [&str; 19] = [
    "date-time",
    "date",
    "time",
    "duration",
    "email",
    "idn-email",
    "hostname",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uri-reference",
    "iri",
    "iri-reference",
    "uuid",
    "uri-template",
    "json-pointer",
    "relative-json-pointer",
    "regex",
];

/// Whether `format` is one JSON Schema defines.
pub fn is_standard_format(format: &str) -> bool {
    STANDARD_FORMATS.contains(&format)
}

fn clean(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map
                .get("format")
                .and_then(Value::as_str)
                .is_some_and(|f| !is_standard_format(f))
            {
                map.remove("format");
            }
            if map.get("default").is_some_and(Value::is_null) {
                map.remove("default");
            }
            // ["string", "null"] → "string"
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    map.insert("type".into(), only);
                }
            }
            if let Some(Value::Array(values)) = map.get_mut("enum") {
                values.retain(|v| !v.is_null());
            }
            // anyOf [{"$ref": …}, {"type": "null"}] → the reference alone
            if let Some(Value::Array(options)) = map.get_mut("anyOf") {
                options.retain(|o| o.get("type").and_then(Value::as_str) != Some("null"));
                if options.len() == 1
                    && let Value::Object(only) = options.remove(0)
                {
                    map.remove("anyOf");
                    for (k, v) in only {
                        map.entry(k).or_insert(v);
                    }
                }
            }
            map.values_mut().for_each(clean);
        }
        Value::Array(items) => items.iter_mut().for_each(clean),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn removes_nulls_and_rust_formats() {
        let mut v = json!({
            "type": "object",
            "properties": {
                "page": {"type": ["integer", "null"], "format": "int64", "minimum": 1, "default": null},
                "count": {"type": "integer", "format": "uint", "minimum": 0},
                "salutation": {"type": ["string", "null"], "enum": ["1", "2", null]},
                "address": {"anyOf": [{"$ref": "#/$defs/A"}, {"type": "null"}], "description": "d"},
                "when": {"type": "string", "format": "date-time"}
            }
        });
        clean(&mut v);
        assert_eq!(
            v,
            json!({
                "type": "object",
                "properties": {
                    "page": {"type": "integer", "minimum": 1},
                    "count": {"type": "integer", "minimum": 0},
                    "salutation": {"type": "string", "enum": ["1", "2"]},
                    "address": {"$ref": "#/$defs/A", "description": "d"},
                    "when": {"type": "string", "format": "date-time"}
                }
            })
        );
    }
}
