//! The chat hub's methods, looked up case-insensitively as ASP.NET Core does (A.6.1), with the
//! argument binding and error texts of A.6.2.
//!
//! Each method is a [`Method`] variant: its name, its arity and its body are exhaustive matches
//! on that enum, so a method cannot be added to one and forgotten in another.
//!
//! Called by `connection` for each Invocation; sends go through `lifetime`.

use std::sync::Arc;

use super::lifetime::{GroupOpError, Lifetime, Target};
use super::limits::{ClientLimits, Name, check_name};
use crate::protocol::{HubMessage, Value};

/// The caller of a hub method.
pub(crate) struct Caller<'a> {
    pub connection_id: &'a Arc<str>,
    /// `Context.UserIdentifier`: no chat method reads it yet, the connection fills it in.
    #[allow(dead_code)]
    pub user: Option<&'a str>,
    /// Whose group memberships the caller may change.
    pub groups: GroupRights<'a>,
    /// The node's limits on names (user ids and group names become Redis channel names).
    pub limits: &'a ClientLimits,
}

/// A user id argument, within its length limit.
fn user_arg(args: &[Value], index: usize, caller: &Caller<'_>) -> Result<String, HubError> {
    let user = required(args, index, "userId")?;
    check_name(caller.limits, Name::UserId, &user).map_err(HubError::Hub)?;
    Ok(user)
}

/// A group name argument, within its length limit.
fn group_arg(args: &[Value], index: usize, caller: &Caller<'_>) -> Result<String, HubError> {
    let group = required(args, index, "group")?;
    check_name(caller.limits, Name::Group, &group).map_err(HubError::Hub)?;
    Ok(group)
}

/// Who may `AddToGroup`/`RemoveFromGroup` a connection other than their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupRights<'a> {
    /// Anyone's (no `--auth`, or the caller's token carries the admin role).
    Any,
    /// Only the caller's own connection; others need a token with this role.
    OwnOnly { admin_role: &'a str },
}

impl GroupRights<'_> {
    /// `Ok` when a caller with these rights may change `target`'s groups; else the HubException.
    fn check(self, method: Method, me: &str, target: &str) -> Result<(), HubError> {
        match self {
            GroupRights::OwnOnly { admin_role } if me != target => Err(HubError::Hub(format!(
                "{} of another connection requires the '{admin_role}' role claim; a connection may \
                 only add or remove itself without it.",
                method.name()
            ))),
            _ => Ok(()),
        }
    }
}

/// Why an invocation failed; `completion_text` gives what the client sees.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HubError {
    #[error("unknown hub method")]
    UnknownMethod,
    /// Argument count or types do not match (detail is logged, not sent: detailed errors are off).
    #[error("binding failure: {0}")]
    Binding(String),
    /// The method itself failed.
    #[error("method failed: {0}")]
    Failed(String),
    /// The method refused on purpose, with a message for the client (ASP.NET Core's
    /// `HubException`: its message is sent even with detailed errors off).
    #[error("hub exception: {0}")]
    Hub(String),
    /// A streaming invocation of a non-streaming method.
    #[error("not a streaming method")]
    NotStreaming,
}

impl HubError {
    /// The Completion `error` text of A.6.2 (no detail: `EnableDetailedErrors` is false).
    pub fn completion_text(&self, target: &str) -> String {
        match self {
            HubError::UnknownMethod => format!("Unknown hub method '{target}'"),
            HubError::Binding(_) => format!("Failed to invoke '{target}' due to an error on the server."),
            HubError::Failed(_) => format!("An unexpected error occurred invoking '{target}' on the server."),
            HubError::Hub(message) => {
                format!(
                    "An unexpected error occurred invoking '{target}' on the server. HubException: {message}"
                )
            }
            HubError::NotStreaming => format!(
                "The client attempted to invoke the non-streaming '{target}' method with a streaming invocation."
            ),
        }
    }
}

impl From<GroupOpError> for HubError {
    fn from(e: GroupOpError) -> Self {
        match e {
            GroupOpError::TooManyGroups { .. } => HubError::Hub(e.to_string()),
            other => HubError::Failed(other.to_string()),
        }
    }
}

/// The methods of the chat hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    SendMessage,
    SendToOthers,
    JoinGroup,
    LeaveGroup,
    SendToGroup,
    SendToUser,
    SendToConnection,
    AddToGroup,
    RemoveFromGroup,
    Echo,
    GetConnectionId,
}

