//! Which files to tail: expanding the include globs, applying the excludes, and the
//! directories to watch with inotify so new files are found without waiting for a rescan.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use crate::config::FileRule;

/// A file matched by the config, with the index of the `[[files]]` rule it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    pub path: PathBuf,
    pub rule: usize,
}

/// Expands every rule's globs. A path matched by several rules belongs to the first.
/// Unreadable directories are skipped (and retried at the next scan), never fatal.
pub fn scan(rules: &[FileRule]) -> Vec<Matched> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (rule_index, rule) in rules.iter().enumerate() {
        for pattern in &rule.include {
            let entries = match glob::glob(pattern) {
                Ok(entries) => entries,
                Err(e) => {
                    // Validated at config load; only reachable if validation and use diverge.
                    tracing::warn!(pattern, error = %e, "invalid include glob");
                    continue;
                }
            };
            for entry in entries {
                let path = match entry {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::debug!(error = %e, "skipping unreadable path during scan");
                        continue;
                    }
                };
                if !path.is_file()
                    || is_excluded(&path, &rule.exclude)
                    || !seen.insert(path.clone())
                {
                    continue;
                }
                out.push(Matched {
                    path,
                    rule: rule_index,
                });
            }
        }
    }
    out
}

/// The first rule whose globs match `path` (whether or not it exists now).
pub fn rule_for(rules: &[FileRule], path: &Path) -> Option<usize> {
    rules.iter().position(|rule| {
        rule.include
            .iter()
            .any(|pattern| glob::Pattern::new(pattern).is_ok_and(|p| p.matches_path(path)))
            && !is_excluded(path, &rule.exclude)
    })
}

/// An exclude pattern without a `/` matches the file name; with one, the whole path.
fn is_excluded(path: &Path, exclude: &[glob::Pattern]) -> bool {
    exclude.iter().any(|p| {
        if p.as_str().contains('/') {
            p.matches_path(path)
        } else {
            path.file_name()
                .is_some_and(|n| p.matches(&n.to_string_lossy()))
        }
    })
}

/// A directory to watch for new files, and whether its subdirectories matter too.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WatchDir {
    pub dir: PathBuf,
    pub recursive: bool,
}

/// The directories whose changes can make a rule match a new file: for each include glob,
/// the longest leading path without wildcards. Only the glob's last component may be a
/// wildcard for a plain watch; a wildcard further up needs a recursive one.
pub fn watch_dirs(rules: &[FileRule]) -> Vec<WatchDir> {
    let mut dirs: Vec<WatchDir> = Vec::new();
    for pattern in rules.iter().flat_map(|r| &r.include) {
        let path = Path::new(pattern);
        let mut base = PathBuf::new();
        let mut wild_depth = None;
        let components: Vec<Component<'_>> = path.components().collect();
        for (i, c) in components.iter().enumerate() {
            let text = c.as_os_str().to_string_lossy();
            if text.contains(['*', '?', '[']) {
                wild_depth = Some(i);
                break;
            }
            base.push(c);
        }
        let dir = match wild_depth {
            // No wildcard: the pattern names one file; watch its directory.
            None => base.parent().map(Path::to_path_buf).unwrap_or(base),
            Some(_) => base,
        };
        let recursive = wild_depth.is_some_and(|d| d + 1 < components.len());
        let wd = WatchDir { dir, recursive };
        if !dirs.contains(&wd) {
            dirs.push(wd);
        }
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ReadFrom;

    fn rule(include: &[&str], exclude: &[&str]) -> FileRule {
        FileRule {
            include: include.iter().map(|s| s.to_string()).collect(),
            exclude: exclude
                .iter()
                .map(|s| glob::Pattern::new(s).expect("pattern"))
                .collect(),
            read_from: ReadFrom::Beginning,
            topic: "logs".into(),
            max_line_bytes: 1024,
            multiline: None,
        }
    }

    #[test]
    fn scan_applies_excludes_and_first_rule_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["a.log", "b.log", "c.log.gz", "sub/d.log"] {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, b"x\n").expect("write");
        }
        let d = dir.path().display();
        let rules = [
            rule(&[&format!("{d}/a.log")], &[]),
            rule(
                &[&format!("{d}/*.log*"), &format!("{d}/**/d.log")],
                &["*.gz"],
            ),
        ];
        let mut got: Vec<(String, usize)> = scan(&rules)
            .into_iter()
            .map(|m| {
                (
                    m.path
                        .strip_prefix(dir.path())
                        .expect("prefix")
                        .display()
                        .to_string(),
                    m.rule,
                )
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                ("a.log".into(), 0),
                ("b.log".into(), 1),
                ("sub/d.log".into(), 1)
            ]
        );
    }

    #[test]
    fn watch_dirs_are_the_literal_prefixes() {
        let rules = [rule(
            &[
                "/var/log/*.log",
                "/srv/*/logs/*.log",
                "/opt/app.log",
                "/var/log/x*",
            ],
            &[],
        )];
        assert_eq!(
            watch_dirs(&rules),
            [
                WatchDir {
                    dir: "/var/log".into(),
                    recursive: false
                },
                WatchDir {
                    dir: "/srv".into(),
                    recursive: true
                },
                WatchDir {
                    dir: "/opt".into(),
                    recursive: false
                },
            ]
        );
    }
}
