//! `petrel events`: follows the agent's `WatchEvents` stream of BGP session
//! transitions (RFC 4271 §8) and Loc-RIB best-path changes (RFC 4271
//! §9.1.2), one line per event, or one JSON object per line (JSON Lines).

use super::{CliError, Output, connect};
use pb::watch_events_response::Event;
use petrel_proto::{ClientError, pb};
use serde::Serialize;
use std::io::Write;
use std::path::Path;

/// One event as printed with `-o json` (one object per line) or `-o yaml`
/// (one document per event). Exactly one of `session`, `route` and
/// `dropped` is set, as `type` says.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EventLine {
    /// RFC 3339 UTC time, millisecond precision.
    pub time: String,
    pub time_unix_ms: u64,
    /// `session`, `route` or `dropped`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<pb::SessionTransition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<pb::RouteChange>,
    /// Events the agent dropped because this client fell behind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped: Option<u64>,
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (the civil-from-days algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// "2026-11-26T10:30:00.123Z".
pub fn rfc3339(unix_ms: u64) -> String {
    let secs = (unix_ms / 1000) as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        (s / 60) % 60,
        s % 60,
        unix_ms % 1000
    )
}

pub fn event_line(ev: &pb::WatchEventsResponse) -> Option<EventLine> {
    let mut line = EventLine {
        time: rfc3339(ev.time_unix_ms),
        time_unix_ms: ev.time_unix_ms,
        kind: "",
        session: None,
        route: None,
        dropped: None,
    };
    match ev.event.as_ref()? {
        Event::Session(s) => {
            line.kind = "session";
            line.session = Some(s.clone());
        }
        Event::Route(r) => {
            line.kind = "route";
            line.route = Some(r.clone());
        }
        Event::Dropped(n) => {
            line.kind = "dropped";
            line.dropped = Some(*n);
        }
    }
    Some(line)
}

/// One human-readable line.
pub fn event_text(e: &EventLine) -> String {
    let body = if let Some(s) = &e.session {
        let mut t = format!(
            "session {} ({}) {} -> {}",
            s.peer, s.address, s.from_state, s.to_state
        );
        if !s.reason.is_empty() {
            t.push_str(&format!(": {}", s.reason));
        }
        t
    } else if let Some(r) = &e.route {
        if r.withdrawn {
            format!("route {} withdrawn", r.prefix)
        } else if r.peer == "local" {
            format!("route {} originated locally", r.prefix)
        } else {
            let path: Vec<String> = r.as_path.iter().map(|a| a.to_string()).collect();
            format!(
                "route {} via {} from {} [{}]",
                r.prefix,
                r.next_hops.join(", "),
                r.peer,
                path.join(" ")
            )
        }
    } else {
        format!(
            "{} events dropped: this client fell behind",
            e.dropped.unwrap_or(0)
        )
    };
    format!("{} {body}\n", e.time)
}

/// `petrel events [--sessions-only] [--count N]`: prints events as they
/// come until interrupted, the agent goes away, or `count` were printed.
pub async fn run(
    socket: &Path,
    sessions_only: bool,
    count: Option<u64>,
    out: Output,
) -> Result<(), CliError> {
    let mut c = connect(socket).await?;
    let mut stream = c
        .watch_events(pb::WatchEventsRequest { sessions_only })
        .await
        .map_err(ClientError::from)?
        .into_inner();
    let mut printed = 0u64;
    let mut stdout = std::io::stdout();
    while count.is_none_or(|n| printed < n) {
        let Some(ev) = stream.message().await.map_err(ClientError::from)? else {
            break;
        };
        let Some(line) = event_line(&ev) else {
            continue;
        };
        let text = match out {
            Output::Json => serde_json::to_string(&line)
                .map(|s| s + "\n")
                .map_err(|e| CliError::Encode {
                    format: "JSON",
                    reason: e.to_string(),
                })?,
            Output::Yaml => serde_saphyr::to_string(&line)
                .map(|s| format!("---\n{s}"))
                .map_err(|e| CliError::Encode {
                    format: "YAML",
                    reason: e.to_string(),
                })?,
            Output::Table | Output::Wide => event_text(&line),
        };
        // Flushed per event: the output is usually followed live or piped.
        if stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            break; // the reader went away (e.g. `| head`)
        }
        printed += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_689_000_123), "2026-11-26T10:30:00.123Z");
    }

    #[test]
    fn events_render_as_lines_and_json() {
        let session = pb::WatchEventsResponse {
            time_unix_ms: 1_795_689_000_123,
            event: Some(Event::Session(pb::SessionTransition {
                peer: "mesh/node3".into(),
                address: "10.0.3.1".into(),
                from_state: "Established".into(),
                to_state: "Idle".into(),
                reason: "received Cease/Administrative Shutdown".into(),
            })),
        };
        let line = event_line(&session).unwrap();
        assert_eq!(
            event_text(&line),
            "2026-11-26T10:30:00.123Z session mesh/node3 (10.0.3.1) Established -> Idle: \
             received Cease/Administrative Shutdown\n"
        );
        let j = serde_json::to_value(&line).unwrap();
        assert_eq!(j["type"], "session");
        assert_eq!(j["session"]["to_state"], "Idle");
        assert!(j.get("route").is_none() && j.get("dropped").is_none());

        let route = |withdrawn: bool, peer: &str| pb::WatchEventsResponse {
            time_unix_ms: 0,
            event: Some(Event::Route(pb::RouteChange {
                prefix: "10.244.1.0/29".into(),
                withdrawn,
                peer: peer.into(),
                next_hops: if withdrawn {
                    vec![]
                } else {
                    vec!["10.0.2.1".into()]
                },
                as_path: vec![],
            })),
        };
        let text = event_text(&event_line(&route(false, "mesh/node2")).unwrap());
        assert!(
            text.ends_with("route 10.244.1.0/29 via 10.0.2.1 from mesh/node2 []\n"),
            "{text}"
        );
        let text = event_text(&event_line(&route(true, "")).unwrap());
        assert!(text.ends_with("route 10.244.1.0/29 withdrawn\n"), "{text}");
        let dropped = pb::WatchEventsResponse {
            time_unix_ms: 0,
            event: Some(Event::Dropped(7)),
        };
        let line = event_line(&dropped).unwrap();
        assert!(event_text(&line).contains("7 events dropped"));
        assert_eq!(serde_json::to_value(&line).unwrap()["dropped"], 7);
        assert!(event_line(&pb::WatchEventsResponse::default()).is_none());
    }
}
