//! foldvault beside redb, sled 0.34, SQLite and SQLCipher on the same workloads (after redb's
//! benchmark), printed as one table and written to BENCHMARKS.md.
//!
//! ```text
//! cargo bench --bench peers --features peers -- --quick          # smoke run, N = 5,000
//! cargo bench --bench peers --features peers                     # N = 100,000, median of 3
//! cargo bench --bench peers --features peers-sqlcipher,aws-lc    # + SQLCipher, + aws-lc column
//! ```
//!
//! Options: `--n N`, `--quick`, `--reps R`, `--engines a,b`, `--datasets random16,atoms`,
//! `--no-write` (print only). Each engine and dataset runs in a child process of this binary
//! (`--child ENGINE DATASET`), so each peak RSS is that engine's alone. The workloads and the
//! engines' settings are described in `common/mod.rs` and `common/engines.rs`.
//! `--interleaved` runs only the durable-commit rows and the read rows, every engine open in
//! this process and the work taken in turns (`common/interleaved.rs`), and writes its own
//! section.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::{Command, Stdio};

use common::engines::Engine;
use common::{Dataset, Sizes};

struct Args {
    n: usize,
    quick: bool,
    reps: usize,
    seed: u64,
    engines: Vec<Engine>,
    datasets: Vec<Dataset>,
    write: bool,
    /// `--interleaved`: only the durable-commit and read rows, every engine in one process, in
    /// turns.
    interleaved: bool,
    child: Option<(Engine, Dataset)>,
    /// The options as given (for the command line shown in BENCHMARKS.md).
    shown: Vec<String>,
}

fn usage(msg: &str) -> ! {
    eprintln!("peers: {msg}");
    eprintln!("options: --n N | --quick | --reps R | --engines a,b | --datasets a,b | --interleaved | --no-write");
    eprintln!("engines: {}", Engine::all().iter().map(|e| e.name()).collect::<Vec<_>>().join(", "));
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        n: 0,
        quick: false,
        reps: 0,
        seed: 0x466f_6c64_5661_756c,
        engines: Engine::all(),
        datasets: Dataset::ALL.to_vec(),
        write: true,
        interleaved: false,
        child: None,
        shown: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    let value = |it: &mut dyn Iterator<Item = String>, name: &str| {
        it.next().unwrap_or_else(|| usage(&format!("{name} needs a value")))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            // cargo bench passes --bench to every harness = false target.
            "--bench" => continue,
            "--quick" => a.quick = true,
            "--no-write" => a.write = false,
            "--interleaved" => a.interleaved = true,
            "--n" => a.n = value(&mut it, "--n").parse().unwrap_or_else(|_| usage("--n takes a number")),
            "--reps" => a.reps = value(&mut it, "--reps").parse().unwrap_or_else(|_| usage("--reps takes a number")),
            "--seed" => a.seed = value(&mut it, "--seed").parse().unwrap_or_else(|_| usage("--seed takes a number")),
            "--engines" => {
                let v = value(&mut it, "--engines");
                a.engines = v
                    .split(',')
                    .map(|s| Engine::parse(s).unwrap_or_else(|| usage(&format!("unknown engine {s}"))))
                    .collect();
            }
            "--datasets" => {
                let v = value(&mut it, "--datasets");
                a.datasets = v
                    .split(',')
                    .map(|s| Dataset::parse(s).unwrap_or_else(|| usage(&format!("unknown dataset {s}"))))
                    .collect();
            }
            "--child" => {
                let e = value(&mut it, "--child");
                let d = value(&mut it, "--child");
                let e = Engine::parse(&e).unwrap_or_else(|| usage(&format!("unknown engine {e}")));
                let d = Dataset::parse(&d).unwrap_or_else(|| usage(&format!("unknown dataset {d}")));
                a.child = Some((e, d));
                continue;
            }
            other => usage(&format!("unknown option {other}")),
        }
        a.shown.push(arg.clone());
        if matches!(arg.as_str(), "--n" | "--reps" | "--seed" | "--engines" | "--datasets") {
            // The value was consumed above; show the parsed form.
            let v = match arg.as_str() {
                "--n" => a.n.to_string(),
                "--reps" => a.reps.to_string(),
                "--seed" => a.seed.to_string(),
                "--engines" => a.engines.iter().map(|e| e.name()).collect::<Vec<_>>().join(","),
                _ => a.datasets.iter().map(|d| d.name()).collect::<Vec<_>>().join(","),
            };
            a.shown.push(v);
        }
    }
    if a.n == 0 {
        a.n = if a.quick { 5_000 } else { 100_000 };
    }
    if a.reps == 0 {
        a.reps = if a.quick { 1 } else { 3 };
    }
    a
}

