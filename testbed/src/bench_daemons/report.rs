//! Per-run results of the whole-daemon benchmark and the markdown report:
//! median, min and max per daemon and metric, and petrel's ratios to the
//! other daemons' medians. Failed runs are listed with their reason and never
//! enter the statistics. No RFC.

use super::configs::Daemon;
use std::fmt::Write as _;

/// What one successful run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct RunResult {
    /// First UPDATE written by the generator until the sink held every prefix.
    pub propagation_s: f64,
    /// Generator's write of the whole table (blocks on the DUT's TCP window).
    pub gen_send_s: f64,
    /// DUT CPU seconds from just before the first UPDATE until convergence.
    pub cpu_converge_s: f64,
    /// DUT CPU seconds from just before the first UPDATE until it went idle.
    pub cpu_total_s: f64,
    /// Sum of the DUT processes' VmHWM after it went idle.
    pub peak_rss_bytes: u64,
    /// Sum of the DUT processes' VmRSS when the sink held every prefix.
    pub rss_after_bytes: u64,
    /// UPDATEs with table prefixes the sink received until convergence.
    pub sink_updates: usize,
    /// CPU seconds of processes other than the DUT and the harness between
    /// the first UPDATE and convergence (other load on the machine).
    pub other_cpu_s: f64,
    /// Table routes in the DUT namespace's kernel main table once idle
    /// (`None` for a DUT without FIB).
    pub fib_routes: Option<usize>,
}

impl RunResult {
    /// Whether the generator, not the DUT, may be what was measured.
    pub fn generator_bound(&self) -> bool {
        self.gen_send_s > 0.5 * self.propagation_s
    }

    /// Whether other processes used more than a third of a CPU on average
    /// during the run, so the numbers are likely disturbed.
    pub fn disturbed(&self) -> bool {
        self.other_cpu_s > self.propagation_s / 3.0
    }
}

/// One run: measured or failed with a reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub daemon: Daemon,
    pub index: usize,
    pub outcome: Result<RunResult, String>,
}

/// Median, min and max of a sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

/// Median (mean of the two middle values for an even count), min and max;
/// `None` for an empty sample.
pub fn summarize(values: &[f64]) -> Option<Summary> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    let median = if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    };
    Some(Summary {
        median,
        min: v[0],
        max: v[v.len() - 1],
    })
}

/// `ours / theirs`, `None` when either is missing or `theirs` is zero.
pub fn ratio(ours: Option<f64>, theirs: Option<f64>) -> Option<f64> {
    match (ours, theirs) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    }
}

/// One report metric.
struct Metric {
    name: &'static str,
    /// The value of one run, given the table size.
    get: fn(&RunResult, usize) -> Option<f64>,
    /// Decimal places.
    prec: usize,
}

const MIB: f64 = 1024.0 * 1024.0;

const METRICS: [Metric; 9] = [
    Metric {
        name: "propagation (s)",
        get: |r, _| Some(r.propagation_s),
        prec: 3,
    },
    Metric {
        name: "routes/s (k)",
        get: |r, n| (r.propagation_s > 0.0).then(|| n as f64 / r.propagation_s / 1000.0),
        prec: 1,
    },
    Metric {
        name: "DUT CPU to converge (s)",
        get: |r, _| Some(r.cpu_converge_s),
        prec: 2,
    },
    Metric {
        name: "DUT CPU to idle (s)",
        get: |r, _| Some(r.cpu_total_s),
        prec: 2,
    },
    Metric {
        name: "DUT peak RSS (MiB)",
        get: |r, _| Some(r.peak_rss_bytes as f64 / MIB),
        prec: 1,
    },
    Metric {
        name: "DUT RSS after (MiB)",
        get: |r, _| Some(r.rss_after_bytes as f64 / MIB),
        prec: 1,
    },
    Metric {
        name: "UPDATEs to the sink",
        get: |r, _| Some(r.sink_updates as f64),
        prec: 0,
    },
    Metric {
        name: "generator send (s)",
        get: |r, _| Some(r.gen_send_s),
        prec: 3,
    },
    Metric {
        name: "other host CPU in run (s)",
        get: |r, _| Some(r.other_cpu_s),
        prec: 2,
    },
];

fn metric_values(runs: &[&RunResult], m: &Metric, routes: usize) -> Vec<f64> {
    runs.iter().filter_map(|r| (m.get)(r, routes)).collect()
}

fn fmt_summary(s: Option<Summary>, prec: usize) -> String {
    match s {
        Some(s) => format!("{:.p$} ({:.p$}–{:.p$})", s.median, s.min, s.max, p = prec),
        None => "—".into(),
    }
}

