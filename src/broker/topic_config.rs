//! Per-topic configuration under Kafka's own key names, over the broker's `[broker.log]`
//! defaults. Clients (`kcat`, AdminClient, `rill topics create --config k=v`) set these keys, so
//! we accept exactly the subset of Kafka's topic configs that rill implements and refuse the rest
//! with INVALID_CONFIG rather than store a setting we would silently ignore.

use std::collections::BTreeMap;

use crate::broker::log::LogConfig;
use crate::config::LogDefaults;

/// The topic config keys rill implements, with what each means (shown by `rill topics describe`).
pub const TOPIC_CONFIG_KEYS: &[(&str, &str)] = &[
    (
        "cleanup.policy",
        "only \"delete\": whole segments are deleted past retention",
    ),
    (
        "retention.ms",
        "delete segments whose newest record is older than this; -1 keeps forever",
    ),
    (
        "retention.bytes",
        "delete oldest segments while the partition is larger; -1 for no limit",
    ),
    ("segment.bytes", "roll to a new segment file at this size"),
    ("segment.ms", "roll to a new segment file after this age"),
    (
        "max.message.bytes",
        "largest record batch a producer may send",
    ),
];

/// A topic's explicit overrides, validated.
pub type TopicOverrides = BTreeMap<String, String>;

/// What a topic runs with: defaults merged with its overrides.
#[derive(Debug, Clone)]
pub struct EffectiveTopicConfig {
    pub log: LogConfig,
    pub max_message_bytes: usize,
}

/// Checks one `key=value` pair; the error says what is wrong in words a user can act on.
pub fn validate_entry(key: &str, value: &str) -> Result<(), String> {
    let number = |min: i64| -> Result<(), String> {
        match value.trim().parse::<i64>() {
            Ok(n) if n >= min => Ok(()),
            Ok(_) => Err(format!("{key} must be at least {min}, got {value}")),
            Err(_) => Err(format!("{key} must be a whole number, got {value:?}")),
        }
    };
    match key {
        "cleanup.policy" if value == "delete" => Ok(()),
        "cleanup.policy" => Err(format!(
            "cleanup.policy {value:?} is not supported: rill implements only \"delete\""
        )),
        "retention.ms" | "retention.bytes" => number(-1),
        "segment.bytes" => number(1024),
        "segment.ms" | "max.message.bytes" => number(1),
        _ => Err(format!(
            "unknown or unsupported topic config {key:?}; supported: {}",
            TOPIC_CONFIG_KEYS
                .iter()
                .map(|(k, _)| *k)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Validates a whole set of overrides, returning the first bad key with its reason.
pub fn validate(overrides: &TopicOverrides) -> Result<(), (String, String)> {
    for (key, value) in overrides {
        validate_entry(key, value).map_err(|why| (key.clone(), why))?;
    }
    Ok(())
}

/// Every implemented key with its effective value and whether it is the broker default.
pub fn describe(defaults: &LogDefaults, overrides: &TopicOverrides) -> Vec<(String, String, bool)> {
    TOPIC_CONFIG_KEYS
        .iter()
        .map(|(key, _)| match overrides.get(*key) {
            Some(value) => (key.to_string(), value.clone(), false),
            None => (key.to_string(), default_value(defaults, key), true),
        })
        .collect()
}

fn default_value(defaults: &LogDefaults, key: &str) -> String {
    match key {
        "cleanup.policy" => "delete".to_string(),
        "retention.ms" => defaults.retention_ms.to_string(),
        "retention.bytes" => defaults.retention_bytes.to_string(),
        "segment.bytes" => defaults.segment_bytes.to_string(),
        "segment.ms" => defaults.segment_ms.to_string(),
        "max.message.bytes" => defaults.max_message_bytes.to_string(),
        _ => String::new(),
    }
}

/// Merges validated overrides onto the defaults. Values were validated on the way in; a value
/// that still fails to parse (a hand-edited metadata store) falls back to the default.
pub fn effective(defaults: &LogDefaults, overrides: &TopicOverrides) -> EffectiveTopicConfig {
    let get = |key: &str, default: i64| -> i64 {
        overrides
            .get(key)
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(default)
    };
    let retention_ms = get("retention.ms", defaults.retention_ms);
    let retention_bytes = get("retention.bytes", defaults.retention_bytes);
    let segment_bytes = get("segment.bytes", defaults.segment_bytes as i64);
    let max_message_bytes = get("max.message.bytes", defaults.max_message_bytes as i64);
    EffectiveTopicConfig {
        log: LogConfig {
            segment_bytes: segment_bytes.max(1024) as u64,
            segment_ms: get("segment.ms", defaults.segment_ms).max(1),
            retention_ms: (retention_ms >= 0).then_some(retention_ms),
            retention_bytes: (retention_bytes >= 0).then_some(retention_bytes as u64),
            index_interval_bytes: defaults.index_interval_bytes,
        },
        max_message_bytes: max_message_bytes.max(1) as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_win_over_defaults() {
        let defaults = LogDefaults::default();
        let mut overrides = TopicOverrides::new();
        overrides.insert("retention.ms".into(), "1000".into());
        overrides.insert("retention.bytes".into(), "-1".into());
        let eff = effective(&defaults, &overrides);
        assert_eq!(eff.log.retention_ms, Some(1000));
        assert_eq!(eff.log.retention_bytes, None);
        assert_eq!(eff.log.segment_bytes, defaults.segment_bytes);
    }

    #[test]
    fn rejects_unknown_and_bad_values() {
        assert!(validate_entry("retention.ms", "-1").is_ok());
        assert!(validate_entry("retention.ms", "soon").is_err());
        assert!(validate_entry("segment.bytes", "10").is_err());
        assert!(validate_entry("cleanup.policy", "compact").is_err());
        let err = validate_entry("retension.ms", "5").expect_err("unknown key");
        assert!(err.contains("retention.ms"), "{err}");
    }

    #[test]
    fn describe_marks_defaults() {
        let mut overrides = TopicOverrides::new();
        overrides.insert("segment.ms".into(), "60000".into());
        let rows = describe(&LogDefaults::default(), &overrides);
        let segment = rows.iter().find(|r| r.0 == "segment.ms").expect("listed");
        assert_eq!((segment.1.as_str(), segment.2), ("60000", false));
        assert!(rows.iter().any(|r| r.0 == "retention.ms" && r.2));
    }
}
