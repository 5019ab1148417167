//! The chat hub's methods, looked up case-insensitively as ASP.NET Core does (A.6.1), with the
//! argument binding and error texts of A.6.2.
//!
//! Called by `connection` for each Invocation; sends go through `lifetime`.

use std::sync::Arc;

use super::lifetime::{Lifetime, Target};
use crate::protocol::{HubMessage, Value};

/// The caller of a hub method.
pub struct Caller<'a> {
    pub connection_id: &'a Arc<str>,
    pub user: Option<&'a str>,
}

/// Why an invocation failed; `completion_text` gives what the client sees.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("unknown hub method")]
    UnknownMethod,
    /// Argument count or types do not match (detail is logged, not sent: detailed errors are off).
    #[error("binding failure: {0}")]
    Binding(String),
    /// The method itself failed.
    #[error("method failed: {0}")]
    Failed(String),
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
            HubError::NotStreaming => format!(
                "The client attempted to invoke the non-streaming '{target}' method with a streaming invocation."
            ),
        }
    }
}

/// The methods of the chat hub: (lowercase name, parameter count).
const METHODS: &[(&str, usize)] = &[
    ("sendmessage", 2),
    ("sendtoothers", 2),
    ("joingroup", 1),
    ("leavegroup", 1),
    ("sendtogroup", 3),
    ("sendtouser", 3),
    ("sendtoconnection", 3),
    ("addtogroup", 2),
    ("removefromgroup", 2),
    ("echo", 1),
    ("getconnectionid", 0),
];

/// The client method every chat send invokes.
pub const RECEIVE_MESSAGE: &str = "ReceiveMessage";

/// Whether `target` names a hub method (for streaming invocations, which none of them is).
pub fn exists(target: &str) -> bool {
    let name = target.to_ascii_lowercase();
    METHODS.iter().any(|(m, _)| *m == name)
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

/// `ReceiveMessage(user, message)` with the two values passed through as sent.
fn receive_message(args: &[Value], user_index: usize) -> Result<HubMessage, HubError> {
    string_arg(args, user_index)?;
    string_arg(args, user_index + 1)?;
    Ok(HubMessage::invocation(
        RECEIVE_MESSAGE,
        vec![args[user_index].clone(), args[user_index + 1].clone()],
    ))
}

/// Runs hub method `target`. `Ok(Some(v))` is a result, `Ok(None)` a void method.
pub async fn invoke(
    lifetime: &Lifetime,
    caller: &Caller<'_>,
    target: &str,
    args: Vec<Value>,
) -> Result<Option<Value>, HubError> {
    let name = target.to_ascii_lowercase();
    let Some(&(_, expected)) = METHODS.iter().find(|(m, _)| *m == name) else {
        return Err(HubError::UnknownMethod);
    };
    if args.len() != expected {
        return Err(HubError::Binding(format!(
            "Invocation provides {} argument(s) but target expects {expected}.",
            args.len()
        )));
    }
    let me: &str = caller.connection_id;
    match name.as_str() {
        "sendmessage" => {
            let msg = receive_message(&args, 0)?;
            lifetime.send(Target::All { excluded: &[] }, &msg).await;
        }
        "sendtoothers" => {
            let msg = receive_message(&args, 0)?;
            lifetime.send(Target::All { excluded: &[me] }, &msg).await;
        }
        "joingroup" => {
            let group = required(&args, 0, "group")?;
            lifetime
                .add_to_group(me, &group)
                .await
                .map_err(|e| HubError::Failed(e.to_string()))?;
        }
        "leavegroup" => {
            let group = required(&args, 0, "group")?;
            lifetime
                .remove_from_group(me, &group)
                .await
                .map_err(|e| HubError::Failed(e.to_string()))?;
        }
        "sendtogroup" => {
            let group = required(&args, 0, "group")?;
            let msg = receive_message(&args, 1)?;
            lifetime
                .send(
                    Target::Group {
                        group: &group,
                        excluded: &[],
                    },
                    &msg,
                )
                .await;
        }
        "sendtouser" => {
            let user = required(&args, 0, "userId")?;
            let msg = receive_message(&args, 1)?;
            lifetime.send(Target::User(&user), &msg).await;
        }
        "sendtoconnection" => {
            let id = required(&args, 0, "connectionId")?;
            let msg = receive_message(&args, 1)?;
            lifetime.send(Target::Connection(&id), &msg).await;
        }
        "addtogroup" => {
            let id = required(&args, 0, "connectionId")?;
            let group = required(&args, 1, "group")?;
            lifetime
                .add_to_group(&id, &group)
                .await
                .map_err(|e| HubError::Failed(e.to_string()))?;
        }
        "removefromgroup" => {
            let id = required(&args, 0, "connectionId")?;
            let group = required(&args, 1, "group")?;
            lifetime
                .remove_from_group(&id, &group)
                .await
                .map_err(|e| HubError::Failed(e.to_string()))?;
        }
        "echo" => return Ok(args.into_iter().next()),
        "getconnectionid" => return Ok(Some(Value::from(me))),
        _ => return Err(HubError::UnknownMethod),
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
    }

    #[test]
    fn lookup_is_case_insensitive() {
        assert!(exists("SENDMESSAGE"));
        assert!(exists("echo"));
        assert!(!exists("nope"));
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