/// The markdown report. `header` lines (machine, build, command) come first.
pub fn render(header: &[String], routes: usize, daemons: &[Daemon], runs: &[Run]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## Whole-daemon benchmark B1: {routes} routes\n");
    for h in header {
        let _ = writeln!(out, "- {h}");
    }
    let ok = |d: Daemon| -> Vec<&RunResult> {
        runs.iter()
            .filter(|r| r.daemon == d)
            .filter_map(|r| r.outcome.as_ref().ok())
            .collect()
    };
    let _ = writeln!(
        out,
        "\nMedian (min–max) over the successful runs.\n\n| metric | {} |",
        daemons
            .iter()
            .map(|d| d.label())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(out, "|---|{}", "---|".repeat(daemons.len()));
    let _ = writeln!(
        out,
        "| runs ok | {} |",
        daemons
            .iter()
            .map(|d| format!(
                "{}/{}",
                ok(*d).len(),
                runs.iter().filter(|r| r.daemon == *d).count()
            ))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let mut medians: Vec<Vec<Option<f64>>> = Vec::new();
    for m in &METRICS {
        let mut row = Vec::new();
        let mut cells = Vec::new();
        for d in daemons {
            let s = summarize(&metric_values(&ok(*d), m, routes));
            row.push(s.map(|s| s.median));
            cells.push(fmt_summary(s, m.prec));
        }
        medians.push(row);
        let _ = writeln!(out, "| {} | {} |", m.name, cells.join(" | "));
    }
    let fib: Vec<String> = daemons
        .iter()
        .map(|d| {
            if !d.installs_fib() {
                return "no FIB".into();
            }
            let v: Vec<f64> = ok(*d)
                .iter()
                .filter_map(|r| r.fib_routes.map(|n| n as f64))
                .collect();
            fmt_summary(summarize(&v), 0)
        })
        .collect();
    let _ = writeln!(out, "| kernel routes once idle | {} |", fib.join(" | "));
    let others: Vec<(usize, Daemon)> = daemons
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, d)| *d != Daemon::Petrel)
        .collect();
    if let Some(p) = daemons.iter().position(|d| *d == Daemon::Petrel)
        && !others.is_empty()
    {
        let _ = writeln!(
            out,
            "\nRatios of the medians, petrel / other: below 1 favours petrel, except for routes/s.\n\n| metric | {} |\n|---|{}",
            others
                .iter()
                .map(|(_, d)| format!("petrel/{}", d.label()))
                .collect::<Vec<_>>()
                .join(" | "),
            "---|".repeat(others.len())
        );
        for (m, row) in METRICS.iter().zip(&medians) {
            if m.name.starts_with("generator") || m.name.starts_with("other") {
                continue;
            }
            let cells: Vec<String> = others
                .iter()
                .map(|(i, _)| match ratio(row[p], row[*i]) {
                    Some(r) => format!("{r:.2}"),
                    None => "—".into(),
                })
                .collect();
            let _ = writeln!(out, "| {} | {} |", m.name, cells.join(" | "));
        }
    }
    let notes: Vec<String> = runs
        .iter()
        .filter_map(|r| match &r.outcome {
            Err(reason) => Some(format!(
                "{} run {}: FAILED: {reason}",
                r.daemon.label(),
                r.index + 1
            )),
            Ok(res) if res.generator_bound() => Some(format!(
                "{} run {}: generator send {:.3} s is more than half of the propagation {:.3} s \
                 (the write blocks on the DUT's TCP window, so a slow reader shows up here too)",
                r.daemon.label(),
                r.index + 1,
                res.gen_send_s,
                res.propagation_s
            )),
            Ok(res) if res.disturbed() => Some(format!(
                "{} run {}: other processes used {:.2} CPU s during the {:.3} s run",
                r.daemon.label(),
                r.index + 1,
                res.other_cpu_s,
                res.propagation_s
            )),
            Ok(res) => match res.fib_routes {
                Some(n) if n < routes => Some(format!(
                    "{} run {}: only {n} of {routes} routes in the kernel once idle",
                    r.daemon.label(),
                    r.index + 1
                )),
                _ => None,
            },
        })
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(out, "\nNotes:\n");
        for n in notes {
            let _ = writeln!(out, "- {n}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max_and_ratio() {
        let s = summarize(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        let s = summarize(&[4.0, 1.0, 2.0, 10.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (3.0, 1.0, 10.0));
        assert_eq!(summarize(&[]), None);
        assert_eq!(summarize(&[f64::NAN]), None);
        assert_eq!(ratio(Some(1.0), Some(4.0)), Some(0.25));
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(1.0)), None);
    }

    fn result(prop: f64, rss_mib: u64) -> RunResult {
        RunResult {
            propagation_s: prop,
            gen_send_s: 0.01,
            cpu_converge_s: prop / 2.0,
            cpu_total_s: prop,
            peak_rss_bytes: rss_mib * 1024 * 1024,
            rss_after_bytes: rss_mib * 1024 * 1024,
            other_cpu_s: 0.0,
            sink_updates: 3,
            fib_routes: Some(1000),
        }
    }

    #[test]
    fn report_has_medians_ratios_failures_and_flags() {
        let runs = vec![
            Run {
                daemon: Daemon::Petrel,
                index: 0,
                outcome: Ok(result(1.0, 10)),
            },
            Run {
                daemon: Daemon::Petrel,
                index: 1,
                outcome: Ok(result(3.0, 30)),
            },
            Run {
                daemon: Daemon::Bird,
                index: 0,
                outcome: Ok(RunResult {
                    other_cpu_s: 2.0,
                    ..result(4.0, 5)
                }),
            },
            Run {
                daemon: Daemon::Bird,
                index: 1,
                outcome: Err("no convergence within 120 s (900 of 1000)".into()),
            },
            Run {
                daemon: Daemon::Gobgp,
                index: 0,
                outcome: Ok(RunResult {
                    gen_send_s: 3.0,
                    fib_routes: None,
                    ..result(5.0, 50)
                }),
            },
        ];
        let daemons = [Daemon::Petrel, Daemon::Bird, Daemon::Gobgp];
        let r = render(&["machine: test".into()], 1000, &daemons, &runs);
        assert!(r.contains("- machine: test\n"), "{r}");
        assert!(
            r.contains("| metric | petrel | BIRD | GoBGP |\n|---|---|---|---|\n"),
            "{r}"
        );
        assert!(r.contains("| runs ok | 2/2 | 1/2 | 1/1 |"), "{r}");
        assert!(
            r.contains("| propagation (s) | 2.000 (1.000–3.000) | 4.000 (4.000–4.000) | 5.000 (5.000–5.000) |"),
            "{r}"
        );
        // 1000 routes in 1 s and 3 s: 1.0 and 0.333 k routes/s.
        assert!(r.contains("| routes/s (k) | 0.7 (0.3–1.0) |"), "{r}");
        assert!(
            r.contains("| DUT peak RSS (MiB) | 20.0 (10.0–30.0) | 5.0 (5.0–5.0) |"),
            "{r}"
        );
        assert!(
            r.contains(
                "| kernel routes once idle | 1000 (1000–1000) | 1000 (1000–1000) | no FIB |"
            ),
            "{r}"
        );
        assert!(r.contains("| metric | petrel/BIRD | petrel/GoBGP |"), "{r}");
        assert!(r.contains("| propagation (s) | 0.50 | 0.40 |"), "{r}");
        assert!(r.contains("| DUT peak RSS (MiB) | 4.00 | 0.40 |"), "{r}");
        assert!(
            r.contains("BIRD run 2: FAILED: no convergence within 120 s (900 of 1000)"),
            "{r}"
        );
        assert!(r.contains("GoBGP run 1: generator send 3.000 s"), "{r}");
        assert!(!r.contains("petrel run 1: generator"), "{r}");
        assert!(
            r.contains("BIRD run 1: other processes used 2.00 CPU s during the 4.000 s run"),
            "{r}"
        );
        assert!(
            r.contains("| other host CPU in run (s) | 0.00 (0.00–0.00) | 2.00 (2.00–2.00) |"),
            "{r}"
        );
        assert_eq!(r.matches("| other host CPU").count(), 1, "not a ratio: {r}");
        assert_eq!(r.matches("| generator send").count(), 1, "not a ratio: {r}");
        assert!(r.contains("| UPDATEs to the sink | 3 (3–3) |"), "{r}");
        assert!(r.contains("| UPDATEs to the sink | 1.00 |"), "{r}");
    }

    #[test]
    fn report_without_petrel_has_no_ratio_table() {
        let runs = vec![Run {
            daemon: Daemon::Frr,
            index: 0,
            outcome: Err("session to the sink never came up".into()),
        }];
        let r = render(&[], 10, &[Daemon::Frr], &runs);
        assert!(!r.contains("petrel/"), "{r}");
        assert!(r.contains("| runs ok | 0/1 |"), "{r}");
        assert!(r.contains("| propagation (s) | — |"), "{r}");
        assert!(r.contains("FRR run 1: FAILED: session to the sink never came up"));
    }
}
