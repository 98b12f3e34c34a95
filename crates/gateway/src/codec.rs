//! Turning request JSON into record bytes: embedded formats, base64, sizes, names, timestamps.
//!
//! - **Formats.** `json`: the JSON value is the record's bytes (its compact text); `string`: a
//!   JSON string, stored as its UTF-8; `binary`: a base64 string (standard alphabet, padded),
//!   stored decoded. JSON `null` (or an absent field) is a null key or value in every format.
//! - **Errors.** Text that is not JSON is 400; JSON that breaks the shape (wrong types, invalid
//!   base64, unknown format) is 422; a record over `limits.max_record_bytes` is 413.

use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde_json::Value;
use spillway::Record;
use spillway::record::ID_HEADER;

use crate::error::ApiError;

/// How a key or value is carried in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    String,
    Binary,
}

impl Format {
    /// Parses `json`/`string`/`binary` in any case (REST Proxy v3 writes `JSON`, `BINARY`...).
    pub fn parse(name: &str) -> Result<Self, ApiError> {
        match name.to_ascii_lowercase().as_str() {
            "json" => Ok(Format::Json),
            "string" => Ok(Format::String),
            "binary" => Ok(Format::Binary),
            "avro" | "protobuf" | "jsonschema" => Err(ApiError::Unprocessable(format!(
                "format {name} needs a schema registry, which Spillway does not use"
            ))),
            _ => Err(ApiError::Unprocessable(format!(
                "unknown format {name:?} (expected json, string or binary)"
            ))),
        }
    }

    /// The REST Proxy v3 name (`JSON`, `STRING`, `BINARY`).
    pub fn v3_name(self) -> &'static str {
        match self {
            Format::Json => "JSON",
            Format::String => "STRING",
            Format::Binary => "BINARY",
        }
    }
}

/// The bytes of one key or value (`what` names it in errors: "record 3 value").
pub fn encode(format: Format, data: &Value, what: &str) -> Result<Option<Vec<u8>>, ApiError> {
    if data.is_null() {
        return Ok(None);
    }
    match format {
        Format::Json => serde_json::to_vec(data)
            .map(Some)
            .map_err(|e| ApiError::Internal(format!("re-encoding JSON: {e}"))),
        Format::String => match data {
            Value::String(s) => Ok(Some(s.clone().into_bytes())),
            _ => Err(ApiError::Unprocessable(format!(
                "{what}: format string needs a JSON string"
            ))),
        },
        Format::Binary => match data {
            Value::String(s) => decode_base64(s, what).map(Some),
            _ => Err(ApiError::Unprocessable(format!(
                "{what}: format binary needs a base64 string"
            ))),
        },
    }
}

/// Standard base64 with padding; anything else is 422.
pub fn decode_base64(text: &str, what: &str) -> Result<Vec<u8>, ApiError> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| ApiError::Unprocessable(format!("{what}: invalid base64: {e}")))
}

/// Parses a JSON body into `T`: syntax errors are 400, shape errors 422.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(json_error)
}

/// Classifies a serde_json error: text that is not JSON (400) or JSON of the wrong shape (422).
pub fn json_error(e: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => ApiError::Unprocessable(e.to_string()),
        Category::Syntax | Category::Eof | Category::Io => ApiError::MalformedJson(e.to_string()),
    }
}

/// Kafka's rule for topic names: 1 to 249 of `[a-zA-Z0-9._-]`. Others cannot exist: 404.
pub fn check_topic_name(topic: &str) -> Result<(), ApiError> {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if topic.is_empty() || topic.len() > 249 || !topic.chars().all(legal) {
        return Err(ApiError::UnknownTopic(topic.to_string()));
    }
    Ok(())
}

