//! Per-user topic permissions: `read`, `write` and `admin`, each a list of topic names or globs
//! (`*`, `?`, `[a-z]`), kept with the user in the users file.
//!
//! The model is Kafka's ACL operations in small: `read` is Kafka's READ (consume, list offsets,
//! commit and fetch group offsets), `write` is WRITE (produce; also auto-creating the topic
//! through Metadata, so an agent with `write = ["logs"]` works on a fresh broker), `admin` is
//! ALL (everything, including CreateTopics and DeleteTopics). Any permission on a topic lets the
//! user see it in Metadata (Kafka's DESCRIBE).

use glob::Pattern;

/// What a request needs on a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Read,
    Write,
    Admin,
    /// See the topic exists (Metadata, DescribeConfigs): any permission grants it.
    Describe,
}

/// One user's permissions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Permissions {
    pub read: Vec<Pattern>,
    pub write: Vec<Pattern>,
    pub admin: Vec<Pattern>,
}

fn matches(patterns: &[Pattern], topic: &str) -> bool {
    patterns.iter().any(|p| p.matches(topic))
}

impl Permissions {
    /// May this user do `operation` on `topic`?
    pub fn allows(&self, operation: Operation, topic: &str) -> bool {
        if matches(&self.admin, topic) {
            return true;
        }
        match operation {
            Operation::Read => matches(&self.read, topic),
            Operation::Write => matches(&self.write, topic),
            Operation::Admin => false,
            Operation::Describe => matches(&self.read, topic) || matches(&self.write, topic),
        }
    }

    /// Does the user have `operation` on at least one topic pattern? (Consumer-group APIs need
    /// some read permission; InitProducerId needs some write permission, as in Kafka 2.8+.)
    pub fn has_any(&self, operation: Operation) -> bool {
        !self.admin.is_empty()
            || match operation {
                Operation::Read => !self.read.is_empty(),
                Operation::Write => !self.write.is_empty(),
                Operation::Admin => false,
                Operation::Describe => !self.read.is_empty() || !self.write.is_empty(),
            }
    }

    /// Admin on every topic (`admin = ["*"]`): what deleting consumer groups needs.
    pub fn is_cluster_admin(&self) -> bool {
        self.admin.iter().any(|p| p.as_str() == "*")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(list: &[&str]) -> Vec<Pattern> {
        list.iter()
            .map(|p| Pattern::new(p).expect("valid pattern"))
            .collect()
    }

    #[test]
    fn globs_and_operations() {
        let dash = Permissions {
            read: patterns(&["logs", "metrics-*"]),
            ..Default::default()
        };
        assert!(dash.allows(Operation::Read, "logs"));
        assert!(dash.allows(Operation::Read, "metrics-web"));
        assert!(dash.allows(Operation::Describe, "metrics-web"));
        assert!(!dash.allows(Operation::Read, "logs2"));
        assert!(!dash.allows(Operation::Write, "logs"));
        assert!(!dash.allows(Operation::Admin, "logs"));
        assert!(dash.has_any(Operation::Read));
        assert!(!dash.has_any(Operation::Write));

        let root = Permissions {
            admin: patterns(&["*"]),
            ..Default::default()
        };
        for op in [
            Operation::Read,
            Operation::Write,
            Operation::Admin,
            Operation::Describe,
        ] {
            assert!(root.allows(op, "anything"));
        }
        assert!(root.is_cluster_admin());
        assert!(!dash.is_cluster_admin());
    }
}
