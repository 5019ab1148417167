//! The Directory panel: search a connection id, a user or a group (or all three at once) and see
//! which node holds it, its groups, and whether its Redis channel is subscribed and by how many.
//! A connection id, user or group in the answer is a button that fills the Send form's target.
//! With nothing typed, a search lists every connection (or user, or group: the kind picked),
//! [`DEFAULT_DIRECTORY_PAGE_SIZE`] rows a page, with the total.
//!
//! egui only: the search is an [`Action`]; the runtime answers it off the UI thread and the
//! answer lands in `model.directory` (answers to older searches are ignored there).

use egui::{RichText, Ui};

use super::{Action, widgets};
use crate::config::DEFAULT_DIRECTORY_PAGE_SIZE;
use crate::monitor::SendTarget;
use crate::monitor::model::Model;
use crate::monitor::model::directory::{DirectoryAnswer, DirectoryKind, ListRow, listing, summarize};

/// The panel's state between frames.
#[derive(Debug)]
pub struct DirectoryUi {
    pub text: String,
    pub kind: DirectoryKind,
    /// The listing's page shown (0 = the first), when nothing was typed.
    pub page: usize,
    /// Rows per page of a listing.
    pub page_size: usize,
    /// The kind the page number belongs to: another kind starts at the first page.
    paged_kind: DirectoryKind,
}

impl Default for DirectoryUi {
    fn default() -> Self {
        Self {
            text: String::new(),
            kind: DirectoryKind::default(),
            page: 0,
            page_size: DEFAULT_DIRECTORY_PAGE_SIZE,
            paged_kind: DirectoryKind::default(),
        }
    }
}

