//! The Health view: the findings of `monitor::model::health::evaluate`, worst first and grouped by
//! severity, each with its evidence and what to do; the overall verdict; when it was evaluated
//! (an old evaluation, or one built on old Redis figures, says STALE and why); and which checks
//! were skipped and why (a missing ACL permission is named). Also the badge drawn on the Nodes
//! view's rows and the topology, which opens this view.
//!
//! An operator acknowledges a finding with a one-line note ("Acknowledge…"): it is listed apart
//! under "Acknowledged", with the note and the time, and no longer sets the verdict, until its
//! evidence changes (the model keys the ack on it).
//!
//! Draws only: the evaluation is computed by `Model::refresh_health` (at most every 2 s, from
//! the model and the runtime's rate-limited Redis figures), never here.

use egui::{Color32, RichText, Ui};

use super::{Action, widgets};
use crate::monitor::model::Model;
use crate::monitor::model::health::{
    ACK_NOTE_MAX_CHARS, Ack, AckKey, Evaluation, Finding, MIN_REFRESH, Severity, Verdict,
};
use crate::monitor::model::nodes::NodeRow;

/// The Health view's own state: which node's findings it was opened for (from a badge).
#[derive(Debug, Default)]
pub struct HealthUi {
    /// Show only the findings about this subject (a node name or server name), when set.
    pub focus: Option<String>,
    /// The finding whose "Acknowledge…" field is open, and the note typed so far.
    pub ack_draft: Option<(AckKey, String)>,
}

/// The names a finding may give a node by: its name, hub URL and server name.
pub fn node_names(row: &NodeRow) -> Vec<&str> {
    let mut names = vec![row.name.as_str(), row.target.hub_url.as_str()];
    if let Some(s) = &row.stats
        && !s.server_name.is_empty()
    {
        names.push(s.server_name.as_str());
    }
    names
}

/// The text with the arrows the rules write (for terminals) as ASCII: egui's default fonts have
/// no glyph for them.
pub fn plain(text: &str) -> String {
    text.replace('→', "->")
}

/// The colour of a severity.
pub fn color(severity: Severity) -> Color32 {
    match severity {
        Severity::Critical => widgets::BAD,
        Severity::Warning => widgets::WARN,
        Severity::Info => Color32::from_rgb(110, 160, 230),
    }
}

fn verdict_color(verdict: Verdict) -> Color32 {
    match verdict {
        Verdict::Healthy => widgets::OK,
        Verdict::Degraded => widgets::WARN,
        Verdict::Broken => widgets::BAD,
    }
}

/// A small coloured badge for the worst finding about a node (`names`: its name, hub URL, server
/// name); hovering lists the findings, clicking opens the Health view on them. Draws nothing when
/// there is no finding worse than info.
pub fn badge(ui: &mut Ui, evaluation: Option<&Evaluation>, names: &[&str], actions: &mut Vec<Action>) {
    let Some(evaluation) = evaluation else { return };
    let Some(worst) = evaluation.worst_for(names) else {
        return;
    };
    let findings = evaluation.concerning(names);
    let text = RichText::new(format!("[{}]", worst.label()))
        .color(color(worst))
        .strong();
    let response = ui.add(egui::Button::new(text).frame(false)).on_hover_ui(|ui| {
        for f in &findings {
            ui.label(RichText::new(plain(&f.line())).color(color(f.severity)));
        }
        ui.label(RichText::new("click: open the Health view").weak());
    });
    if response.clicked() {
        actions.push(Action::ShowHealth(names.first().map(|s| s.to_string())));
    }
}

/// The label of the Health tab: "Health" and the count of critical and warning findings.
pub fn tab_label(evaluation: Option<&Evaluation>) -> RichText {
    match evaluation.map(Evaluation::counts) {
        Some((critical, warning)) if critical + warning > 0 => {
            let worst = if critical > 0 { widgets::BAD } else { widgets::WARN };
            RichText::new(format!("Health ({})", critical + warning)).color(worst)
        }
        _ => RichText::new("Health"),
    }
}

