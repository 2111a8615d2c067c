//! What the commands show a person at a terminal and hide from scripts: colours (never
//! under `NO_COLOR` or into a pipe) and spinners on stderr while a long call runs.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressStyle};

/// Colours only for a person at a terminal, and never under `NO_COLOR`.
pub fn color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// The same for what goes to stderr, which may be a file while stdout is a terminal.
fn color_err() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn painted(on: bool, code: &str, s: &str) -> String {
    match on {
        true => format!("\x1b[{code}m{s}\x1b[0m"),
        false => s.to_string(),
    }
}

/// `s` in the ANSI colour `code` when colours are on (for stdout).
pub fn paint(code: &str, s: &str) -> String {
    painted(color(), code, s)
}

/// `s` in the ANSI colour `code` when stderr takes colours.
pub fn paint_err(code: &str, s: &str) -> String {
    painted(color_err(), code, s)
}

/// The colour of an execution's or step's status: green done, red failed, yellow waiting.
fn status_code(status: &str) -> Option<&'static str> {
    match status {
        "succeeded" | "ok" => Some("32"),
        "failed" | "timed_out" | "error" => Some("31"),
        "queued" | "running" => Some("33"),
        "cancelled" | "skipped" => Some("2"),
        _ => None,
    }
}

/// A status word painted by what it means.
pub fn status_word(s: &str) -> String {
    match status_code(s) {
        Some(code) => paint(code, s),
        None => s.to_string(),
    }
}

/// The same, for stderr.
pub fn status_err(s: &str) -> String {
    match status_code(s) {
        Some(code) => paint_err(code, s),
        None => s.to_string(),
    }
}

/// Paint the status words of a rendered table's column `header`. Done after rendering,
/// because the table would count the escape codes as width and misalign its columns.
pub fn paint_status_column(table: &str, header: &str) -> String {
    match color() {
        true => mark_column(table, header, status_word),
        false => table.to_string(),
    }
}

/// `table` with each row's word under `header` replaced by `mark(word)`.
fn mark_column(table: &str, header: &str, mark: impl Fn(&str) -> String) -> String {
    let mut lines = table.lines();
    let Some(first) = lines.next() else {
        return String::new();
    };
    let Some(col) = first.find(header).map(|b| first[..b].chars().count()) else {
        return table.to_string();
    };
    let mut out = format!("{first}\n");
    for line in lines {
        let chars: Vec<char> = line.chars().collect();
        let end = (col..chars.len()).find(|i| chars[*i] == ' ').unwrap_or(chars.len());
        if col >= end {
            out.push_str(line);
        } else {
            let word: String = chars[col..end].iter().collect();
            let head: String = chars[..col].iter().collect();
            let tail: String = chars[end..].iter().collect();
            out.push_str(&format!("{head}{}{tail}", mark(&word)));
        }
        out.push('\n');
    }
    out
}

/// A spinner on stderr saying what is being waited for; drawn only when stderr is a
/// terminal (a script's stderr gets nothing). Finish it with `finish_and_clear`.
pub fn spinner(message: impl Into<String>) -> ProgressBar {
    let target = match std::io::stderr().is_terminal() {
        true => ProgressDrawTarget::stderr(),
        false => ProgressDrawTarget::hidden(),
    };
    // Cleared when dropped too: an error on the way out must not leave it drawn.
    let bar = ProgressBar::with_draw_target(None, target).with_finish(ProgressFinish::AndClear);
    bar.set_style(ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("a valid template"));
    bar.set_message(message.into());
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_word_under_the_header_is_marked_and_nothing_else() {
        let t = "ID  STATUS     WHEN\n1   succeeded  now\n\u{e9}2  failed     -\n3\n";
        let marked = super::mark_column(t, "STATUS", |w| format!("<{w}>"));
        assert_eq!(
            marked,
            "ID  STATUS     WHEN\n1   <succeeded>  now\n\u{e9}2  <failed>     -\n3\n"
        );
    }
}
