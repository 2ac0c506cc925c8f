//! What `berth enable` and `disable` show while they wait: a spinner with what is
//! awaited on a terminal, one line per change of it elsewhere (CI logs, pipes),
//! and nothing but a record in tests.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::Write;
use std::time::Duration;

/// Where the current step goes.
pub trait Progress: Send {
    /// What is awaited now; called on every poll, shown when it changes.
    fn waiting(&mut self, what: &str);
    /// A step is over; `line` stays on screen.
    fn done(&mut self, line: &str);
}

/// A spinner on standard error.
pub struct Spinner {
    bar: Option<ProgressBar>,
}

impl Spinner {
    pub fn new() -> Spinner {
        Spinner { bar: None }
    }
}

impl Default for Spinner {
    fn default() -> Self {
        Spinner::new()
    }
}

impl Progress for Spinner {
    fn waiting(&mut self, what: &str) {
        let bar = self.bar.get_or_insert_with(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        if bar.message() != what {
            bar.set_message(what.to_string());
        }
    }

    fn done(&mut self, line: &str) {
        match self.bar.take() {
            Some(bar) => bar.finish_with_message(format!("✓ {line}")),
            None => eprintln!("✓ {line}"),
        }
    }
}

/// One line per change, for a log.
pub struct Lines<W: Write + Send> {
    out: W,
    last: String,
}

impl<W: Write + Send> Lines<W> {
    pub fn new(out: W) -> Self {
        Lines {
            out,
            last: String::new(),
        }
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write + Send> Progress for Lines<W> {
    fn waiting(&mut self, what: &str) {
        if what != self.last {
            let _ = writeln!(self.out, "… {what}");
            self.last = what.to_string();
        }
    }

    fn done(&mut self, line: &str) {
        let _ = writeln!(self.out, "✓ {line}");
        self.last.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_show_each_change_once() {
        let mut lines = Lines::new(Vec::new());
        lines.waiting("a");
        lines.waiting("a");
        lines.waiting("b");
        lines.done("b is there");
        lines.waiting("b");
        let text = String::from_utf8(lines.into_inner()).unwrap();
        assert_eq!(text, "… a\n… b\n✓ b is there\n… b\n");
    }
}
