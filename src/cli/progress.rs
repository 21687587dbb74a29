//! Progress on the command line: a bar (indicatif) on a terminal, plain lines on
//! standard error otherwise and with `NO_COLOR` (at most twenty a phase).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::progress::Progress;

/// Progress for people at a terminal, or in a log.
#[derive(Debug)]
pub struct Shown {
    bar: Mutex<Option<ProgressBar>>,
    what: Mutex<&'static str>,
    done: AtomicUsize,
    total: AtomicUsize,
    fancy: bool,
}

impl Shown {
    /// A bar when standard error is a terminal and `NO_COLOR` is unset; lines otherwise.
    pub fn new() -> Self {
        Self {
            bar: Mutex::new(None),
            what: Mutex::new(""),
            done: AtomicUsize::new(0),
            total: AtomicUsize::new(0),
            fancy: std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }
}

impl Default for Shown {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for Shown {
    fn start(&self, what: &'static str, total: usize) {
        self.done.store(0, Ordering::SeqCst);
        self.total.store(total, Ordering::SeqCst);
        if let Ok(mut name) = self.what.lock() {
            *name = what;
        }
        if self.fancy {
            let bar =
                ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            if let Ok(style) =
                ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} ({elapsed})")
            {
                bar.set_style(style);
            }
            bar.set_message(what);
            if let Ok(mut slot) = self.bar.lock() {
                *slot = Some(bar);
            }
        }
    }

    fn advance(&self) {
        let done = self.done.fetch_add(1, Ordering::SeqCst) + 1;
        if self.fancy {
            if let Ok(slot) = self.bar.lock()
                && let Some(bar) = slot.as_ref()
            {
                bar.inc(1);
            }
            return;
        }
        let total = self.total.load(Ordering::SeqCst).max(1);
        // At most twenty lines a phase, and always the last.
        let step = total.div_ceil(20);
        if done.is_multiple_of(step) || done == total {
            let what = self.what.lock().map(|w| *w).unwrap_or("");
            eprintln!("{done}/{total} {what}");
        }
    }

    fn finish(&self) {
        if let Ok(mut slot) = self.bar.lock()
            && let Some(bar) = slot.take()
        {
            bar.finish_and_clear();
        }
    }
}
