//! TLS against a real TLS-only server (certificates made at test time): every
//! sslmode, verification failures that name their cause, client certificates,
//! cancel requests over TLS, and `pg_stat_ssl` confirming that each of pglock's
//! sessions is encrypted. Observers use the server's Unix socket.

use std::sync::OnceLock;
use std::time::Duration;

use pglock_runtime::{advisory, connection_for, register, Config, ErrorKind, SslMode};
use pglock_testkit::{Cluster, TestCerts, CERT_USER};
use pglock_tests::*;

fn server() -> &'static (Cluster, TestCerts) {
    static SERVER: OnceLock<(Cluster, TestCerts)> = OnceLock::new();
    SERVER.get_or_init(|| Cluster::start_tls().expect("a TLS cluster starts"))
}

/// The TLS server's URL with `params` (`sslmode=…&…`).
fn tls_url(params: &str) -> String {
    format!("{}?{params}", server().0.url())
}

fn ca() -> String {
    server().1.ca().display().to_string()
}

/// Registers `alias` on `url`, its sessions named after it.
fn alias(alias: &'static str, url: &str) -> Result<&'static str, pglock_runtime::Error> {
    let config = Config::from_url(url)?.application_name(alias);
    register(alias, config)?;
    Ok(alias)
}

/// Takes and releases a lock on `alias` (a round trip on one of its sessions)
/// and returns that session's pid.
async fn use_alias(alias: &'static str) -> Result<i32, pglock_runtime::Error> {
    let conn = connection_for(alias).await?;
    let pid = conn.backend_pid();
    drop(conn);
    advisory(unique_key()).using(alias).run(async {}).await?;
    Ok(pid)
}

/// What the server says of `alias`'s sessions: (pid, encrypted) from
/// `pg_stat_ssl`, read over the Unix socket.
async fn ssl_of(alias: &str) -> Vec<(i32, bool)> {
    let obs = connect(&server().0.socket_url()).await;
    obs.query(
        "SELECT s.pid, s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = $1 ORDER BY s.pid",
        &[&alias],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

async fn assert_encrypted(alias: &str, pid: i32) {
    let sessions = ssl_of(alias).await;
    assert!(
        sessions.iter().any(|&(p, _)| p == pid),
        "the session {pid} of `{alias}` is on the server: {sessions:?}"
    );
    assert!(
        sessions.iter().all(|&(_, ssl)| ssl),
        "every session of `{alias}` is encrypted: {sessions:?}"
    );
}

#[tokio::test]
async fn every_mode_that_encrypts_is_encrypted_on_the_server() {
    let ca = ca();
    let cases = [
        ("tls-prefer", "sslmode=prefer".to_owned()),
        ("tls-default", "connect_timeout=5".to_owned()),
        ("tls-require", "sslmode=require".to_owned()),
        (
            "tls-verify-ca",
            format!("sslmode=verify-ca&sslrootcert={ca}"),
        ),
        (
            "tls-verify-full",
            format!("sslmode=verify-full&sslrootcert={ca}"),
        ),
    ];
    for (name, params) in cases {
        let a = alias(name, &tls_url(&params)).unwrap();
        let pid = within(20, name, use_alias(a))
            .await
            .unwrap_or_else(|e| panic!("{name} ({params}): {e}"));
        assert_encrypted(a, pid).await;
    }
    // By host name too (the certificate names `localhost`).
    let port = server().0.port();
    let a = alias(
        "tls-verify-full-localhost",
        &format!(
            "postgres://postgres@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={ca}"
        ),
    )
    .unwrap();
    let pid = within(20, "localhost", use_alias(a)).await.unwrap();
    assert_encrypted(a, pid).await;
}

#[tokio::test]
async fn the_builder_sets_what_the_url_does() {
    let config = Config::from_url(&server().0.url())
        .unwrap()
        .ssl_mode(SslMode::VerifyFull)
        .ssl_root_cert(server().1.ca())
        .application_name("tls-builder");
    assert_eq!(config.get_ssl_mode(), SslMode::VerifyFull);
    register("tls-builder", config).unwrap();
    let pid = within(20, "builder", use_alias("tls-builder"))
        .await
        .unwrap();
    assert_encrypted("tls-builder", pid).await;
}

#[tokio::test]
async fn disable_is_refused_by_a_tls_only_server() {
    let a = alias("tls-disable", &tls_url("sslmode=disable")).unwrap();
    let e = within(20, "disable", use_alias(a)).await.unwrap_err();
    assert!(
        e.to_string().contains("no encryption"),
        "the server's refusal is in the message: {e}"
    );
}

#[tokio::test]
async fn verify_full_names_a_wrong_host() {
    let port = server().0.port();
    // Connects to 127.0.0.1 (hostaddr) but checks the certificate against the
    // name `wrong.invalid`, which it does not list.
    let a = alias(
        "tls-wrong-host",
        &format!(
            "postgres://postgres@wrong.invalid:{port}/postgres?hostaddr=127.0.0.1\
             &sslmode=verify-full&sslrootcert={}",
            ca()
        ),
    )
    .unwrap();
    let e = within(20, "wrong host", use_alias(a)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Configuration, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("not valid for the host name") && text.contains("verify-ca"),
        "says the name is wrong and what to do: {text}"
    );
    // verify-ca checks the CA only: the same connection is fine.
    let a = alias(
        "tls-wrong-host-ca-only",
        &format!(
            "postgres://postgres@wrong.invalid:{port}/postgres?hostaddr=127.0.0.1\
             &sslmode=verify-ca&sslrootcert={}",
            ca()
        ),
    )
    .unwrap();
    within(20, "verify-ca", use_alias(a)).await.unwrap();
}

#[tokio::test]
async fn a_wrong_ca_is_named() {
    let wrong = server().1.wrong_ca().display().to_string();
    for (name, mode) in [
        ("tls-wrong-ca-full", "verify-full"),
        ("tls-wrong-ca", "verify-ca"),
    ] {
        let a = alias(
            name,
            &tls_url(&format!("sslmode={mode}&sslrootcert={wrong}")),
        )
        .unwrap();
        let e = within(20, name, use_alias(a)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Configuration, "{e}");
        assert!(
            e.to_string()
                .contains("not signed by a CA in `sslrootcert`"),
            "{mode}: {e}"
        );
    }
}

#[tokio::test]
async fn verify_modes_need_a_ca_and_system_roots_need_verify_full() {
    // No sslrootcert, and no libpq default file (where this machine has one,
    // it would be used: that case is a unit test of the runtime).
    let default_root = std::env::var_os("HOME")
        .map(|h| std::path::Path::new(&h).join(".postgresql/root.crt"))
        .filter(|f| f.exists());
    if default_root.is_none() {
        let e = alias("tls-no-ca", &tls_url("sslmode=verify-full")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Configuration);
        assert!(e.to_string().contains("set `sslrootcert="), "{e}");
    }
    let e = alias(
        "tls-weak-system",
        &tls_url("sslmode=require&sslrootcert=system"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("only `verify-full`"), "{e}");
    let e = alias(
        "tls-missing-file",
        &tls_url("sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
}

#[tokio::test]
async fn a_client_certificate_logs_in_where_the_server_asks_for_one() {
    let (cluster, certs) = server();
    let base = format!(
        "postgres://{CERT_USER}@127.0.0.1:{}/postgres?sslmode=verify-full&sslrootcert={}",
        cluster.port(),
        certs.ca().display()
    );
    let without = alias("tls-cert-missing", &base).unwrap();
    let e = within(20, "no client cert", use_alias(without))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("certificate"),
        "the refusal mentions the certificate: {e}"
    );
    let with = alias(
        "tls-cert",
        &format!(
            "{base}&sslcert={}&sslkey={}",
            certs.client_cert().display(),
            certs.client_key().display()
        ),
    )
    .unwrap();
    let pid = within(20, "client cert", use_alias(with)).await.unwrap();
    assert_encrypted(with, pid).await;
    let obs = connect(&cluster.socket_url()).await;
    let user: String = obs
        .query_one(
            "SELECT usename::text FROM pg_stat_activity WHERE pid = $1",
            &[&pid],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(user, CERT_USER);
}

#[tokio::test]
async fn an_abandoned_wait_is_cancelled_over_tls() {
    let (cluster, _) = server();
    let a = alias("tls-cancel", &tls_url("sslmode=require")).unwrap();
    let key = unique_key();
    let (_holder, _) = advisory_holder(&cluster.socket_url(), "tls-cancel-holder", key).await;
    // A caller's own client (a pglock connection used as one): the wait runs on
    // it, and only a cancel request (over TLS, as the session is) ends it.
    let conn = connection_for(a).await.unwrap();
    let pid = conn.backend_pid();
    let wait = advisory(key).wait_forever().using(a);
    let abandoned = tokio::time::timeout(Duration::from_millis(300), wait.acquire_on(&conn)).await;
    assert!(abandoned.is_err(), "the wait was still going");
    let obs = connect(&cluster.socket_url()).await;
    let mut waiting = true;
    for _ in 0..100 {
        let n: i64 = obs
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE pid = $1 AND NOT granted",
                &[&pid],
            )
            .await
            .unwrap()
            .get(0);
        if n == 0 {
            waiting = false;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!waiting, "the server-side wait of {pid} was cancelled");
    assert!(
        !is_gone(&obs, pid).await,
        "the caller's session itself stays open"
    );
    assert_encrypted(a, pid).await;
}

#[tokio::test]
async fn prefer_warns_once_per_alias_when_the_server_has_no_tls() {
    // The plain shared cluster has `ssl = off`. Plaintext to this machine is
    // not worth a warning; to a host by another name (here one that, through
    // `hostaddr`, is this machine after all) it is.
    let (_guard, events) = capture_events();
    let plain = pglock_testkit::shared_cluster();
    let local = alias("plain-prefer-local", &plain.url()).unwrap();
    let _ = connection_for(local).await.unwrap();
    assert!(!events.text().contains("plaintext"), "{}", events.text());
    let a = alias(
        "plain-prefer",
        &format!(
            "postgres://postgres@db.invalid:{}/postgres?hostaddr=127.0.0.1",
            plain.port()
        ),
    )
    .unwrap();
    let first = connection_for(a).await.unwrap();
    let second = connection_for(a).await.unwrap();
    assert_ne!(first.backend_pid(), second.backend_pid(), "two sessions");
    let text = events.text();
    assert_eq!(
        text.matches("fell back to plaintext").count(),
        1,
        "one warning for the alias: {text}"
    );
    assert!(text.contains("WARN"), "{text}");
    // Asked for, plaintext is not warned about; asked against, it is refused.
    let quiet = alias(
        "plain-disable",
        &format!("{}?sslmode=disable", pglock_testkit::shared_cluster().url()),
    )
    .unwrap();
    let _ = connection_for(quiet).await.unwrap();
    assert_eq!(events.text().matches("fell back to plaintext").count(), 1);
    let strict = alias(
        "plain-require",
        &format!("{}?sslmode=require", pglock_testkit::shared_cluster().url()),
    )
    .unwrap();
    let e = within(20, "require on plain", use_alias(strict))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("does not offer TLS"), "{e}");
}

#[test]
fn sessions_keep_a_dead_peer_from_going_unnoticed_for_hours() {
    // Socket settings the URL did not give get pglock's defaults; given ones stay.
    let config = Config::from_url("postgres://localhost/app").unwrap();
    let pg = config.pg_config();
    assert_eq!(pg.get_tcp_user_timeout(), Some(&Duration::from_secs(30)));
    assert_eq!(pg.get_keepalives_idle(), Duration::from_secs(15));
    assert_eq!(pg.get_keepalives_interval(), Some(Duration::from_secs(5)));
    assert_eq!(pg.get_keepalives_retries(), Some(3));
    let config =
        Config::from_url("postgres://localhost/app?tcp_user_timeout=90&keepalives_idle=60")
            .unwrap();
    assert_eq!(
        config.pg_config().get_tcp_user_timeout(),
        Some(&Duration::from_secs(90))
    );
    assert_eq!(
        config.pg_config().get_keepalives_idle(),
        Duration::from_secs(60)
    );
}

#[test]
fn sessions_are_named_after_the_program_unless_told() {
    let config = Config::from_url("postgres://localhost/app").unwrap();
    let name = config
        .pg_config()
        .get_application_name()
        .unwrap()
        .to_owned();
    let exe = std::env::current_exe().unwrap();
    assert_eq!(name, exe.file_name().unwrap().to_string_lossy());
    let config = Config::from_url("postgres://localhost/app?application_name=mine").unwrap();
    assert_eq!(config.pg_config().get_application_name(), Some("mine"));
}