/// Checks what every API shares about a finished record: its size and its headers.
/// `index` numbers it in the request for error messages.
pub fn check_record(record: &Record, index: usize, max_bytes: u64) -> Result<(), ApiError> {
    if record.headers.iter().any(|(name, _)| name == ID_HEADER) {
        return Err(ApiError::Unprocessable(format!(
            "record {index}: header {ID_HEADER} is reserved for Spillway"
        )));
    }
    if let Some(p) = record.partition.filter(|&p| p < 0) {
        return Err(ApiError::Unprocessable(format!(
            "record {index}: partition {p} is negative"
        )));
    }
    let size = record.key.as_ref().map_or(0, Vec::len)
        + record.value.as_ref().map_or(0, Vec::len)
        + record
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>();
    if size as u64 > max_bytes {
        return Err(ApiError::RecordTooLarge {
            index,
            size: size as u64,
            limit: max_bytes,
        });
    }
    Ok(())
}

/// Milliseconds since the epoch from an RFC 3339 timestamp (`2024-05-01T12:00:00.123Z`).
pub fn parse_timestamp(text: &str) -> Result<i64, ApiError> {
    let t = humantime::parse_rfc3339_weak(text)
        .map_err(|e| ApiError::Unprocessable(format!("timestamp {text:?}: {e}")))?;
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| ApiError::Unprocessable(format!("timestamp {text:?} is before 1970")))?
        .as_millis();
    i64::try_from(ms).map_err(|_| ApiError::Unprocessable(format!("timestamp {text:?} too far")))
}

/// RFC 3339 text (milliseconds, UTC) for milliseconds since the epoch.
pub fn format_timestamp(ms: i64) -> Option<String> {
    let ms = u64::try_from(ms).ok()?;
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    Some(humantime::format_rfc3339_millis(t).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_format_encodes_its_json_and_null_means_none() {
        assert_eq!(
            encode(Format::Json, &json!({"a":1}), "v").unwrap(),
            Some(br#"{"a":1}"#.to_vec())
        );
        assert_eq!(
            encode(Format::String, &json!("hé"), "v").unwrap(),
            Some("hé".as_bytes().to_vec())
        );
        assert_eq!(
            encode(Format::Binary, &json!("AAE="), "v").unwrap(),
            Some(vec![0, 1])
        );
        for f in [Format::Json, Format::String, Format::Binary] {
            assert_eq!(encode(f, &Value::Null, "v").unwrap(), None);
        }
    }

    #[test]
    fn wrong_shapes_and_bad_base64_are_unprocessable() {
        for (f, v) in [
            (Format::Binary, json!("not base64!")),
            (Format::Binary, json!(12)),
            (Format::String, json!({"a": 1})),
        ] {
            assert!(matches!(
                encode(f, &v, "v"),
                Err(ApiError::Unprocessable(_))
            ));
        }
        assert!(matches!(
            Format::parse("AVRO"),
            Err(ApiError::Unprocessable(_))
        ));
    }

    #[test]
    fn json_errors_split_into_syntax_400_and_shape_422() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct T {
            a: u8,
        }
        assert!(matches!(
            parse_json::<T>(b"{\"a\":"),
            Err(ApiError::MalformedJson(_))
        ));
        assert!(matches!(
            parse_json::<T>(b"{\"a\":\"x\"}"),
            Err(ApiError::Unprocessable(_))
        ));
    }

    #[test]
    fn timestamps_round_trip_in_milliseconds() {
        let ms = parse_timestamp("2021-02-05T19:14:42.123Z").unwrap();
        assert_eq!(ms, 1_612_552_482_123);
        assert_eq!(format_timestamp(ms).unwrap(), "2021-02-05T19:14:42.123Z");
        assert!(parse_timestamp("yesterday").is_err());
    }

    #[test]
    fn records_with_the_reserved_header_or_over_the_size_limit_are_refused() {
        let r = Record::new("t").value(vec![0; 10]);
        assert!(check_record(&r, 0, 10).is_ok());
        assert!(matches!(
            check_record(&r, 0, 9),
            Err(ApiError::RecordTooLarge { .. })
        ));
        let r = Record::new("t").header(ID_HEADER, "x");
        assert!(matches!(
            check_record(&r, 0, 100),
            Err(ApiError::Unprocessable(_))
        ));
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(check_topic_name("orders.eu-1_a").is_ok());
        for bad in ["", "a/b", "a b", &"x".repeat(250)] {
            assert!(check_topic_name(bad).is_err());
        }
    }
}
