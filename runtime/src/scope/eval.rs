//! Measuring the scope check on a labelled file (JSON Lines, see `e2e/scope/README.md`):
//! the numbers `konstruct scope-eval` prints and the CI floor test asserts.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{Judgement, ScopeCheck, Tuning};

/// One labelled message.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Case {
    pub business_function: String,
    pub message: String,
    /// Whether the business should take this message.
    pub in_scope: bool,
    /// The message's language ("en", "es", …); "unknown" when absent.
    #[serde(default = "unknown")]
    pub lang: String,
    #[serde(default)]
    pub examples: Vec<String>,
    /// The 1-based line of the file it came from.
    #[serde(skip)]
    pub line: usize,
}

fn unknown() -> String {
    "unknown".to_string()
}

/// A line of the file that is not a case.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

/// The cases of a JSON Lines file. Blank lines are skipped; anything else must be a case.
pub fn parse(text: &str) -> Result<Vec<Case>, ParseError> {
    let mut cases = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let mut case: Case = serde_json::from_str(raw).map_err(|e| {
            // serde's position is within this one line: keep the column, not its "line 1".
            let position = format!(" at line {} column {}", e.line(), e.column());
            let message = e.to_string();
            let message = message.strip_suffix(&position).unwrap_or(&message);
            ParseError {
                line,
                reason: format!("{message} (column {})", e.column()),
            }
        })?;
        if case.message.trim().is_empty() {
            return Err(ParseError {
                line,
                reason: "empty message".to_string(),
            });
        }
        case.line = line;
        cases.push(case);
    }
    Ok(cases)
}

/// Counts and rates for one group of cases.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    pub count: usize,
    pub in_scope: usize,
    pub off_topic: usize,
    /// In-scope messages not declined (judged in scope or unsure).
    pub in_scope_kept: usize,
    /// Off-topic messages declined.
    pub off_topic_declined: usize,
    pub declined: usize,
    pub unsure_in_scope: usize,
    pub unsure_off_topic: usize,
    /// `in_scope_kept / in_scope`: the share of customers' real questions let through.
    pub in_scope_recall: Option<f64>,
    /// `off_topic_declined / off_topic`: the share of off-topic requests caught.
    pub off_topic_recall: Option<f64>,
    /// `off_topic_declined / declined`: the share of declines that were right.
    pub decline_precision: Option<f64>,
}

impl Stats {
    fn add(&mut self, in_scope: bool, judgement: &Judgement) {
        use super::Verdict::*;
        self.count += 1;
        let declined = judgement.declines();
        self.declined += usize::from(declined);
        let unsure = judgement.verdict == Unsure;
        if in_scope {
            self.in_scope += 1;
            self.in_scope_kept += usize::from(!declined);
            self.unsure_in_scope += usize::from(unsure);
        } else {
            self.off_topic += 1;
            self.off_topic_declined += usize::from(declined);
            self.unsure_off_topic += usize::from(unsure);
        }
    }

    fn finish(&mut self) {
        let ratio = |a: usize, b: usize| (b > 0).then(|| a as f64 / b as f64);
        self.in_scope_recall = ratio(self.in_scope_kept, self.in_scope);
        self.off_topic_recall = ratio(self.off_topic_declined, self.off_topic);
        self.decline_precision = ratio(self.off_topic_declined, self.declined);
    }
}

/// How long judging took.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Timing {
    /// Loading the model and embedding the archetypes (0 when it was already loaded).
    pub setup_ms: f64,
    /// Mean time of one judgement, including the first message of each business (which
    /// embeds that business's side).
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub max_ms: f64,
    pub total_ms: f64,
    /// The build profile the numbers come from ("release" or "debug").
    pub build: &'static str,
}

/// One judged case, for `--cases` and for the list of wrong declines.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judged {
    pub line: usize,
    pub lang: String,
    pub in_scope: bool,
    pub message: String,
    pub judgement: Judgement,
}

/// The evaluation of one file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub model: &'static str,
    /// The margins the check ran with.
    pub tuning: Tuning,
    pub overall: Stats,
    /// Per `lang` value.
    pub by_language: BTreeMap<String, Stats>,
    /// Per non-English vs English (`lang` other than "en"/"unknown" counts as non-English).
    pub non_english: Stats,
    pub timing: Timing,
    /// In-scope messages that were declined: the errors that matter most.
    pub declined_in_scope: Vec<Judged>,
    #[serde(skip)]
    pub cases: Vec<Judged>,
}