pub fn show(ui: &mut Ui, model: &Model, state: &mut DirectoryUi, actions: &mut Vec<Action>) {
    ui.heading("Directory");
    ui.label(
        RichText::new(
            "Where a connection id, a user or a group lives: Switchboard nodes list their connections; \
             Redis tells how many servers subscribe to its channel (every node, ASP.NET Core too).",
        )
        .weak(),
    );
    ui.horizontal(|ui| {
        let label = ui.label("Search");
        let edit = ui
            .add(
                egui::TextEdit::singleline(&mut state.text)
                    .hint_text("connection id, user or group; empty lists all")
                    .desired_width(280.0),
            )
            .labelled_by(label.id);
        for kind in DirectoryKind::ALL {
            ui.selectable_value(&mut state.kind, kind, kind.label());
        }
        let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        let clicked = ui.button(RichText::new("Search directory").strong()).clicked();
        if clicked || enter {
            state.page = 0;
            actions.push(Action::DirectorySearch {
                text: state.text.trim().to_string(),
                kind: state.kind,
            });
        }
    });
    let nodes = model.nodes.rows().len();
    if let Some(search) = model.directory.pending() {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label(format!(
                "asking {nodes} node{} and Redis about {:?}…",
                if nodes == 1 { "" } else { "s" },
                search.text
            ));
        });
    }
    let Some(answer) = model.directory.answer() else {
        if model.directory.pending().is_none() {
            ui.label(
                RichText::new(
                    "Type a connection id, a user or a group, then Search directory. With nothing typed, \
                     it lists every connection, user or group (the kind picked).",
                )
                .weak(),
            );
        }
        return;
    };
    if answer.search.is_listing() {
        list(ui, model, answer, state, actions);
        return;
    }
    let name = |url: &str| model.nodes.name_or_url(url);
    ui.add_space(6.0);
    let summary = summarize(answer, &name);
    let color = if answer.found() > 0 {
        widgets::OK
    } else {
        widgets::WARN
    };
    ui.add(egui::Label::new(RichText::new(&summary.headline).color(color).strong()).wrap());
    if answer.channels.is_empty() && answer.found() > 0 {
        ui.add(egui::Label::new(&summary.redis).wrap());
    }
    for note in &summary.notes {
        ui.add(egui::Label::new(RichText::new(note).color(widgets::WARN)).wrap());
    }
    ui.label(
        RichText::new(format!(
            "answered at {} for {:?} ({})",
            widgets::clock(answer.at_ms),
            answer.search.text,
            answer.search.kind.label()
        ))
        .weak(),
    );

    if !answer.channels.is_empty() {
        ui.add_space(6.0);
        ui.label(RichText::new("Redis channels").strong());
        egui::Grid::new("directory_channels")
            .striped(true)
            .spacing([16.0, 4.0])
            .show(ui, |ui| {
                ui.label(RichText::new("channel").strong());
                ui.label(RichText::new("subscribers (PUBSUB NUMSUB)").strong());
                ui.end_row();
                for (channel, n) in &answer.channels {
                    ui.label(RichText::new(channel).monospace());
                    match n {
                        // Next to a hit of another kind, a channel nobody is on is no news.
                        Ok(0) if answer.found() > 0 => ui.label(RichText::new("0").weak()),
                        Ok(0) => ui.label(RichText::new("0: nobody subscribed").color(widgets::WARN)),
                        Ok(n) => ui.label(RichText::new(n.to_string()).color(widgets::OK)),
                        Err(e) => ui.label(RichText::new(format!("not answered: {e}")).color(widgets::BAD)),
                    };
                    ui.end_row();
                }
            });
    }

    egui::ScrollArea::vertical().auto_shrink(false).show(ui, |ui| {
        for node in &answer.nodes {
            let hits = match &node.hits {
                Ok(hits) if !hits.is_empty() => hits,
                _ => continue,
            };
            ui.add_space(8.0);
            ui.horizontal(|ui| {
                ui.label(RichText::new(name(&node.hub_url)).strong());
                ui.label(RichText::new(&node.hub_url).weak());
                if node.truncated {
                    ui.label(RichText::new("(more not read)").color(widgets::WARN));
                }
            });
            egui::Grid::new(("directory_hits", &node.hub_url))
                .striped(true)
                .spacing([14.0, 4.0])
                .show(ui, |ui| {
                    for h in [
                        "connection id",
                        "user",
                        "groups",
                        "protocol",
                        "connected",
                        "matched as",
                    ] {
                        ui.label(RichText::new(h).strong());
                    }
                    ui.end_row();
                    for hit in hits {
                        let e = &hit.entry;
                        connection_and_user(ui, &e.id, e.user.as_ref(), actions);
                        ui.horizontal_wrapped(|ui| {
                            ui.set_max_width(320.0);
                            if e.groups.is_empty() {
                                ui.label(RichText::new("none").weak());
                            }
                            for g in &e.groups {
                                if ui
                                    .small_button(g)
                                    .on_hover_text("Send a test message to this group")
                                    .clicked()
                                {
                                    actions.push(Action::PickTarget(SendTarget::Group(g.clone())));
                                }
                            }
                            let listed = e.groups.len() as u64;
                            if e.groups_total > listed {
                                ui.label(RichText::new(format!("+{} more", e.groups_total - listed)).weak());
                            }
                        });
                        ui.label(&e.protocol);
                        ui.label(widgets::clock(e.connected_at_ms));
                        ui.label(hit.matched.label());
                        ui.end_row();
                    }
                });
        }
    });
}

