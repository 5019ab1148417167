//! What the health rules say: a [`Finding`] (rule, [`Severity`], summary, evidence, what to do)
//! and the overall [`Verdict`]. Pure data; `check --json` and the agent's `/findings` serialize it.

use serde::Serialize;

/// How bad a finding is. The order is the severity (`Critical` is the largest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn label(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// One finding: what, how bad, the evidence, and what to do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// The rule's id (`deaf-server`, `backplane-down`, ...): stable, for scripts.
    pub rule: &'static str,
    pub severity: Severity,
    /// The hub concerned, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub: Option<String>,
    /// The node or server concerned, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// One line saying what is wrong (or, for info, what is so).
    pub summary: String,
    /// The numbers and channels behind it.
    pub evidence: Vec<String>,
    /// What to do about it (empty for info).
    pub action: String,
}

impl Finding {
    /// A finding with no hub, subject, evidence or action yet (builders below).
    pub fn new(rule: &'static str, severity: Severity, summary: String) -> Self {
        Finding {
            rule,
            severity,
            hub: None,
            subject: None,
            summary,
            evidence: Vec::new(),
            action: String::new(),
        }
    }
    pub fn hub(mut self, hub: &str) -> Self {
        self.hub = Some(hub.to_string());
        self
    }
    pub fn subject(mut self, subject: &str) -> Self {
        self.subject = Some(subject.to_string());
        self
    }
    pub fn evidence(mut self, line: String) -> Self {
        self.evidence.push(line);
        self
    }
    pub fn action(mut self, text: &str) -> Self {
        self.action = text.to_string();
        self
    }

    /// One line: `WARNING deaf-server [hub] summary (evidence; evidence) → action`.
    pub fn line(&self) -> String {
        let mut out = format!("{:<8} {}", self.severity.label().to_uppercase(), self.rule);
        if let Some(hub) = &self.hub {
            out.push_str(&format!(" [{hub}]"));
        }
        out.push_str(": ");
        out.push_str(&self.summary);
        if !self.evidence.is_empty() {
            out.push_str(&format!(" ({})", self.evidence.join("; ")));
        }
        if !self.action.is_empty() {
            out.push_str(&format!(" → {}", self.action));
        }
        out
    }
}

/// The overall verdict: the worst severity found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Healthy,
    Degraded,
    Broken,
}

impl Verdict {
    pub fn of(findings: &[Finding]) -> Verdict {
        match findings.iter().map(|f| f.severity).max() {
            Some(Severity::Critical) => Verdict::Broken,
            Some(Severity::Warning) => Verdict::Degraded,
            _ => Verdict::Healthy,
        }
    }
    /// The monitoring-plugin code of the verdict (0 OK, 1 WARNING, 2 CRITICAL); `check` exits
    /// by `check::exit_code`, which keeps warnings at 0 unless `--fail-on warning`.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Healthy => 0,
            Verdict::Degraded => 1,
            Verdict::Broken => 2,
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Healthy => "healthy",
            Verdict::Degraded => "degraded",
            Verdict::Broken => "broken",
        }
    }
}
