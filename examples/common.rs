//! Shared start-up of the examples: `DATABASE_URL`, or a throw-away cluster.

/// A URL for the sessions of an ordinary application role: on the throw-away
/// cluster, its non-superuser role; with `DATABASE_URL`, that URL.
#[allow(dead_code)] // not every example has other applications' sessions
pub(crate) fn application_url(url: &str) -> String {
    match std::env::var("DATABASE_URL") {
        Ok(set) if !set.is_empty() => url.to_owned(),
        _ => pglock_testkit::shared_cluster().app_url(),
    }
}

/// Registers the `"default"` alias and returns the URL in use.
pub(crate) fn connect() -> Result<String, pglock_runtime::Error> {
    let url = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => {
            println!("using DATABASE_URL");
            url
        }
        _ => {
            println!("DATABASE_URL is not set: starting a throw-away PostgreSQL cluster…");
            let url = pglock_testkit::database_url();
            println!("started it at {url}");
            url
        }
    };
    pglock_runtime::register("default", pglock_runtime::Config::from_url(&url)?)?;
    Ok(url)
}

/// Resolves on Ctrl-C or SIGTERM, whichever comes first.
#[allow(dead_code)] // only the long-running examples wait for it
pub(crate) async fn termination() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