/// A search with nothing typed: every connection, user or group the nodes listed, a page at a
/// time, the kind picked now deciding which (the answer holds all three).
fn list(
    ui: &mut Ui,
    model: &Model,
    answer: &DirectoryAnswer,
    state: &mut DirectoryUi,
    actions: &mut Vec<Action>,
) {
    let name = |url: &str| model.nodes.name_or_url(url);
    if state.paged_kind != state.kind {
        state.paged_kind = state.kind;
        state.page = 0;
    }
    let listed = listing(answer, state.kind);
    let (one, many) = match state.kind {
        DirectoryKind::Any | DirectoryKind::Connection => ("connection", "connections"),
        DirectoryKind::User => ("user", "users"),
        DirectoryKind::Group => ("group", "groups"),
    };
    let total = listed.rows.len();
    let nodes = answer.nodes.iter().filter(|n| n.hits.is_ok()).count();
    ui.add_space(6.0);
    ui.label(
        RichText::new(format!(
            "{}{total} {} on {nodes} node{}",
            if listed.complete { "" } else { "at least " },
            if total == 1 { one } else { many },
            if nodes == 1 { "" } else { "s" },
        ))
        .color(if total > 0 { widgets::OK } else { widgets::WARN })
        .strong(),
    );
    if !listed.complete {
        ui.label(
            RichText::new(format!(
                "Not everything was read: each node was asked for at most {} connections.",
                crate::monitor::directory::SEARCH_MAX_ENTRIES
            ))
            .color(widgets::WARN),
        );
    }
    for note in summarize(answer, &name).notes {
        ui.add(egui::Label::new(RichText::new(note).color(widgets::WARN)).wrap());
    }
    ui.label(RichText::new(format!("answered at {}", widgets::clock(answer.at_ms))).weak());
    if total == 0 {
        return;
    }
    let size = state.page_size.max(1);
    let pages = total.div_ceil(size);
    state.page = state.page.min(pages - 1);
    let first = state.page * size;
    let last = (first + size).min(total);
    ui.horizontal(|ui| {
        ui.label(format!("Showing {}–{last} of {total}", first + 1));
        if ui
            .add_enabled(state.page > 0, egui::Button::new("previous page"))
            .clicked()
        {
            state.page -= 1;
        }
        if ui
            .add_enabled(state.page + 1 < pages, egui::Button::new("next page"))
            .clicked()
        {
            state.page += 1;
        }
    });
    let nodes_of = |urls: &[String]| urls.iter().map(|u| name(u)).collect::<Vec<_>>().join(", ");
    egui::ScrollArea::vertical().auto_shrink(false).show(ui, |ui| {
        egui::Grid::new(("directory_list", state.kind.label()))
            .striped(true)
            .spacing([14.0, 4.0])
            .show(ui, |ui| {
                let headers: &[&str] = match state.kind {
                    DirectoryKind::Any | DirectoryKind::Connection => {
                        &["connection id", "user id", "groups", "node"]
                    }
                    DirectoryKind::User => &["user id", "connections", "nodes"],
                    DirectoryKind::Group => &["group name", "members", "nodes"],
                };
                for h in headers {
                    ui.label(RichText::new(*h).strong());
                }
                ui.end_row();
                for row in &listed.rows[first..last] {
                    match row {
                        ListRow::Connection { hub_url, entry } => {
                            connection_and_user(ui, &entry.id, entry.user.as_ref(), actions);
                            let mut groups = entry.groups.join(", ");
                            let listed = entry.groups.len() as u64;
                            if entry.groups_total > listed {
                                groups.push_str(&format!(" +{} more", entry.groups_total - listed));
                            }
                            if groups.is_empty() {
                                ui.label(RichText::new("none").weak());
                            } else {
                                ui.scope(|ui| {
                                    ui.set_max_width(260.0);
                                    ui.add(egui::Label::new(groups).truncate());
                                });
                            }
                            ui.label(name(hub_url));
                        }
                        ListRow::User {
                            user,
                            connections,
                            hub_urls,
                        } => {
                            if ui
                                .button(user)
                                .on_hover_text("Send a test message to this user")
                                .clicked()
                            {
                                actions.push(Action::PickTarget(SendTarget::User(user.clone())));
                            }
                            ui.label(connections.to_string());
                            ui.label(nodes_of(hub_urls));
                        }
                        ListRow::Group {
                            group,
                            members,
                            hub_urls,
                        } => {
                            if ui
                                .button(group)
                                .on_hover_text("Send a test message to this group")
                                .clicked()
                            {
                                actions.push(Action::PickTarget(SendTarget::Group(group.clone())));
                            }
                            ui.label(members.to_string());
                            ui.label(nodes_of(hub_urls));
                        }
                    }
                    ui.end_row();
                }
            });
    });
}

/// A connection's id and its user as two cells, each a button that picks it as the Send
/// target ("–" without a user).
fn connection_and_user(ui: &mut Ui, id: &str, user: Option<&String>, actions: &mut Vec<Action>) {
    if ui
        .button(RichText::new(id).monospace())
        .on_hover_text("Send a test message to this connection")
        .clicked()
    {
        actions.push(Action::PickTarget(SendTarget::Connection(id.to_string())));
    }
    match user {
        Some(user) => {
            if ui
                .button(user)
                .on_hover_text("Send a test message to this user")
                .clicked()
            {
                actions.push(Action::PickTarget(SendTarget::User(user.clone())));
            }
        }
        None => {
            ui.label(RichText::new("–").weak());
        }
    }
}
