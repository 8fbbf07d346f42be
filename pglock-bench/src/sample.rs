//! Timing: operations as boxed futures, sampled interleaved, summarised as
//! median and 90th percentile.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Median and 90th percentile of samples, in µs.
pub(crate) fn median_p90(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort_unstable();
    let m = v[v.len() / 2];
    let p = v[(v.len() * 9 / 10).min(v.len() - 1)];
    (micros(m), micros(p))
}

pub(crate) type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
/// One operation; `Some(d)` when it times itself (only part of what it does is
/// the measured operation), `None` to be timed whole.
pub(crate) type Op<'a> = Box<dyn FnMut() -> BoxFut<'a, Option<Duration>> + Send + 'a>;

/// Samples every operation `n` times, interleaved (one of each per iteration).
pub(crate) async fn interleaved(n: usize, ops: &mut [(&'static str, Op<'_>)]) -> Vec<(f64, f64)> {
    let mut samples: Vec<Vec<Duration>> = ops.iter().map(|_| Vec::with_capacity(n)).collect();
    for i in 0..n + (n / 10).max(3) {
        for (j, (_, op)) in ops.iter_mut().enumerate() {
            let t = Instant::now();
            let d = op().await.unwrap_or_else(|| t.elapsed());
            if i >= (n / 10).max(3) {
                samples[j].push(d);
            }
        }
    }
    samples.into_iter().map(median_p90).collect()
}
