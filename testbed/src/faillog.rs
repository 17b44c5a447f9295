//! What a failed lab prints: the failure first, then per node the few log
//! lines that explain it (warnings and errors, else the last lines), and the
//! paths of the full logs, copied to `/tmp/petrel-testbed-logs/<test>/` so
//! they outlive the lab's runtime directory.

use std::path::{Path, PathBuf};

/// Where full logs of failed labs are kept.
pub const LOG_ROOT: &str = "/tmp/petrel-testbed-logs";
/// Lines of each node's log shown in the summary.
pub const SUMMARY_LINES: usize = 20;

/// Words that make a log line worth showing first (petrel's, BIRD's, FRR's
/// and GoBGP's ways of saying something went wrong).
const MARKERS: [&str; 10] = [
    "WARN",
    "ERROR",
    "error",
    "Error",
    "panicked",
    "fail",
    "Fail",
    "NOTIFICATION",
    "refused",
    "warning",
];

/// The last `n` lines of `log` that carry a warning or error; the last `n`
/// lines when none does.
pub fn relevant_lines(log: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = log.lines().collect();
    let marked: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| MARKERS.iter().any(|m| l.contains(m)))
        .collect();
    let chosen = if marked.is_empty() { lines } else { marked };
    chosen[chosen.len().saturating_sub(n)..].to_vec()
}

/// The running test's name (libtest names the thread after it), made safe
/// for a directory name; `fallback` outside tests.
pub fn test_name(fallback: &str) -> String {
    let name = std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .unwrap_or(fallback)
        .to_string();
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() { "lab".into() } else { safe }
}

/// Writes `content` as `<dir>/<node>.log`, creating `dir`.
pub fn save(dir: &Path, node: &str, content: &str) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{node}.log"));
    std::fs::write(&path, content)?;
    Ok(path)
}

/// The summary of one node's log: a header naming the full log's path (or
/// why it could not be saved), then its relevant lines.
pub fn node_summary(node: &str, kind: &str, log: &str, saved: &std::io::Result<PathBuf>) -> String {
    let lines = relevant_lines(log, SUMMARY_LINES);
    let total = log.lines().count();
    let full = match saved {
        Ok(p) => format!("full log: {}", p.display()),
        Err(e) => format!("full log not saved: {e}"),
    };
    format!(
        "----- {node} ({kind}): {} of {total} log lines; {full}\n{}\n",
        lines.len(),
        lines.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_and_errors_come_before_chatter() {
        let mut log = String::new();
        for i in 0..300 {
            log.push_str(&format!("INFO routine line {i}\n"));
            if i == 100 {
                log.push_str("WARN peer 10.0.0.2: hold timer expired\n");
            }
        }
        let lines = relevant_lines(&log, SUMMARY_LINES);
        assert_eq!(lines, vec!["WARN peer 10.0.0.2: hold timer expired"]);
        // Nothing marked: the tail.
        let quiet = "a\nb\nc\n";
        assert_eq!(relevant_lines(quiet, 2), vec!["b", "c"]);
    }

    #[test]
    fn summaries_are_short_and_point_at_the_full_log() {
        let dir = tempfile::tempdir().unwrap();
        let log: String = (0..400).map(|i| format!("ERROR line {i}\n")).collect();
        let saved = save(dir.path(), "petrel", &log);
        let text = node_summary("petrel", "petrel", &log, &saved);
        assert!(text.lines().count() <= SUMMARY_LINES + 1, "{text}");
        assert!(text.contains("20 of 400 log lines"), "{text}");
        let path = saved.unwrap();
        assert!(text.contains(&path.display().to_string()));
        assert_eq!(std::fs::read_to_string(path).unwrap(), log);
    }

    #[test]
    fn test_names_are_directory_safe() {
        let name = test_name("x");
        assert!(!name.contains("::") && !name.contains('/'), "{name}");
        assert!(name.contains("test_names_are_directory_safe"), "{name}");
    }
}
