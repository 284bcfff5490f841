//! Lenient parsing where 1NCE's documents, or MCP clients, are loose about types: whole numbers
//! given as integral floats or numeric strings, strings given as numbers, null for empty.

use serde::{Deserialize, Deserializer};

pub(crate) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Reads a non-negative integer given as a JSON integer, an integral float or a numeric string.
pub(crate) fn number_to_u64(value: &serde_json::Value) -> Option<u64> {
    match value {
        serde_json::Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 2f64.powi(53))
                .map(|f| f as u64)
        }),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub(crate) fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    number_to_u64(&value)
        .ok_or_else(|| serde::de::Error::custom(format!("expected a whole number, got {value}")))
}

pub(crate) fn lenient_u64_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(None),
        value => number_to_u64(&value).map(Some).ok_or_else(|| {
            serde::de::Error::custom(format!("expected a whole number, got {value}"))
        }),
    }
}

/// Reads an integer argument given as a JSON integer, an integral float or a numeric string:
/// some MCP clients send every argument a person typed as a string.
pub(crate) fn integer_arg(value: &serde_json::Value) -> Option<i64> {
    match value {
        serde_json::Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 2f64.powi(53))
                .map(|f| f as i64)
        }),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Deserializes a tool's integer argument leniently (see `integer_arg`).
pub fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    integer_arg(&value)
        .ok_or_else(|| serde::de::Error::custom(format!("expected an integer, got {value}")))
}

/// Like [`lenient_i64`] for an optional argument; null counts as absent.
pub fn lenient_i64_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(None),
        value => integer_arg(&value)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("expected an integer, got {value}"))),
    }
}

/// Accepts a string or a number (1NCE documents `invoice_amount` as a string, but a number
/// would carry the same meaning).
pub(crate) fn lenient_string_opt<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) => Ok(Some(s)),
        serde_json::Value::Number(n) => Ok(Some(n.to_string())),
        other => Err(serde::de::Error::custom(format!(
            "expected a string, got {other}"
        ))),
    }
}
