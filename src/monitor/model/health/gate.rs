//! How the dashboard shows and paces health: one [`Evaluation`] (findings, verdict, what could
//! not be checked and why, how old its figures were), the [`HealthState`] kept between
//! evaluations, and the [`RefreshGate`] that keeps evaluations (and the Redis queries behind
//! them) at most one per [`MIN_REFRESH`].

use super::*;

/// Health is recomputed at most this often (and so are the Redis queries behind it), so that
/// watching never loads a production Redis.
pub const MIN_REFRESH: std::time::Duration = std::time::Duration::from_secs(2);
/// One evaluation as the dashboard shows it: the findings (worst first), the verdict, when, what
/// it could not check and why, and how old its Redis figures were.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub at_ms: u64,
    pub findings: Vec<Finding>,
    pub verdict: Verdict,
    /// Checks that could not run, in words ("skipped: CLIENT LIST (ACL: grant +client|list)").
    pub skipped: Vec<String>,
    /// When the NUMSUB/GET figures used were taken (`None`: none were).
    pub redis_at_ms: Option<u64>,
    /// Why the latest health round failed, when it did (Redis down, a refused command).
    pub redis_problem: Option<String>,
    /// Findings an operator acknowledged (their evidence unchanged since): listed apart, and
    /// left out of the verdict and the counts. See [`Acks`].
    pub acknowledged: Vec<(Finding, Ack)>,
}

impl Evaluation {
    /// Evaluates `inputs`; `round` is the health round they were built with (for what it skipped).
    pub fn of(inputs: &HealthInputs, round: Option<&crate::monitor::HealthRound>) -> Evaluation {
        let findings = evaluate(inputs);
        let mut skipped = Vec::new();
        let numsub_known = inputs.hubs.iter().any(|h| h.numsub_all.is_some());
        match round {
            None => skipped.push(
                "skipped: NUMSUB of :all and :internal:groups (no census round yet): deaf servers are not looked for"
                    .to_string(),
            ),
            Some(r) => {
                if let Some(problem) = &r.problem {
                    skipped.push(skipped_words("NUMSUB of :all and :internal:groups", problem));
                } else if !numsub_known && !inputs.hubs.is_empty() {
                    skipped.push(format!(
                        "skipped: NUMSUB of :all and :internal:groups (the last round is {} s old)",
                        inputs.now_ms.saturating_sub(r.at_ms) / 1000
                    ));
                }
                for (key, value) in &r.sr2_counters {
                    if let Err(e) = value {
                        skipped.push(skipped_words(&format!("GET {key}"), e));
                    }
                }
            }
        }
        match &inputs.client_list {
            None => skipped.push(
                "skipped: CLIENT LIST (no Redis view round yet, or an in-memory bus): output buffers not checked"
                    .to_string(),
            ),
            Some(Err(why)) => skipped.push(why.clone()),
            Some(Ok(_)) => {}
        }
        if inputs.redis_error.is_some() {
            skipped.push("skipped: every Redis check (Redis not reached)".to_string());
        }
        Evaluation {
            at_ms: inputs.now_ms,
            verdict: Verdict::of(&findings),
            findings,
            skipped,
            redis_at_ms: round.filter(|r| r.problem.is_none()).map(|r| r.at_ms),
            redis_problem: round.and_then(|r| r.problem.clone()),
            acknowledged: Vec::new(),
        }
    }

    /// Moves the findings `acks` holds to [`acknowledged`](Self::acknowledged) (and any there
    /// whose ack was withdrawn back), and sets the verdict from the rest.
    pub fn apply_acks(&mut self, acks: &Acks) {
        let mut all: Vec<Finding> = std::mem::take(&mut self.findings);
        all.extend(self.acknowledged.drain(..).map(|(f, _)| f));
        all.sort_by_key(|f| std::cmp::Reverse(f.severity));
        for f in all {
            match acks.get(&AckKey::of(&f)) {
                Some(ack) => self.acknowledged.push((f, ack.clone())),
                None => self.findings.push(f),
            }
        }
        self.verdict = Verdict::of(&self.findings);
    }

