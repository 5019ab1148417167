//! Who may look at a node's monitor endpoints (`/switchboard/*` and `/metrics`), which expose user
//! and connection ids:
//!
//! - with `--monitor-token TOKEN`, every request (loopback ones too) must carry
//!   `Authorization: Bearer TOKEN`; otherwise 401 with a one-line reason;
//! - without a token, only loopback clients are answered; anyone else gets 403 with a one-line
//!   reason that names `--monitor-token`. So a node that listens beyond loopback requires the
//!   token before a remote dashboard or Prometheus may look.
//!
//! - without a token, the request's `Host` must also name loopback (`localhost`, `127.x.y.z`,
//!   `[::1]`, any port, any case); anything else gets 403 with one line. A page on a hostile
//!   domain that rebinds its name to 127.0.0.1 (DNS rebinding) makes the browser send its own
//!   domain as `Host`, so it cannot read the endpoints through a loopback client.
//!
//! "Loopback client" means the TCP peer is a loopback address (127.0.0.0/8, ::1, or IPv4-mapped
//! 127.x) AND the request carries no proxy header (`Forwarded`, `X-Forwarded-For`, `X-Real-IP`):
//! behind a reverse proxy on the same host every peer is loopback, and the proxy's header says the
//! real client is elsewhere. The peer address comes from the accept loop (`ConnectInfo`); a request
//! without one is treated as remote.
//!
//! The token is never logged: it lives in a `MonitorToken`, whose `Debug` prints `***`. Refusals
//! are logged at debug level with the peer address and the reason only.
//!
//! Used by `listener` (the route table) only.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::NodeShared;
use crate::monitor_token::Wording;
#[cfg(test)]
use crate::monitor_token::{Access, MonitorToken};

pub(crate) const NO_TOKEN_SENT: &str = "this node's monitor endpoints require a bearer token: send `Authorization: Bearer TOKEN` with the node's --monitor-token";
pub(crate) const WRONG_TOKEN: &str = "the bearer token does not match this node's --monitor-token";
pub(crate) const LOOPBACK_HOST_ONLY: &str = "this node answers monitor requests without a token only when the Host header names loopback (localhost, 127.0.0.1, [::1]): start it with --monitor-token TOKEN to be reached under another name";
pub(crate) const LOOPBACK_ONLY: &str = "this node answers monitor requests from loopback clients only: start it with --monitor-token TOKEN (or SWITCHBOARD_MONITOR_TOKEN) and send `Authorization: Bearer TOKEN`";

/// The node's words for the rule's refusals.
const WORDING: Wording = Wording {
    no_token_sent: NO_TOKEN_SENT,
    wrong_token: WRONG_TOKEN,
    loopback_only: LOOPBACK_ONLY,
    loopback_host_only: LOOPBACK_HOST_ONLY,
    realm: "switchboard-monitor",
    refused: "monitor request refused",
};

/// The rule of the module docs (`monitor_token::decide`) in the node's words.
#[cfg(test)]
pub(crate) fn decide(
    token: Option<&MonitorToken>,
    authorization: Option<&[u8]>,
    local: bool,
    host: Option<&[u8]>,
) -> Access {
    crate::monitor_token::decide(token, authorization, local, host, &WORDING)
}

use crate::monitor_token::is_loopback;
#[cfg(test)]
use crate::monitor_token::{PROXY_HEADERS, is_local_client};

/// Whether a listen address accepts connections from beyond this host.
pub(crate) fn listens_beyond_loopback(listen: SocketAddr) -> bool {
    !is_loopback(listen.ip())
}

