//! The `pglock` command against a TLS-only server (certificates made at test
//! time): it honours the URL's `sslmode` and `sslrootcert` as the library does,
//! and says what is wrong with a certificate that does not verify.

use pglock_testkit::{within, Cluster};

fn pglock(url: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pglock"))
        .args(args)
        .env("DATABASE_URL", url)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("pglock runs")
}

#[tokio::test]
async fn the_cli_reaches_a_tls_only_server_with_the_urls_sslmode() {
    let (cluster, certs) = Cluster::start_tls().expect("a TLS cluster starts");
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        cluster.url(),
        certs.ca().display()
    );
    let ok = within(30, "pglock locks", async {
        pglock(&url, &["locks", "--json"])
    })
    .await;
    assert!(
        ok.status.success(),
        "verify-full with the right CA: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let plain = pglock(&format!("{}?sslmode=disable", cluster.url()), &["locks"]);
    assert!(
        !plain.status.success(),
        "plaintext is refused by the server"
    );
    let wrong = pglock(
        &format!(
            "{}?sslmode=verify-full&sslrootcert={}",
            cluster.url(),
            certs.wrong_ca().display()
        ),
        &["locks"],
    );
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(!wrong.status.success());
    assert!(
        stderr.contains("not signed by a CA in `sslrootcert`"),
        "the CLI says why: {stderr}"
    );
}