    /// Why the evaluation shown is not current, in words; empty when it is.
    pub fn stale_reasons(&self, now_ms: u64) -> Vec<String> {
        let mut out = Vec::new();
        let age = now_ms.saturating_sub(self.at_ms);
        if age > EVALUATION_STALE_MS {
            out.push(format!("evaluated {} s ago", age / 1000));
        }
        match (self.redis_at_ms, &self.redis_problem) {
            (_, Some(problem)) => out.push(format!("the last Redis round failed: {problem}")),
            (Some(at), None) if self.at_ms.saturating_sub(at) > ROUND_FRESH_MS => out.push(format!(
                "its Redis figures were {} s old",
                self.at_ms.saturating_sub(at) / 1000
            )),
            (None, None) => out.push("no Redis figures (NUMSUB) yet".to_string()),
            _ => {}
        }
        out
    }

    /// Findings about a node known by any of `names` (its name, hub URL, server name), worst first.
    pub fn concerning<'a>(&'a self, names: &[&str]) -> Vec<&'a Finding> {
        self.findings
            .iter()
            .filter(|f| f.subject.as_deref().is_some_and(|s| names.contains(&s)))
            .collect()
    }

    /// The worst severity among findings about a node, when any is worse than info.
    pub fn worst_for(&self, names: &[&str]) -> Option<Severity> {
        self.concerning(names)
            .iter()
            .map(|f| f.severity)
            .filter(|s| *s > Severity::Info)
            .max()
    }

    /// Findings that concern no watched node (Redis itself, a deaf server nobody watches, a
    /// foreign prefix), worse than info: the topology marks the Redis box with them.
    pub fn backplane_findings<'a>(&'a self, node_names: &[&str]) -> Vec<&'a Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity > Severity::Info)
            .filter(|f| f.subject.as_deref().is_none_or(|s| !node_names.contains(&s)))
            .collect()
    }

    /// (critical, warning) counts.
    pub fn counts(&self) -> (usize, usize) {
        let n = |s: Severity| self.findings.iter().filter(|f| f.severity == s).count();
        (n(Severity::Critical), n(Severity::Warning))
    }
}

/// The dashboard's health: the refresh gate, the latest evaluation and the acknowledgements.
#[derive(Debug, Clone, Default)]
pub struct HealthState {
    pub gate: RefreshGate,
    pub latest: Option<Evaluation>,
    pub acks: Acks,
}

impl HealthState {
    /// Acknowledges a finding of the latest evaluation (it moves apart at once).
    pub fn acknowledge(&mut self, finding: &Finding, note: &str, now_ms: u64) {
        self.acks.acknowledge(finding, note, now_ms);
        if let Some(e) = self.latest.as_mut() {
            e.apply_acks(&self.acks);
        }
    }

    /// Withdraws an acknowledgement (the finding counts again at once).
    pub fn withdraw(&mut self, finding: &Finding) {
        if self.acks.withdraw(finding)
            && let Some(e) = self.latest.as_mut()
        {
            e.apply_acks(&self.acks);
        }
    }
}

/// Lets a refresh through at most once per interval (time passed in, unix ms).
#[derive(Debug, Clone)]
pub struct RefreshGate {
    interval_ms: u64,
    last_ms: Option<u64>,
}

impl Default for RefreshGate {
    fn default() -> Self {
        Self::new(MIN_REFRESH)
    }
}

impl RefreshGate {
    pub fn new(interval: std::time::Duration) -> Self {
        RefreshGate {
            interval_ms: interval.as_millis() as u64,
            last_ms: None,
        }
    }

    /// Whether to refresh now; if so, the interval restarts from `now_ms`. A clock that went back
    /// lets the refresh through rather than freezing it.
    pub fn ready(&mut self, now_ms: u64) -> bool {
        let due = match self.last_ms {
            None => true,
            Some(last) => now_ms < last || now_ms - last >= self.interval_ms,
        };
        if due {
            self.last_ms = Some(now_ms);
        }
        due
    }
}