/// Judges every case and adds up the numbers. `setup_ms` is reported as given.
pub fn evaluate(check: &ScopeCheck, cases: &[Case], setup_ms: f64) -> Report {
    let mut overall = Stats::default();
    let mut by_language: BTreeMap<String, Stats> = BTreeMap::new();
    let mut non_english = Stats::default();
    let mut times = Vec::with_capacity(cases.len());
    let mut judged = Vec::with_capacity(cases.len());
    for case in cases {
        let started = Instant::now();
        let judgement = check.judge(&case.business_function, &case.examples, &case.message);
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        overall.add(case.in_scope, &judgement);
        by_language
            .entry(case.lang.clone())
            .or_default()
            .add(case.in_scope, &judgement);
        if !matches!(case.lang.as_str(), "en" | "unknown") {
            non_english.add(case.in_scope, &judgement);
        }
        judged.push(Judged {
            line: case.line,
            lang: case.lang.clone(),
            in_scope: case.in_scope,
            message: case.message.clone(),
            judgement,
        });
    }
    overall.finish();
    non_english.finish();
    by_language.values_mut().for_each(Stats::finish);
    let declined_in_scope = judged
        .iter()
        .filter(|j| j.in_scope && j.judgement.declines())
        .cloned()
        .collect();
    Report {
        model: check.model_id(),
        tuning: check.tuning(),
        overall,
        by_language,
        non_english,
        timing: timing(times, setup_ms),
        declined_in_scope,
        cases: judged,
    }
}

fn timing(mut times: Vec<f64>, setup_ms: f64) -> Timing {
    times.sort_by(f64::total_cmp);
    let at = |q: f64| -> f64 {
        if times.is_empty() {
            return 0.0;
        }
        let i = ((times.len() - 1) as f64 * q).round() as usize;
        times[i.min(times.len() - 1)]
    };
    let total: f64 = times.iter().sum();
    Timing {
        setup_ms,
        mean_ms: if times.is_empty() {
            0.0
        } else {
            total / times.len() as f64
        },
        p50_ms: at(0.5),
        p95_ms: at(0.95),
        max_ms: times.last().copied().unwrap_or(0.0),
        total_ms: total,
        build: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
    }
}

/// The report as a plain-text table.
pub fn render(report: &Report) -> String {
    use std::fmt::Write;
    let pct =
        |v: Option<f64>| v.map_or_else(|| "   n/a".to_string(), |v| format!("{:5.1}%", v * 100.0));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<12} {:>5} {:>6} {:>6}  {:>9} {:>9} {:>9}  {:>6} {:>6}",
        "language",
        "count",
        "in",
        "off",
        "in-recall",
        "off-recall",
        "precision",
        "uns-in",
        "uns-off"
    );
    let mut row = |name: &str, s: &Stats| {
        let _ = writeln!(
            out,
            "{:<12} {:>5} {:>6} {:>6}  {:>9} {:>10} {:>9}  {:>6} {:>6}",
            name,
            s.count,
            s.in_scope,
            s.off_topic,
            pct(s.in_scope_recall),
            pct(s.off_topic_recall),
            pct(s.decline_precision),
            s.unsure_in_scope,
            s.unsure_off_topic
        );
    };
    for (lang, stats) in &report.by_language {
        row(lang, stats);
    }
    if report.non_english.count > 0 {
        row("non-english", &report.non_english);
    }
    row("overall", &report.overall);
    let t = &report.timing;
    let _ = writeln!(
        out,
        "\ntiming ({} build): setup {:.0} ms; per message mean {:.2} ms, p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms",
        t.build, t.setup_ms, t.mean_ms, t.p50_ms, t.p95_ms, t.max_ms
    );
    if !report.declined_in_scope.is_empty() {
        let _ = writeln!(out, "\nin-scope messages declined:");
        for j in &report.declined_in_scope {
            let _ = writeln!(
                out,
                "  line {} [{}] score {:.3} ({}): {}",
                j.line,
                j.lang,
                j.judgement.off_topic_score,
                j.judgement.archetype.unwrap_or("-"),
                j.message
            );
        }
    }
    out
}