impl Method {
    /// Every method, for lookups and tests.
    pub const ALL: [Method; 11] = [
        Method::SendMessage,
        Method::SendToOthers,
        Method::JoinGroup,
        Method::LeaveGroup,
        Method::SendToGroup,
        Method::SendToUser,
        Method::SendToConnection,
        Method::AddToGroup,
        Method::RemoveFromGroup,
        Method::Echo,
        Method::GetConnectionId,
    ];

    /// The name as a .NET hub declares it.
    pub fn name(self) -> &'static str {
        match self {
            Method::SendMessage => "SendMessage",
            Method::SendToOthers => "SendToOthers",
            Method::JoinGroup => "JoinGroup",
            Method::LeaveGroup => "LeaveGroup",
            Method::SendToGroup => "SendToGroup",
            Method::SendToUser => "SendToUser",
            Method::SendToConnection => "SendToConnection",
            Method::AddToGroup => "AddToGroup",
            Method::RemoveFromGroup => "RemoveFromGroup",
            Method::Echo => "Echo",
            Method::GetConnectionId => "GetConnectionId",
        }
    }

    /// How many parameters the method declares.
    pub fn arity(self) -> usize {
        match self {
            Method::GetConnectionId => 0,
            Method::JoinGroup | Method::LeaveGroup | Method::Echo => 1,
            Method::SendMessage | Method::SendToOthers | Method::AddToGroup | Method::RemoveFromGroup => 2,
            Method::SendToGroup | Method::SendToUser | Method::SendToConnection => 3,
        }
    }

    /// The method `target` names, case-insensitively (A.6.1).
    pub fn find(target: &str) -> Option<Method> {
        Method::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(target))
    }
}

/// The client method every chat send invokes.
pub(crate) const RECEIVE_MESSAGE: &str = "ReceiveMessage";

/// Whether `target` names a hub method (for streaming invocations, which none of them is).
pub(crate) fn exists(target: &str) -> bool {
    Method::find(target).is_some()
}

/// A string parameter: .NET binds JSON strings and null (a null string) to `string`.
fn string_arg(args: &[Value], index: usize) -> Result<Option<&str>, HubError> {
    match &args[index] {
        Value::String(s) => s
            .as_str()
            .map(Some)
            .ok_or_else(|| HubError::Binding(format!("argument {index} is not valid UTF-8"))),
        Value::Nil => Ok(None),
        other => Err(HubError::Binding(format!(
            "argument {index}: expected a string, got {}",
            kind_name(other)
        ))),
    }
}

/// A string parameter that must not be null (ids and group names: .NET throws ArgumentNullException).
fn required(args: &[Value], index: usize, what: &str) -> Result<String, HubError> {
    string_arg(args, index)?
        .map(str::to_string)
        .ok_or_else(|| HubError::Failed(format!("{what} must not be null")))
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Nil => "null",
        Value::Boolean(_) => "a boolean",
        Value::Integer(_) | Value::F32(_) | Value::F64(_) => "a number",
        Value::String(_) => "a string",
        Value::Binary(_) => "binary",
        Value::Array(_) => "an array",
        Value::Map(_) => "an object",
        Value::Ext(..) => "an extension value",
    }
}

/// `ReceiveMessage(user, message)` with the two values passed through as sent (moved out of
/// `args`, which the method reads no further).
fn receive_message(args: &mut [Value], user_index: usize) -> Result<HubMessage, HubError> {
    string_arg(args, user_index)?;
    string_arg(args, user_index + 1)?;
    let message = std::mem::replace(&mut args[user_index + 1], Value::Nil);
    let user = std::mem::replace(&mut args[user_index], Value::Nil);
    Ok(HubMessage::invocation(RECEIVE_MESSAGE, vec![user, message]))
}

