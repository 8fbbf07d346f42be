//! `pglock terms`: the last term of each leader election and fenced lock, as a
//! table or JSON, with whether its session still holds the lock.

use pglock_runtime::Term;
use serde_json::json;

use crate::args::TermsOpts;
use crate::render::{print_table, Column};

/// Prints the terms, by name.
pub(crate) fn print_terms(terms: &[Term], opts: &TermsOpts, width: usize) {
    let since = |t: &Term| humantime::format_rfc3339_millis(t.since).to_string();
    if opts.json {
        let all: Vec<_> = terms
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "term": t.term,
                    "holding": t.holding,
                    "host": t.host,
                    "client_pid": t.client_pid,
                    "backend_pid": t.backend_pid,
                    "application_name": t.application_name,
                    "since": since(t),
                })
            })
            .collect();
        println!("{}", json!({ "terms": all }));
        return;
    }
    if terms.is_empty() {
        println!("No terms granted.");
        return;
    }
    let rows: Vec<Vec<String>> = terms
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                t.term.to_string(),
                if t.holding { "yes" } else { "no" }.to_owned(),
                t.host.clone(),
                t.client_pid.map_or_else(String::new, |p| p.to_string()),
                t.backend_pid.map_or_else(String::new, |p| p.to_string()),
                t.application_name.clone(),
                since(t),
            ]
        })
        .collect();
    print_table(
        &[
            Column::new("NAME"),
            Column::new("TERM"),
            Column::new("HELD"),
            Column::new("HOST"),
            Column::new("PID"),
            Column::new("BACKEND"),
            Column::new("APPLICATION"),
            Column::new("SINCE"),
        ],
        &rows,
        false,
        width,
    );
}