/// One table row: a workload result reported by the children.
struct Row {
    id: &'static str,
    label: String,
    unit: &'static str,
}

fn rows(s: &Sizes) -> Vec<Row> {
    let n = s.n;
    let row = |id, label: String, unit| Row { id, label, unit };
    vec![
        row("load", format!("bulk load {} (1 commit)", group(n)), "ms"),
        row("single", format!("{} durable commits of 1", group(s.single_commits)), "ms"),
        row("batches", format!("{} durable commits of {}", s.batches, group(s.batch_len)), "ms"),
        row("reads", format!("{} random reads", group(n)), "ms"),
        row("scans", format!("{} range scans of 10", group(n / 10)), "ms"),
        row("remove", format!("remove {} (1 commit)", group(n / 2)), "ms"),
        row("single_after", format!("{} durable commits of 1, after the removal", group(s.single_commits)), "ms"),
        row("open", "reopen + 1 read, after the removal".to_string(), "ms"),
        row("open_small", "reopen + 1 read, after a 1-record commit".to_string(), "ms"),
        row("cold_reads", format!("{} reads, cache = live data / 10", group(n)), "ms"),
        row("rss_peak", "peak RSS (VmHWM), the harness's records included".to_string(), "MB"),
        row("rss_engine", "peak RSS above the harness (the engine's own)".to_string(), "MB"),
        row("size_load", "file size after load".to_string(), "MB"),
        row("size_end", "file size at end".to_string(), "MB"),
        row("compact", "compact (VACUUM for SQLite), at the end".to_string(), "ms"),
        row("size_compact", "file size after compact".to_string(), "MB"),
        row("mid", format!("{} durable commits of {}, at the end", group(s.mid_commits), group(s.mid_len)), "ms"),
    ]
}

