//! One candidate of a leader election (run by `tests/leader.rs`, not by hand).
//!
//! `leader-worker URL ELECTION MARKER ID` joins the election ELECTION and, while
//! it leads, holds the marker file MARKER — a lock outside PostgreSQL: it
//! creates it with `create_new` when its leadership starts and removes it when
//! its work is dropped. A marker that already exists when it starts leading
//! means two leaderships overlapped, as seen from outside.
//!
//! Prints one line per event, `<event> <ID> <term> <unix ms>`, flushed at once:
//! `joined` (term 0) when it joined, `elected` when its work started,
//! `overlap` when the marker was there already, `revoked` when its work was
//! dropped. Leaves and exits when its stdin closes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pglock_runtime::Config;

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}

fn say(event: &str, id: &str, term: u64) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{event} {id} {term} {}", now_ms()).ok();
    out.flush().ok();
}

/// The marker, held while the work runs; removed when the work is dropped.
struct Marker {
    path: PathBuf,
    id: String,
    term: u64,
}

impl Marker {
    fn take(path: &Path, id: &str, term: u64) -> Marker {
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .and_then(|mut f| write!(f, "{id} {term}"));
        if created.is_err() {
            say("overlap", id, term);
            // Take it over, so that the overlap is reported once.
            std::fs::write(path, format!("{id} {term}")).ok();
        }
        Marker {
            path: path.to_owned(),
            id: id.to_owned(),
            term,
        }
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        // Only our own: a marker another leader wrote is theirs.
        let mine = format!("{} {}", self.id, self.term);
        if std::fs::read_to_string(&self.path).is_ok_and(|c| c == mine) {
            std::fs::remove_file(&self.path).ok();
        }
        say("revoked", &self.id, self.term);
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, election, marker, id] = args.as_slice() else {
        eprintln!("usage: leader-worker URL ELECTION MARKER ID");
        std::process::exit(2);
    };
    let config = Config::from_url(url)
        .unwrap()
        .application_name(&format!("leader-worker-{id}"));
    pglock_runtime::register("default", config).unwrap();
    let candidate = pglock_runtime::leader(election.clone()).join().unwrap();
    say("joined", id, 0);
    let work = {
        let candidate = candidate.clone();
        let (marker, id) = (PathBuf::from(marker), id.clone());
        async move {
            candidate
                .run_while_leader(|term| {
                    let (marker, id) = (marker.clone(), id.clone());
                    async move {
                        let _held = Marker::take(&marker, &id, term);
                        say("elected", &id, term);
                        loop {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                        }
                    }
                })
                .await
        }
    };
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
    });
    tokio::select! {
        r = work => eprintln!("leader-worker: the candidacy ended: {r:?}"),
        _ = stdin_closed => {}
    }
    candidate.leave().await;
}
