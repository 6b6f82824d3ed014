//! Topic name and topic filter rules (MQTT 4.7).
//!
//! Lengths need no check here: every string on the wire carries a 16-bit length, so anything that
//! came out of the decoder is at most 65535 bytes already.

/// A topic name as PUBLISH carries it: non-empty, no `+` or `#`, no U+0000.
pub fn valid_topic_name(topic: &str) -> bool {
    !topic.is_empty() && !topic.bytes().any(|b| b == b'+' || b == b'#' || b == 0)
}

/// A topic filter: non-empty; `#` only alone as the last level; `+` only alone in a level.
pub fn valid_topic_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.as_bytes().contains(&0) {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        if level.contains('#') && !(level == "#" && last) {
            return false;
        }
        if level.contains('+') && level != "+" {
            return false;
        }
    }
    true
}

/// Whether `topic` (a valid name) matches `filter` (a valid filter), including the rule that
/// topics starting with `$` are not matched by filters starting with a wildcard (4.7.2).
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            // `#` also matches the parent level: `sport/#` matches `sport` (4.7.1.2).
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) => {
                if fl != tl {
                    return false;
                }
            }
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mqtt_4_7_3_topic_name_non_empty() {
        assert!(!valid_topic_name(""));
        assert!(valid_topic_name("a"));
        assert!(valid_topic_name("/"));
        assert!(valid_topic_name("a//b"));
        assert!(valid_topic_name("$SYS/x"));
    }

    #[test]
    fn mqtt_3_3_2_2_topic_name_without_wildcards() {
        assert!(!valid_topic_name("a/+"));
        assert!(!valid_topic_name("a/#"));
        assert!(!valid_topic_name("a+b"));
        assert!(!valid_topic_name("#"));
    }

    #[test]
    fn mqtt_4_7_3_2_no_null_character() {
        assert!(!valid_topic_name("a\0b"));
        assert!(!valid_topic_filter("a/\0"));
    }

    #[test]
    fn mqtt_4_7_1_2_multi_level_wildcard_alone_and_last() {
        assert!(valid_topic_filter("#"));
        assert!(valid_topic_filter("sport/#"));
        assert!(valid_topic_filter("/#"));
        assert!(!valid_topic_filter("sport/tennis#"));
        assert!(!valid_topic_filter("sport/tennis/#/ranking"));
        assert!(!valid_topic_filter("#/"));
        assert!(!valid_topic_filter("##"));
    }

    #[test]
    fn mqtt_4_7_1_3_single_level_wildcard_alone_in_level() {
        assert!(valid_topic_filter("+"));
        assert!(valid_topic_filter("+/tennis/#"));
        assert!(valid_topic_filter("sport/+/player1"));
        assert!(valid_topic_filter("+/+"));
        assert!(valid_topic_filter("/+"));
        assert!(!valid_topic_filter("sport+"));
        assert!(!valid_topic_filter("sport/+x"));
        assert!(!valid_topic_filter("++"));
    }

    #[test]
    fn mqtt_4_7_3_topic_filter_non_empty() {
        assert!(!valid_topic_filter(""));
        assert!(valid_topic_filter("/"));
        assert!(valid_topic_filter("a//b"));
    }

    #[test]
    fn mqtt_4_7_1_2_hash_matches_parent_and_children() {
        assert!(matches("sport/tennis/player1/#", "sport/tennis/player1"));
        assert!(matches("sport/tennis/player1/#", "sport/tennis/player1/ranking"));
        assert!(matches("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon"));
        assert!(matches("sport/#", "sport"));
        assert!(matches("#", "sport"));
        assert!(matches("#", "/"));
        assert!(!matches("sport/#", "sports"));
        assert!(!matches("sport/tennis/#", "sport"));
    }

    #[test]
    fn mqtt_4_7_1_3_plus_matches_exactly_one_level() {
        assert!(matches("sport/tennis/+", "sport/tennis/player1"));
        assert!(matches("sport/tennis/+", "sport/tennis/player2"));
        assert!(!matches("sport/tennis/+", "sport/tennis/player1/ranking"));
        assert!(!matches("sport/+", "sport"));
        assert!(matches("sport/+", "sport/"));
        assert!(matches("+/+", "/finance"));
        assert!(matches("/+", "/finance"));
        assert!(!matches("+", "/finance"));
        assert!(matches("+/tennis/#", "sport/tennis"));
        assert!(matches("+", ""));
    }

    #[test]
    fn mqtt_4_7_plain_filters_match_exactly() {
        assert!(matches("a/b", "a/b"));
        assert!(!matches("a/b", "a/b/"));
        assert!(!matches("a/b", "a"));
        assert!(!matches("a", "a/b"));
        assert!(!matches("A/b", "a/b"));
        assert!(matches("/", "/"));
        assert!(!matches("a//b", "a/b"));
    }

    #[test]
    fn mqtt_4_7_2_dollar_topics_not_matched_by_wildcards() {
        assert!(!matches("#", "$SYS/broker/uptime"));
        assert!(!matches("+/monitor/Clients", "$SYS/monitor/Clients"));
        assert!(!matches("+", "$SYS"));
        assert!(matches("$SYS/#", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/#", "$SYS"));
        // Only a leading `$` is special.
        assert!(matches("#", "a/$SYS"));
        assert!(matches("a/+", "a/$SYS"));
    }
}