/// `12345` as `12,345`.
fn group(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn fmt_value(v: f64) -> String {
    if v >= 1000.0 {
        group(v.round() as usize)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The median; of an even count, the mean of the two middle values.
fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => v.get(n / 2).copied(),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// Each cell's values, with the run (0-based) each came from, so ratios can pair runs.
type Results = BTreeMap<(&'static str, &'static str, String), Vec<(usize, f64)>>;
/// foldvault's counters per (dataset, engine, workload), from the first run.
type Notes = BTreeMap<(&'static str, &'static str, String), String>;

/// Runs every child; also returns how many failed (their cells are missing from the table).
fn run_children(a: &Args) -> (Results, Notes, usize) {
    let exe = std::env::current_exe().expect("current_exe");
    let mut results = Results::new();
    let mut notes = Notes::new();
    let total = a.reps * a.datasets.len() * a.engines.len();
    let mut done = 0;
    let mut failed = 0;
    for rep in 0..a.reps {
        for &d in &a.datasets {
            // The engines' order rotates by run, so that none always follows the same one.
            for &e in a.engines.iter().cycle().skip(rep % a.engines.len().max(1)).take(a.engines.len()) {
                done += 1;
                eprintln!("peers: [{done}/{total}] run {} of {}: {} on {}", rep + 1, a.reps, e.name(), d.name());
                let mut cmd = Command::new(&exe);
                cmd.args([
                    "--child",
                    e.name(),
                    d.name(),
                    "--n",
                    &a.n.to_string(),
                    "--seed",
                    &(a.seed + rep as u64).to_string(),
                ]);
                if a.quick {
                    cmd.arg("--quick");
                }
                cmd.env(common::engines::DEFAULT_BACKEND_VAR, common::engines::default_backends_text());
                let out = cmd.stderr(Stdio::inherit()).output().expect("spawn child");
                if !out.status.success() {
                    eprintln!("peers: {} on {} failed ({})", e.name(), d.name(), out.status);
                    failed += 1;
                }
                for line in String::from_utf8_lossy(&out.stdout).lines() {
                    let mut f = line.split_whitespace();
                    if let (Some("RESULT"), Some(id), Some(Ok(v))) =
                        (f.next(), f.next(), f.next().map(str::parse::<f64>))
                    {
                        results.entry((d.name(), e.name(), id.to_string())).or_default().push((rep, v));
                    }
                    if let Some((id, text)) = line.strip_prefix("NOTE ").and_then(|l| l.split_once(' ')) {
                        notes.entry((d.name(), e.name(), id.to_string())).or_insert_with(|| text.to_string());
                    }
                }
            }
        }
    }
    (results, notes, failed)
}

/// A cell's runs spread by more than half their median (the shared disk's fsync latency varies).
fn noisy(r: &Results, d: Dataset, e: Engine, id: &str) -> bool {
    let v = values(r, d, e, id);
    let (lo, hi) = v.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    median(&v).is_some_and(|m| m > 0.0 && (hi - lo) / m > 0.5)
}

fn values(r: &Results, d: Dataset, e: Engine, id: &str) -> Vec<f64> {
    r.get(&(d.name(), e.name(), id.to_string())).map_or(Vec::new(), |v| v.iter().map(|&(_, x)| x).collect())
}

fn cell(r: &Results, d: Dataset, e: Engine, id: &str) -> Option<f64> {
    median(&values(r, d, e, id))
}

/// `num / den` for one workload: the median, over the runs both engines completed, of the
/// ratio within each run. Each run takes every engine in turn within a few minutes, so a
/// ratio within a run compares cells measured close together; the host's speed drifts by tens
/// of per cent between minutes, which a ratio of medians taken from different runs would mix
/// in.
fn paired_ratio(r: &Results, d: Dataset, num: Engine, den: Engine, id: &str) -> Option<f64> {
    let (Some(x), Some(y)) =
        (r.get(&(d.name(), num.name(), id.to_string())), r.get(&(d.name(), den.name(), id.to_string())))
    else {
        return None;
    };
    let ratios: Vec<f64> = x
        .iter()
        .filter_map(|&(run, a)| y.iter().find(|&&(rr, _)| rr == run).map(|&(_, b)| (a, b)))
        .filter(|&(_, b)| b > 0.0)
        .map(|(a, b)| a / b)
        .collect();
    median(&ratios)
}

/// The encrypted foldvault column the ratios are taken from: the crate's default on this CPU
/// (`fv-default`, with ring and aws-lc both built: the fastest at each direction, timed at run
/// time), else the column of the default backend (ring, else aws-lc, else the first column).
fn main_engine(engines: &[Engine]) -> usize {
    let b = common::engines::default_backends();
    let chosen = match (b.seal, b.open) {
        (foldvault::CipherBackend::AwsLc, foldvault::CipherBackend::AwsLc) => "fv-awslc",
        (foldvault::CipherBackend::RustCrypto, foldvault::CipherBackend::RustCrypto) => "fv-aesgcm",
        _ => "fv-ring",
    };
    ["fv-default", chosen, "fv-ring", "fv-awslc"]
        .iter()
        .find_map(|n| engines.iter().position(|e| e.name() == *n))
        .unwrap_or(0)
}

/// The ratios shown: (column title, numerator, denominator). The default build's backend
/// (`main_engine`) against every other engine; any other encrypted
/// backend against plaintext only, to keep the table narrow.
fn ratio_columns(engines: &[Engine]) -> Vec<(String, Engine, Engine)> {
    let is_enc = |e: &Engine| matches!(e.name(), "fv-aesgcm" | "fv-default" | "fv-ring" | "fv-awslc");
    let enc: Vec<Engine> = engines.iter().copied().filter(is_enc).collect();
    let main = engines.get(main_engine(engines)).copied().filter(is_enc);
    let mut out = Vec::new();
    if let Some(main) = main {
        for other in engines.iter().copied().filter(|o| !is_enc(o)) {
            out.push((format!("{} / {}", main.name(), other.name()), main, other));
        }
    }
    for e in enc.into_iter().filter(|e| Some(*e) != main) {
        if let Some(plain) = engines.iter().copied().find(|o| o.name() == "fv-plain") {
            out.push((format!("{} / {}", e.name(), plain.name()), e, plain));
        }
    }
    out
}

fn render(a: &Args, sizes: &Sizes, r: &Results, counters: &Notes) -> String {
    let rows = rows(sizes);
    let mut s = String::new();
    let head: Vec<&str> = a.engines.iter().map(|e| e.name()).collect();
    let _ = writeln!(s, "| workload | unit | {} |", head.join(" | "));
    let _ = writeln!(s, "|---|---|{}", "---:|".repeat(head.len()));
    for &d in &a.datasets {
        let _ = writeln!(s, "| **{}** ({}) | | {}", d.name(), d.describe(), "|".repeat(head.len()));
        for row in &rows {
            let cells: Vec<String> = a
                .engines
                .iter()
                .map(|&e| {
                    let mark = if noisy(r, d, e, row.id) { "~" } else { "" };
                    // An engine without the operation says so (`NOTE compact none: ...`).
                    let none = counters
                        .get(&(d.name(), e.name(), row.id.trim_start_matches("size_").to_string()))
                        .is_some_and(|t| t.starts_with("none"));
                    let missing = if none { "none" } else { "err" };
                    cell(r, d, e, row.id).map_or(missing.into(), |v| format!("{mark}{}", fmt_value(v)))
                })
                .collect();
            let _ = writeln!(s, "| {} | {} | {} |", row.label, row.unit, cells.join(" | "));
        }
    }
    let ratios = ratio_columns(&a.engines);
    if !ratios.is_empty() {
        let _ = writeln!(
            s,
            "\nRatios (foldvault / other; above 1 means foldvault takes longer or more; each the median over \
             the runs of the ratio within one run, so it may differ from the ratio of the medians above):\n"
        );
        let titles: Vec<&str> = ratios.iter().map(|(t, _, _)| t.as_str()).collect();
        let _ = writeln!(s, "| workload | {} |", titles.join(" | "));
        let _ = writeln!(s, "|---|{}", "---:|".repeat(titles.len()));
        let mut worst: BTreeMap<&str, Vec<(f64, String)>> = BTreeMap::new();
        for &d in &a.datasets {
            let _ = writeln!(s, "| **{}** | {}", d.name(), "|".repeat(titles.len()));
            for row in &rows {
                let cells: Vec<String> = ratios
                    .iter()
                    .map(|(t, num, den)| match paired_ratio(r, d, *num, *den, row.id) {
                        Some(q) => {
                            worst.entry(t.as_str()).or_default().push((q, format!("{} {}", d.name(), row.label)));
                            format!("{q:.2}")
                        }
                        None => "-".into(),
                    })
                    .collect();
                let _ = writeln!(s, "| {} | {} |", row.label, cells.join(" | "));
            }
        }
        let _ = writeln!(s, "\nLargest ratios:\n");
        for (t, mut v) in worst {
            v.sort_by(|a, b| b.0.total_cmp(&a.0));
            let top: Vec<String> = v.iter().take(3).map(|(x, w)| format!("{w} {x:.2}x")).collect();
            let _ = writeln!(s, "- {t}: {}", top.join("; "));
        }
    }
    let mut notes = Vec::new();
    for &d in &a.datasets {
        let first = a.engines.first().copied();
        if let Some(e) = first {
            let h = cell(r, d, e, "harness_rss").unwrap_or(0.0);
            let c = cell(r, d, e, "cold_cache_mb").unwrap_or(0.0);
            notes.push(format!("{}: the harness holds {h:.1} MB before opening an engine (included in the first peak RSS row, not in the second); cold-read cache {c:.2} MB", d.name()));
        }
    }
    if a.reps > 1 {
        notes.push("`~` marks a cell whose runs spread by more than half their median".to_string());
    }
    let _ = writeln!(s, "\n{}", notes.iter().map(|n| format!("- {n}")).collect::<Vec<_>>().join("\n"));
    if !counters.is_empty() {
        let _ = writeln!(s, "\nfoldvault's own counters (`Db::metrics`, first run):\n");
        for ((d, e, id), text) in counters {
            let label = rows.iter().find(|r| r.id == id).map_or(id.as_str(), |r| r.label.as_str());
            let _ = writeln!(s, "- {e}, {d}, {label}: {text}");
        }
    }
    s
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let flags = field("flags");
    let has = |f: &str| {
        if flags.split_whitespace().any(|x| x == f) { "yes" } else { "no" }
    };
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    // The machine is shared: the load (1, 5, 15 min) tells how quiet it was.
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    // The family and model tell CPU generations apart under one model name ("AMD EPYC"), and
    // AVX-512 decides which AES-GCM path aws-lc takes: this VM has come up on both kinds.
    format!(
        "{nproc} CPUs ({}, family {} model {}), AES-NI: {}, VAES: {}, PCLMULQDQ: {}, AVX-512: {}; Linux {}; data in {}; \
         load average {}",
        field("model name"),
        field("cpu family"),
        field("model\t"),
        has("aes"),
        has("vaes"),
        has("pclmulqdq"),
        has("avx512f"),
        kernel.trim(),
        std::env::temp_dir().display(),
        load.join(" ")
    )
}

fn command(a: &Args) -> String {
    let mut feats = vec!["peers"];
    if cfg!(feature = "peers-sqlcipher") {
        feats.push("peers-sqlcipher");
    }
    if cfg!(feature = "aws-lc") {
        feats.push("aws-lc");
    }
    let mut c = format!("cargo bench --bench peers --features {}", feats.join(","));
    if !a.shown.is_empty() {
        let _ = write!(c, " -- {}", a.shown.join(" "));
    }
    c
}

fn now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The `--interleaved` table: each engine's total per row, then the default backend against
/// every other engine as the median over rounds of the ratio within a round (and the range).
fn render_interleaved(a: &Args, results: &[(Dataset, Vec<common::interleaved::Row>)]) -> String {
    let mut s = String::new();
    let head: Vec<&str> = a.engines.iter().map(|e| e.name()).collect();
    let main = main_engine(&a.engines);
    let others: Vec<usize> = (0..a.engines.len()).filter(|&i| i != main).collect();
    let titles: Vec<String> = others.iter().map(|&i| format!("{} / {}", head[main], head[i])).collect();
    let _ = writeln!(s, "| workload (ms) | {} | {} |", head.join(" | "), titles.join(" | "));
    let _ = writeln!(s, "|---|{}", "---:|".repeat(head.len() + titles.len()));
    for (d, rows) in results {
        let _ = writeln!(s, "| **{}** | {}", d.name(), "|".repeat(head.len() + titles.len()));
        for row in rows {
            let totals: Vec<String> = row.blocks.iter().map(|b| fmt_value(b.iter().sum())).collect();
            let ratios: Vec<String> = others
                .iter()
                .map(|&i| {
                    let q: Vec<f64> = row.blocks[main]
                        .iter()
                        .zip(&row.blocks[i])
                        .filter(|&(_, &y)| y > 0.0)
                        .map(|(&x, &y)| x / y)
                        .collect();
                    let (lo, hi) = q.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
                    median(&q).map_or("-".into(), |m| format!("{m:.2} ({lo:.2}-{hi:.2})"))
                })
                .collect();
            let _ = writeln!(s, "| {} | {} | {} |", row.label, totals.join(" | "), ratios.join(" | "));
        }
    }
    let _ = writeln!(
        s,
        "
- each row: {} rounds; a round runs one block of the row's commits (or reads) on every engine back to back \
         (in an order drawn for each round; a commit block ends with the engine's deferred work, `Kv::settle`, \
         and each commit row is given with the blocks' settles and with the commits alone, the settle timed apart), \
         each engine on its own directory, all open in one process; a ratio is the median over rounds of the \
         ratio within a round, with the lowest and highest in brackets",
        common::interleaved::ROUNDS
    );
    s
}

/// Replaces (or appends) this mode's section of BENCHMARKS.md, leaving the rest as it is.
fn write_report(a: &Args, table: &str) {
    let key = if a.interleaved {
        "interleaved"
    } else if a.quick {
        "quick"
    } else {
        "full"
    };
    let (begin, end) = (format!("<!-- peers:{key}:begin -->"), format!("<!-- peers:{key}:end -->"));
    let sqlite_note = if cfg!(feature = "peers-sqlcipher") {
        "\n- `sqlite` here is SQLCipher's build with no key (this build links SQLCipher in place of SQLite)."
    } else {
        ""
    };
    let mut section = String::new();
    let _ = writeln!(section, "{begin}");
    let _ = writeln!(section, "### Peers, {key} run (N = {}), {}\n", group(a.n), now());
    let _ = writeln!(section, "- command: `{}`", command(a));
    let _ = writeln!(section, "- machine: {}", machine());
    let b = common::engines::default_backends();
    let _ = writeln!(
        section,
        "- default AES-GCM backends here (timed at start-up): {:?} seals, {:?} opens",
        b.seal, b.open
    );
    if a.interleaved {
        let _ =
            writeln!(section, "- every engine open in one process, the commits and the reads in turns{sqlite_note}\n");
    } else {
        let _ = writeln!(
            section,
            "- each cell: median of {} run(s); every engine and dataset in its own child process{sqlite_note}\n",
            a.reps
        );
    }
    section.push_str(table);
    section.push_str(&end);
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/BENCHMARKS.md");
    let old = std::fs::read_to_string(path).unwrap_or_else(|_| "# Benchmarks\n".to_string());
    let new = match (old.find(&begin), old.find(&end)) {
        (Some(b), Some(e)) if b < e => format!("{}{section}{}", &old[..b], &old[e + end.len()..]),
        _ => format!("{}\n{section}\n", old.trim_end()),
    };
    match std::fs::write(path, new) {
        Ok(()) => eprintln!("peers: wrote {path}"),
        Err(e) => eprintln!("peers: could not write {path}: {e}"),
    }
}

fn main() {
    let a = parse_args();
    let sizes = Sizes::new(a.n, a.quick);
    if let Some((e, d)) = a.child {
        common::run_child(e, d, sizes, a.seed);
        return;
    }
    if a.interleaved {
        eprintln!("peers: N = {}, durable commits in turns; {}", a.n, machine());
        let results: Vec<_> = a
            .datasets
            .iter()
            .map(|&d| {
                eprintln!("peers: interleaved commits on {}", d.name());
                (d, common::interleaved::run(&a.engines, d, sizes, a.seed))
            })
            .collect();
        let table = render_interleaved(&a, &results);
        println!("\n{}\n\n{table}", command(&a));
        if a.write {
            write_report(&a, &table);
        }
        return;
    }
    eprintln!("peers: N = {}, {} run(s) per cell; {}", a.n, a.reps, machine());
    let (results, counters, failed) = run_children(&a);
    let table = render(&a, &sizes, &results, &counters);
    println!("\n{}\n\n{table}", command(&a));
    if failed > 0 {
        // A failed child (an engine's assertion, a crash) must not pass for a shorter table:
        // nothing is written, and the exit status says so (`.ci/run` runs `--quick`).
        eprintln!("peers: {failed} child run(s) failed; BENCHMARKS.md not written");
        std::process::exit(1);
    }
    if a.write {
        write_report(&a, &table);
    }
}
