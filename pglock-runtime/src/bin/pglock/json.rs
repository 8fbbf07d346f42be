//! `--json` output: locks, backends and tree nodes as JSON values (fields
//! documented in the README).

use std::time::{Duration, SystemTime};

use pglock_runtime::{Backend, BlockingNode, LockInfo, LockKey};
use serde_json::{json, Value};

fn fmt_time(t: Option<SystemTime>) -> Value {
    t.map_or(Value::Null, |t| {
        Value::String(humantime::format_rfc3339_millis(t).to_string())
    })
}

fn ms(d: Option<Duration>) -> Value {
    d.map_or(Value::Null, |d| json!(d.as_millis() as u64))
}

pub(crate) fn backend_json(b: &Backend) -> Value {
    json!({
        "pid": b.pid,
        "application_name": b.application_name,
        "user": b.user,
        "client_addr": b.client_addr,
        "state": b.state,
        "query": b.query,
        "pglock_heartbeat": b.is_pglock_heartbeat(),
        "backend_type": b.backend_type,
        "wait_event_type": b.wait_event_type,
        "wait_event": b.wait_event,
        "query_start": fmt_time(b.query_start),
        "xact_start": fmt_time(b.xact_start),
        "backend_start": fmt_time(b.backend_start),
        "held_for_ms": ms(b.held_for()),
    })
}

pub(crate) fn lock_json(l: &LockInfo) -> Value {
    let key = match l.key {
        Some(LockKey::Int(k)) => json!(k),
        Some(LockKey::Pair(a, b)) => json!([a, b]),
        None => Value::Null,
    };
    json!({
        "pid": l.pid(),
        "locktype": l.locktype,
        "mode": l.mode,
        "granted": l.granted,
        "wait_start": fmt_time(l.wait_start),
        "wait_duration_ms": ms(l.wait_duration()),
        "duration_ms": ms(l.duration()),
        "relation": l.relation,
        "relation_kind": l.relation_kind,
        "key": key,
        "name": l.name,
        "transaction": l.transaction,
        "backend": backend_json(&l.backend),
    })
}

pub(crate) fn node_json(n: &BlockingNode) -> Value {
    json!({
        "backend": backend_json(&n.backend),
        "waiting_for": n.waiting_for.as_ref().map(lock_json),
        "blocked": n.blocked.iter().map(node_json).collect::<Vec<_>>(),
    })
}