pub fn show(ui: &mut Ui, model: &Model, health_ui: &mut HealthUi, now: u64, actions: &mut Vec<Action>) {
    let Some(evaluation) = model.health.latest.as_ref() else {
        ui.label(RichText::new("No evaluation yet: connect Redis or add a node.").weak());
        return;
    };
    let stale = evaluation.stale_reasons(now);
    ui.horizontal(|ui| {
        let verdict = evaluation.verdict;
        ui.label(
            RichText::new(verdict.label().to_uppercase())
                .size(26.0)
                .strong()
                .color(if stale.is_empty() {
                    verdict_color(verdict)
                } else {
                    widgets::IDLE
                }),
        );
        ui.separator();
        let (critical, warning) = evaluation.counts();
        let info = evaluation.findings.len() - critical - warning;
        ui.vertical(|ui| {
            ui.label(format!("{critical} critical · {warning} warning · {info} info"));
            let age = now.saturating_sub(evaluation.at_ms) / 1000;
            let redis = match evaluation.redis_at_ms {
                Some(at) => format!(" · Redis figures of {}", widgets::clock(at)),
                None => String::new(),
            };
            ui.label(
                RichText::new(format!(
                    "evaluated {} ({age} s ago){redis}; at most every {} s",
                    widgets::clock(evaluation.at_ms),
                    MIN_REFRESH.as_secs()
                ))
                .weak(),
            )
            .on_hover_text(
                "The rules run on the UI's model at most every 2 s. Their Redis figures are asked \
                 with the census's rounds (PUBSUB NUMSUB of :all and :internal:groups, GET of \
                 SignalR 2 counters: one round every 2 s at most, O(1) each); CLIENT LIST and the \
                 output-buffer limit come from the Redis view's poller (every 5 s or slower).",
            );
        });
    });
    if !stale.is_empty() {
        ui.label(
            RichText::new(format!("STALE: {}", stale.join("; ")))
                .color(widgets::WARN)
                .strong(),
        );
    }
    if !evaluation.skipped.is_empty() {
        ui.add_space(4.0);
        egui::CollapsingHeader::new(format!("Skipped checks ({})", evaluation.skipped.len()))
            .default_open(true)
            .show(ui, |ui| {
                for line in &evaluation.skipped {
                    ui.label(RichText::new(line).color(widgets::IDLE));
                }
            });
    }
    if let Some(focus) = health_ui.focus.clone() {
        ui.horizontal(|ui| {
            ui.label(RichText::new(format!("Findings about {focus}")).strong());
            if ui.button("Show all").clicked() {
                health_ui.focus = None;
            }
        });
    }
    ui.separator();
    // A focused node is known by its name, hub URL and server name.
    let focus = health_ui.focus.clone();
    let focus_names: Option<Vec<&str>> = focus.as_deref().map(|focus| {
        model
            .nodes
            .rows()
            .iter()
            .find(|r| r.name == focus || r.target.hub_url == focus)
            .map(node_names)
            .unwrap_or_else(|| vec![focus])
    });
    let shown: Vec<&Finding> = evaluation
        .findings
        .iter()
        .filter(|f| {
            focus_names
                .as_ref()
                .is_none_or(|names| f.subject.as_deref().is_some_and(|s| names.contains(&s)))
        })
        .collect();
    egui::ScrollArea::vertical().show(ui, |ui| {
        if shown.is_empty() {
            ui.label(RichText::new("No findings.").weak());
        }
        for severity in [Severity::Critical, Severity::Warning, Severity::Info] {
            let group: Vec<&&Finding> = shown.iter().filter(|f| f.severity == severity).collect();
            if group.is_empty() {
                continue;
            }
            egui::CollapsingHeader::new(
                RichText::new(format!("{} ({})", severity.label().to_uppercase(), group.len()))
                    .color(color(severity))
                    .strong(),
            )
            .id_salt(severity.label())
            .default_open(true)
            .show(ui, |ui| {
                for (i, f) in group.into_iter().enumerate() {
                    finding(ui, f, i, !stale.is_empty());
                    ack_controls(ui, f, health_ui, actions);
                    ui.add_space(6.0);
                }
            });
        }
        let acked: Vec<&(Finding, Ack)> = evaluation
            .acknowledged
            .iter()
            .filter(|(f, _)| {
                focus_names
                    .as_ref()
                    .is_none_or(|names| f.subject.as_deref().is_some_and(|s| names.contains(&s)))
            })
            .collect();
        if !acked.is_empty() {
            egui::CollapsingHeader::new(
                RichText::new(format!("ACKNOWLEDGED ({}): not in the verdict", acked.len()))
                    .color(widgets::IDLE)
                    .strong(),
            )
            .id_salt("acknowledged")
            .default_open(true)
            .show(ui, |ui| {
                for (i, (f, ack)) in acked.into_iter().enumerate() {
                    finding(ui, f, 1000 + i, true);
                    ui.horizontal_wrapped(|ui| {
                        let note = if ack.note.is_empty() {
                            "(no note)".to_string()
                        } else {
                            ack.note.clone()
                        };
                        ui.label(
                            RichText::new(format!("acknowledged {}: {note}", widgets::clock(ack.at_ms)))
                                .italics(),
                        );
                        if ui
                            .small_button("Withdraw")
                            .on_hover_text("Count this finding again")
                            .clicked()
                        {
                            actions.push(Action::Unacknowledge(Box::new(f.clone())));
                        }
                    });
                    ui.add_space(6.0);
                }
            });
        }
    });
}