/// Runs hub method `target`. `Ok(Some(v))` is a result, `Ok(None)` a void method.
pub(crate) async fn invoke(
    lifetime: &Lifetime,
    caller: &Caller<'_>,
    target: &str,
    mut args: Vec<Value>,
) -> Result<Option<Value>, HubError> {
    let Some(method) = Method::find(target) else {
        return Err(HubError::UnknownMethod);
    };
    let expected = method.arity();
    if args.len() != expected {
        return Err(HubError::Binding(format!(
            "Invocation provides {} argument(s) but target expects {expected}.",
            args.len()
        )));
    }
    let me: &str = caller.connection_id;
    match method {
        Method::SendMessage => {
            let msg = receive_message(&mut args, 0)?;
            lifetime.send(Target::All { excluded: &[] }, &msg).await;
        }
        Method::SendToOthers => {
            let msg = receive_message(&mut args, 0)?;
            lifetime.send(Target::All { excluded: &[me] }, &msg).await;
        }
        Method::JoinGroup => {
            let group = group_arg(&args, 0, caller)?;
            lifetime.add_to_group(me, &group).await?;
        }
        Method::LeaveGroup => {
            let group = group_arg(&args, 0, caller)?;
            lifetime.remove_from_group(me, &group).await?;
        }
        Method::SendToGroup => {
            let group = group_arg(&args, 0, caller)?;
            let msg = receive_message(&mut args, 1)?;
            let target = Target::Group {
                group: &group,
                excluded: &[],
            };
            lifetime.send(target, &msg).await;
        }
        Method::SendToUser => {
            let user = user_arg(&args, 0, caller)?;
            let msg = receive_message(&mut args, 1)?;
            lifetime.send(Target::User(&user), &msg).await;
        }
        Method::SendToConnection => {
            let id = required(&args, 0, "connectionId")?;
            let msg = receive_message(&mut args, 1)?;
            lifetime.send(Target::Connection(&id), &msg).await;
        }
        Method::AddToGroup => {
            let id = required(&args, 0, "connectionId")?;
            let group = group_arg(&args, 1, caller)?;
            caller.groups.check(method, me, &id)?;
            lifetime.add_to_group(&id, &group).await?;
        }
        Method::RemoveFromGroup => {
            let id = required(&args, 0, "connectionId")?;
            let group = group_arg(&args, 1, caller)?;
            caller.groups.check(method, me, &id)?;
            lifetime.remove_from_group(&id, &group).await?;
        }
        Method::Echo => return Ok(args.into_iter().next()),
        Method::GetConnectionId => return Ok(Some(Value::from(me))),
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_texts_match_aspnetcore() {
        assert_eq!(
            HubError::UnknownMethod.completion_text("Foo"),
            "Unknown hub method 'Foo'"
        );
        assert_eq!(
            HubError::Binding(String::new()).completion_text("foo"),
            "Failed to invoke 'foo' due to an error on the server."
        );
        assert_eq!(
            HubError::Failed(String::new()).completion_text("Send"),
            "An unexpected error occurred invoking 'Send' on the server."
        );
        assert_eq!(
            HubError::Hub("No.".into()).completion_text("JoinGroup"),
            "An unexpected error occurred invoking 'JoinGroup' on the server. HubException: No."
        );
    }

    #[test]
    fn limits_name_the_flag() {
        let limits = ClientLimits::default();
        assert!(check_name(&limits, Name::Group, &"g".repeat(1024)).is_ok());
        let error = HubError::Hub(check_name(&limits, Name::Group, &"g".repeat(1025)).unwrap_err());
        let text = error.completion_text("JoinGroup");
        assert!(
            text.contains("HubException")
                && text.contains("at most 1024 bytes")
                && text.contains("--max-group-name-bytes"),
            "{text}"
        );
    }

    #[test]
    fn group_rights_of_other_connections() {
        let own = GroupRights::OwnOnly {
            admin_role: "switchboard-admin",
        };
        assert!(own.check(Method::AddToGroup, "a", "a").is_ok());
        let refused = own.check(Method::RemoveFromGroup, "a", "b").unwrap_err();
        let text = refused.completion_text("RemoveFromGroup");
        assert!(
            text.contains("HubException") && text.contains("'switchboard-admin' role"),
            "{text}"
        );
        assert!(GroupRights::Any.check(Method::AddToGroup, "a", "b").is_ok());
    }

    #[test]
    fn lookup_is_case_insensitive() {
        assert!(exists("SENDMESSAGE"));
        assert!(exists("echo"));
        assert!(!exists("nope"));
        assert_eq!(Method::find("joingroup"), Some(Method::JoinGroup));
    }

    #[test]
    fn every_method_is_found_by_its_own_name_and_names_are_unique() {
        for m in Method::ALL {
            assert_eq!(Method::find(m.name()), Some(m));
            assert_eq!(Method::find(&m.name().to_lowercase()), Some(m));
        }
        let mut names: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Method::ALL.len());
    }

    #[test]
    fn string_binding_accepts_null_and_rejects_numbers() {
        let args = vec![Value::Nil, Value::from(3), Value::from("x")];
        assert_eq!(string_arg(&args, 0).unwrap(), None);
        assert!(matches!(string_arg(&args, 1), Err(HubError::Binding(_))));
        assert_eq!(string_arg(&args, 2).unwrap(), Some("x"));
        assert!(matches!(required(&args, 0, "group"), Err(HubError::Failed(_))));
    }
}