/// The middleware on the monitor routes.
pub(crate) async fn guard(State(node): State<Arc<NodeShared>>, request: Request, next: Next) -> Response {
    match crate::monitor_token::refusal(node.config.monitor_token.as_ref(), &request, &WORDING) {
        None => next.run(request).await,
        Some(refused) => refused,
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue};

    use super::*;

    fn addr(text: &str) -> Option<SocketAddr> {
        Some(text.parse().unwrap())
    }

    const LOCAL_HOST: Option<&[u8]> = Some(b"127.0.0.1:5000");

    #[test]
    fn without_a_token_only_loopback_clients_are_answered() {
        assert_eq!(decide(None, None, true, LOCAL_HOST), Access::Allowed);
        assert_eq!(decide(None, Some(b"Bearer x"), true, LOCAL_HOST), Access::Allowed);
        assert_eq!(
            decide(None, None, false, LOCAL_HOST),
            Access::Forbidden(LOOPBACK_ONLY)
        );
        assert_eq!(
            decide(None, Some(b"Bearer x"), false, LOCAL_HOST),
            Access::Forbidden(LOOPBACK_ONLY),
            "a token sent to a node without one opens nothing"
        );
        assert!(LOOPBACK_ONLY.contains("--monitor-token"));
    }

    #[test]
    fn without_a_token_the_host_header_must_name_loopback() {
        let allowed: [&[u8]; 16] = [
            b"localhost",
            b"localhost:5000",
            b"LOCALHOST:80",
            b"LocalHost.",
            b"localhost.:8080",
            b"127.0.0.1",
            b"127.0.0.1:5000",
            b"127.1.2.3:9",
            b"127.255.255.254",
            b"[::1]",
            b"[::1]:5000",
            b"[0:0:0:0:0:0:0:1]:1",
            b"[::ffff:127.0.0.1]:5000",
            b" localhost:1 ",
            b"127.0.0.1:65535",
            b"localhost:0",
        ];
        for host in allowed {
            assert_eq!(
                decide(None, None, true, Some(host)),
                Access::Allowed,
                "{}",
                String::from_utf8_lossy(host)
            );
        }
        let refused: [&[u8]; 17] = [
            b"evil.example",
            b"evil.example:5000",
            b"localhost.evil.example",
            b"evil-localhost",
            b"127.0.0.1.evil.example",
            b"128.0.0.1",
            b"10.0.0.1:5000",
            b"0.0.0.0:5000",
            b"[::2]:5000",
            b"[fd00::1]",
            b"[::1",
            b"[::1]x",
            b"localhost:port",
            b"localhost:",
            b"::1",
            b"",
            b"\xff\xfe",
        ];
        for host in refused {
            assert_eq!(
                decide(None, None, true, Some(host)),
                Access::Forbidden(LOOPBACK_HOST_ONLY),
                "{}",
                String::from_utf8_lossy(host)
            );
        }
        assert_eq!(
            decide(None, None, true, None),
            Access::Forbidden(LOOPBACK_HOST_ONLY),
            "no Host at all: not a loopback name"
        );
        assert_eq!(
            decide(None, None, false, Some(b"evil.example")),
            Access::Forbidden(LOOPBACK_ONLY),
            "a remote client hears the remote reason"
        );
        let token = MonitorToken::new("t0ken").unwrap();
        assert_eq!(
            decide(Some(&token), Some(b"Bearer t0ken"), false, Some(b"dash.example")),
            Access::Allowed,
            "with a token the Host does not matter"
        );
        assert_eq!(
            decide(Some(&token), None, true, Some(b"localhost")),
            Access::Unauthorized(NO_TOKEN_SENT)
        );
        assert!(!LOOPBACK_HOST_ONLY.contains('\n'));
        assert!(LOOPBACK_HOST_ONLY.contains("--monitor-token"));
    }

    #[test]
    fn with_a_token_everyone_must_send_it_loopback_included() {
        let token = MonitorToken::new("t0ken").unwrap();
        for local in [true, false] {
            assert_eq!(
                decide(Some(&token), None, local, LOCAL_HOST),
                Access::Unauthorized(NO_TOKEN_SENT)
            );
            assert_eq!(
                decide(Some(&token), Some(b"Bearer nope"), local, LOCAL_HOST),
                Access::Unauthorized(WRONG_TOKEN)
            );
            assert_eq!(
                decide(Some(&token), Some(b"Bearer t0ken"), local, LOCAL_HOST),
                Access::Allowed
            );
        }
        for reason in [NO_TOKEN_SENT, WRONG_TOKEN, LOOPBACK_ONLY, LOOPBACK_HOST_ONLY] {
            assert!(!reason.contains('\n'), "one line: {reason}");
        }
    }

    #[test]
    fn the_peer_address_decides_what_is_local() {
        let none = HeaderMap::new();
        assert!(is_local_client(addr("127.0.0.1:5000"), &none));
        assert!(is_local_client(addr("127.3.4.5:5000"), &none));
        assert!(is_local_client(addr("[::1]:5000"), &none));
        assert!(is_local_client(addr("[::ffff:127.0.0.1]:5000"), &none));
        assert!(!is_local_client(addr("192.0.2.7:5000"), &none));
        assert!(!is_local_client(addr("[::ffff:192.0.2.7]:5000"), &none));
        assert!(!is_local_client(addr("[fd00::2]:5000"), &none));
        assert!(!is_local_client(addr("0.0.0.0:5000"), &none));
        assert!(!is_local_client(None, &none), "no peer address: remote");
    }

    #[test]
    fn a_proxied_request_is_not_local_even_from_loopback() {
        for name in PROXY_HEADERS {
            let mut headers = HeaderMap::new();
            headers.insert(name, HeaderValue::from_static("203.0.113.9"));
            assert!(!is_local_client(addr("127.0.0.1:5000"), &headers), "{name}");
        }
    }

    #[test]
    fn listening_beyond_loopback() {
        assert!(!listens_beyond_loopback("127.0.0.1:0".parse().unwrap()));
        assert!(!listens_beyond_loopback("[::1]:0".parse().unwrap()));
        assert!(listens_beyond_loopback("0.0.0.0:5001".parse().unwrap()));
        assert!(listens_beyond_loopback("[::]:5001".parse().unwrap()));
        assert!(listens_beyond_loopback("192.0.2.2:5001".parse().unwrap()));
    }
}