/// One line per case with its numbers, tab-separated (for tuning by hand).
pub fn render_cases(report: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::from(
        "line\tlang\tin_scope\tverdict\tscore\tbusiness\tservice\toff_topic\tarchetype\tnon_english\tbasis\tmessage\n",
    );
    for j in &report.cases {
        let g = &j.judgement;
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{:?}\t{:.4}\t{:.4}\t{:.4}\t{:.4}\t{}\t{}\t{:?}\t{}",
            j.line,
            j.lang,
            j.in_scope,
            g.verdict,
            g.off_topic_score,
            g.business_similarity,
            g.service_similarity,
            g.off_topic_similarity,
            g.archetype.unwrap_or("-"),
            g.non_english,
            g.basis,
            j.message.replace(['\t', '\n'], " ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{Basis, Verdict};
    use super::*;

    #[test]
    fn parse_reads_cases_with_optional_fields_and_skips_blank_lines() {
        let text = concat!(
            r#"{"business_function":"Shoe shop","message":"where is my order","in_scope":true,"lang":"en","examples":["returns"]}"#,
            "\n\n",
            r#"{"business_function":"Shoe shop","message":"write a poem","in_scope":false}"#,
            "\n"
        );
        let cases = parse(text).unwrap();
        assert_eq!(cases.len(), 2);
        assert_eq!(cases[0].examples, vec!["returns"]);
        assert_eq!(cases[1].lang, "unknown");
        assert!(cases[1].examples.is_empty());
        assert_eq!((cases[0].line, cases[1].line), (1, 3));
    }

    #[test]
    fn parse_names_the_bad_line() {
        let text = concat!(
            r#"{"business_function":"Shop","message":"hi","in_scope":true}"#,
            "\n",
            r#"{"business_function":"Shop","message":"hi"}"#,
            "\n"
        );
        let err = parse(text).unwrap_err();
        assert_eq!(err.line, 2);
        assert!(
            err.to_string()
                .starts_with("line 2: missing field `in_scope`"),
            "{err}"
        );
        let err = parse("not json\n").unwrap_err();
        assert_eq!(err.line, 1);
        let err =
            parse(r#"{"business_function":"Shop","message":"  ","in_scope":true}"#).unwrap_err();
        assert_eq!(err.reason, "empty message");
    }

    fn judgement(verdict: Verdict) -> Judgement {
        Judgement {
            verdict,
            off_topic_score: 0.0,
            business_similarity: 0.0,
            service_similarity: 0.0,
            off_topic_similarity: 0.0,
            archetype: None,
            non_english: false,
            basis: Basis::Similarity,
        }
    }

    #[test]
    fn stats_count_unsure_as_kept_and_compute_the_three_rates() {
        let mut s = Stats::default();
        s.add(true, &judgement(Verdict::InScope));
        s.add(true, &judgement(Verdict::Unsure));
        s.add(true, &judgement(Verdict::OffTopic));
        s.add(true, &judgement(Verdict::InScope));
        s.add(false, &judgement(Verdict::OffTopic));
        s.add(false, &judgement(Verdict::Unsure));
        s.finish();
        assert_eq!(s.in_scope_recall, Some(0.75));
        assert_eq!(s.off_topic_recall, Some(0.5));
        assert_eq!(s.decline_precision, Some(0.5));
        assert_eq!((s.unsure_in_scope, s.unsure_off_topic), (1, 1));
    }

    #[test]
    fn rates_of_an_empty_group_are_absent() {
        let mut s = Stats::default();
        s.add(true, &judgement(Verdict::InScope));
        s.finish();
        assert_eq!(s.off_topic_recall, None);
        assert_eq!(s.decline_precision, None);
    }

    #[test]
    fn timing_percentiles_come_from_the_sorted_times() {
        let t = timing(vec![5.0, 1.0, 3.0, 2.0, 4.0], 7.0);
        assert_eq!(
            (t.p50_ms, t.max_ms, t.mean_ms, t.setup_ms),
            (3.0, 5.0, 3.0, 7.0)
        );
    }

    /// The product floor, on the held-out file (never used for tuning): the check must let
    /// through at least 98 % of in-scope messages and catch at least half of the off-topic ones
    /// (a check that declines nothing is useless).
    #[test]
    fn the_held_out_set_meets_the_floor() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../e2e/scope/held_out.jsonl");
        let cases = parse(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert!(
            cases.len() >= 100,
            "the held-out file has {} cases",
            cases.len()
        );
        let report = evaluate(&ScopeCheck::shared().unwrap(), &cases, 0.0);
        let overall = &report.overall;
        let in_scope_recall = overall.in_scope_recall.unwrap();
        let off_topic_recall = overall.off_topic_recall.unwrap();
        assert!(
            in_scope_recall >= 0.98,
            "in-scope recall {in_scope_recall:.3}\n{}",
            render(&report)
        );
        assert!(
            off_topic_recall >= 0.5,
            "off-topic recall {off_topic_recall:.3}\n{}",
            render(&report)
        );
    }
}
