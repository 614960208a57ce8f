//! Progress output of a training run on stderr: an indicatif bar on a terminal, plain lines
//! otherwise, and the one-line summaries at the start of the run and after each epoch.

use std::io::IsTerminal;

use super::metrics::Metrics;
use super::report::EpochLog;
use super::run::Run;

/// Progress of one epoch's steps.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    enabled: bool,
    every: usize,
    epoch: usize,
    epochs: usize,
    steps: usize,
}

impl Progress {
    /// The progress of epoch `epoch` (0-based) of `epochs`, with `steps` steps; silent unless
    /// `enabled`.
    pub fn new(enabled: bool, epoch: usize, epochs: usize, steps: usize) -> Progress {
        let tty = std::io::stderr().is_terminal();
        let bar = (enabled && tty).then(|| {
            let b = indicatif::ProgressBar::new(steps as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            b.set_prefix(format!("epoch {}/{epochs}", epoch + 1));
            b
        });
        Progress {
            bar,
            enabled,
            every: (steps / 10).max(1),
            epoch,
            epochs,
            steps,
        }
    }

    /// Whether [`Self::step`] at step `i` displays anything (a bar shows every step, lines
    /// every tenth of the epoch): the loop reads device-side counters only then.
    pub fn shows(&self, i: usize) -> bool {
        self.bar.is_some() || (self.enabled && (i.is_multiple_of(self.every) || i == self.steps))
    }

    /// After step `i` (1-based) of the epoch: running loss and accuracy, images per second and
    /// the estimated seconds left in this invocation.
    pub fn step(&self, i: usize, loss: f64, acc: f64, ips: f64, eta: f64) {
        let msg = format!("loss {loss:.4} acc {:.2}% {ips:.0} img/s", 100.0 * acc);
        if let Some(b) = &self.bar {
            b.set_position(i as u64);
            b.set_message(format!("{msg} ETA {}", fmt_secs(eta)));
        } else if self.shows(i) {
            eprintln!(
                "epoch {}/{} step {i}/{} {msg} ETA {}",
                self.epoch + 1,
                self.epochs,
                self.steps,
                fmt_secs(eta)
            );
        }
    }

    /// Clears the bar at the end of the epoch.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// `1h02m03s` / `2m03s` / `3s`.
pub fn fmt_secs(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    let (h, m, sec) = (s / 3600, (s / 60) % 60, s % 60);
    if h > 0 {
        format!("{h}h{m:02}m{sec:02}s")
    } else if m > 0 {
        format!("{m}m{sec:02}s")
    } else {
        format!("{sec}s")
    }
}

/// The line printed when training starts.
pub fn start_line(run: &Run) -> String {
    format!(
        "training {} ({} parameters) on {} ({} examples, {} steps/epoch), evaluating on {} {} examples, device {}, output {}",
        run.net.arch,
        run.net.store.num_params(),
        run.dataset_name,
        run.n_train,
        run.ipe,
        run.eval_loader.len(),
        run.eval_split,
        run.device.name(),
        run.out.display()
    )
}

/// The line printed after an epoch (`mask_changes`: the method's mask updates so far).
pub fn epoch_line(run: &Run, entry: &EpochLog, m: Option<Metrics>, mask_changes: u64) -> String {
    let test = match m {
        Some(m) => format!(
            ", {} acc {:.2}% nll {:.4} ece {:.4}",
            run.eval_split,
            100.0 * m.accuracy,
            m.nll,
            m.ece
        ),
        None => String::new(),
    };
    let sparse = match entry.density {
        Some(d) => format!(", density {d:.4} ({mask_changes} mask updates)"),
        None => String::new(),
    };
    format!(
        "epoch {}/{}: lr {:.4} train loss {:.4} acc {:.2}%{test}, {:.0} img/s, {:.1} s{sparse}",
        entry.epoch,
        run.cfg.epochs,
        entry.lr,
        entry.train_loss,
        100.0 * entry.train_acc,
        entry.images_per_sec,
        entry.seconds
    )
}