/// The "Acknowledge…" button under a finding, or its open one-line note field.
fn ack_controls(ui: &mut Ui, f: &Finding, health_ui: &mut HealthUi, actions: &mut Vec<Action>) {
    let key = AckKey::of(f);
    let open = health_ui.ack_draft.as_ref().is_some_and(|(k, _)| *k == key);
    if !open {
        if ui
            .small_button("Acknowledge…")
            .on_hover_text(
                "Set this finding aside with a note: it leaves the verdict until its evidence changes",
            )
            .clicked()
        {
            health_ui.ack_draft = Some((key, String::new()));
        }
        return;
    }
    let mut done = None;
    ui.horizontal(|ui| {
        if let Some((_, note)) = health_ui.ack_draft.as_mut() {
            let label = ui.label("Note:");
            let field = ui
                .add(
                    egui::TextEdit::singleline(note)
                        .hint_text("note (who, why)")
                        .char_limit(ACK_NOTE_MAX_CHARS)
                        .desired_width(320.0),
                )
                .labelled_by(label.id);
            let entered = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            if ui.small_button("OK").clicked() || entered {
                done = Some(Some(note.clone()));
            }
            if ui.small_button("Cancel").clicked() {
                done = Some(None);
            }
        }
    });
    match done {
        Some(Some(note)) => {
            actions.push(Action::Acknowledge {
                finding: Box::new(f.clone()),
                note,
            });
            health_ui.ack_draft = None;
        }
        Some(None) => health_ui.ack_draft = None,
        None => {}
    }
}

fn finding(ui: &mut Ui, f: &Finding, index: usize, stale: bool) {
    let tint = |c: Color32| if stale { widgets::IDLE } else { c };
    ui.horizontal_wrapped(|ui| {
        ui.label(
            RichText::new(f.severity.label().to_uppercase())
                .color(tint(color(f.severity)))
                .strong(),
        );
        ui.label(RichText::new(f.rule).monospace());
        if let Some(hub) = &f.hub {
            ui.label(RichText::new(format!("[{hub}]")).weak());
        }
        if let Some(subject) = &f.subject {
            ui.label(RichText::new(subject).strong());
        }
    });
    ui.indent((f.severity.label(), index), |ui| {
        ui.label(plain(&f.summary));
        for line in &f.evidence {
            ui.label(RichText::new(format!("- {}", plain(line))).monospace());
        }
        if !f.action.is_empty() {
            ui.label(RichText::new(format!("what to do: {}", plain(&f.action))).italics());
        }
    });
}
