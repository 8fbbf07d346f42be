//! pglock's metrics in Prometheus's text format: a recorder installed by the
//! application (here `metrics-exporter-prometheus`, without its HTTP
//! listener), a few locks taken, skipped and timed out, and the page a scrape
//! would get.
//!
//! ```sh
//! cargo run -p pglock-examples --example metrics
//! ```

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use pglock_runtime::{advisory, advisory_lock, Error};

#[path = "common.rs"]
mod common;

#[advisory_lock(key = "billing::send_invoices", timeout = 0, on_fail = skip)]
async fn send_invoices() -> Result<(), Error> {
    tokio::time::sleep(Duration::from_millis(20)).await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let prometheus = PrometheusBuilder::new().install_recorder()?;
    common::connect()?;
    // Three runs, one at a time.
    for _ in 0..3 {
        send_invoices().await?;
    }
    // One held by a guard while another call finds it busy (and skips), and a
    // bounded wait gives up.
    let guard = advisory("billing::send_invoices").acquire().await?;
    send_invoices().await?;
    let waited = advisory("billing::send_invoices")
        .timeout(Duration::from_millis(100))
        .run(async {})
        .await;
    println!("bounded wait: {}", waited.unwrap_err());
    guard.release().await?;
    println!("\n{}", prometheus.render());
    pglock_runtime::shutdown(Duration::from_secs(1)).await;
    Ok(())
}
