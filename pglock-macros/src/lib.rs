//! Attribute macros of pglock. Depend on [`pglock-runtime`], which re-exports
//! them; this crate is an implementation detail.
//!
//! [`pglock-runtime`]: https://docs.rs/pglock-runtime

mod attr;
mod ctxt;
mod duration;
mod expand;
mod valid;

use proc_macro::TokenStream;

/// Runs the function while holding a PostgreSQL advisory lock.
///
/// The lock is taken on the function's *scope connection* (checked out of the
/// alias's pool when the call starts, returned clean when it ends), which
/// `pglock_runtime::connection()` hands out inside the body.
///
/// | argument | meaning | default |
/// |---|---|---|
/// | `key = <expr>` | any expression convertible to a lock key (`42`, `"nightly"`, `("invoice", id)`, a `LockKey`); evaluated per call, may use the parameters | `concat!(module_path!(), "::", <fn name>)`, hashed |
/// | `shared` | shared mode | exclusive |
/// | `xact` | transaction level: the body runs in a transaction, committed when it succeeds, rolled back on error, `?` or panic | session level |
/// | `timeout = 0` | do not wait | wait without limit (or as a surrounding `#[lock_timeout]` says) |
/// | `timeout = 1.5` / `"250ms"` / `"2s"` / `"1m"` | wait at most this long, measured by the server | |
/// | `timeout = none` | wait without limit, whatever `lock_timeout` says | |
/// | `on_fail = raise` | return the error (`Result<_, E>` with `E: From<pglock_runtime::Error>`) | `raise` |
/// | `on_fail = skip` | don't run the body; return the type's [`Skipped`] value (`()`, `None`, `Ok(None)`, …); a `tracing` event says why (busy: debug, errors: warn) | |
/// | `on_lost = cancel` | drop the body if the lock is found lost while it runs (async only); the call fails with `ErrorKind::LockLost` | `report` (keep running, log at once, fail at the end) |
/// | `using = "alias"` | registry alias | `"default"` |
/// | `hash = django_pglock \| django_pglocks \| django_pglocks_v1 \| postgres_lock \| sqlx` | how string keys are hashed | `django_pglock` |
/// | `crate = "path"` | path of a renamed `pglock-runtime` dependency | `pglock_runtime` |
///
/// [`Skipped`]: https://docs.rs/pglock-runtime/latest/pglock_runtime/trait.Skipped.html
///
/// ```no_run
/// use pglock_runtime::advisory_lock;
///
/// // Runs once per tick across the fleet; the other instances skip.
/// #[advisory_lock(timeout = 0, on_fail = skip)]
/// async fn send_reminders() {
///     // ...
/// }
///
/// #[advisory_lock(key = ("invoice", invoice_id), timeout = "2s")]
/// async fn send_invoice(invoice_id: i64) -> Result<(), pglock_runtime::Error> {
///     let db = pglock_runtime::connection().await?; // the session holding the lock
///     db.execute("UPDATE invoices SET sent = true WHERE id = $1", &[&invoice_id]).await?;
///     Ok(())
/// }
/// ```
///
/// Equivalent code without the attribute (for `send_invoice`):
///
/// ```no_run
/// # async fn f(invoice_id: i64) -> Result<(), pglock_runtime::Error> {
/// use std::time::Duration;
///
/// pglock_runtime::advisory(("invoice", invoice_id))
///     .timeout(Duration::from_secs(2))
///     .run(async {
///         let db = pglock_runtime::connection().await?;
///         db.execute("UPDATE invoices SET sent = true WHERE id = $1", &[&invoice_id]).await?;
///         Ok::<_, pglock_runtime::Error>(())
///     })
///     .await?
/// # }
/// ```
///
/// Plain (non-`async`) functions work too, from any thread, inside a tokio runtime or
/// not. Stacked with `#[lock_timeout]` and `#[prioritize]`, in any order, all three
/// act on the same connection, and both of those also cover the acquisition.
#[proc_macro_attribute]
pub fn advisory_lock(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::advisory_lock(args.into(), item.into()).into()
}

/// Sets PostgreSQL's `lock_timeout` on the scope connection while the function
/// runs, and restores the previous value on every exit path.
///
/// | argument | meaning | default |
/// |---|---|---|
/// | first argument | the limit: seconds (`5`, `0.5`), a string (`"250ms"`, `"5s"`, `"1m"`), or `none` for no limit; zero is an error | required |
/// | `using = "alias"` | registry alias | `"default"` |
/// | `crate = "path"` | path of a renamed `pglock-runtime` dependency | `pglock_runtime` |
///
/// Every lock wait of the body's statements on the scope connection gives up after
/// the limit with SQLSTATE 55P03 (`ErrorKind::LockTimeout`). Inside a transaction
/// it behaves like `SET LOCAL`. The function must return `Result<_, E>` with
/// `E: From<pglock_runtime::Error>`.
///
/// ```no_run
/// use pglock_runtime::{advisory_lock, lock_timeout};
///
/// #[lock_timeout("5s")]
/// #[advisory_lock]
/// async fn migrate() -> Result<(), pglock_runtime::Error> {
///     let db = pglock_runtime::connection().await?;
///     db.batch_execute("ALTER TABLE big ADD COLUMN c int").await?;
///     Ok(())
/// }
/// ```
///
/// Equivalent code without the attribute (for the `#[lock_timeout]` part):
///
/// ```no_run
/// # async fn f() -> Result<(), pglock_runtime::Error> {
/// use std::time::Duration;
///
/// pglock_runtime::lock_timeout(Duration::from_secs(5))
///     .scope(async {
///         let db = pglock_runtime::connection().await?;
///         db.batch_execute("ALTER TABLE big ADD COLUMN c int").await?;
///         Ok::<_, pglock_runtime::Error>(())
///     })
///     .await?
/// # }
/// ```
#[proc_macro_attribute]
pub fn lock_timeout(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::lock_timeout(args.into(), item.into()).into()
}

/// Keeps the function from waiting behind other sessions: while it runs, a watchdog
/// on a separate connection terminates (or cancels) the sessions blocking its scope
/// connection, advisory-lock waits included.
///
/// | argument | meaning | default |
/// |---|---|---|
/// | `interval = "1s"` | how often the watchdog looks | 1 s |
/// | `periodic = false` | act once, one interval after the start | `true` |
/// | `action = terminate \| cancel` | `pg_terminate_backend` or `pg_cancel_backend` | `terminate` |
/// | `min_blocker_age = "5s"` | spare younger blockers | none |
/// | `max_kills = 3` | at most this many per tick, oldest first | no cap |
/// | `dry_run` | report, signal nobody | off |
/// | `timeout = "10s"` | a backup `lock_timeout` for the body; shorter than `interval` is an error | none |
/// | `using = "alias"` | registry alias (the watchdog connects through it too) | `"default"` |
/// | `crate = "path"` | path of a renamed `pglock-runtime` dependency | `pglock_runtime` |
///
/// The watchdog never signals sessions of this process or non-client backends,
/// and only direct blockers. Every action is a `tracing` event (target
/// `pglock::prioritize`); a watchdog failure (for example, permission denied) is
/// returned when the function ends. The function must return `Result<_, E>` with
/// `E: From<pglock_runtime::Error>`.
///
/// ```no_run
/// use pglock_runtime::{lock_timeout, prioritize};
///
/// #[prioritize(interval = "1s", min_blocker_age = "5s")]
/// #[lock_timeout("30s")]
/// async fn migrate() -> Result<(), pglock_runtime::Error> {
///     let db = pglock_runtime::connection().await?;
///     db.batch_execute("ALTER TABLE big ADD COLUMN c int").await?;
///     Ok(())
/// }
/// ```
///
/// Equivalent code without the attribute (for the `#[prioritize]` part):
///
/// ```no_run
/// # async fn f() -> Result<(), pglock_runtime::Error> {
/// use std::time::Duration;
///
/// let done = pglock_runtime::Prioritize::new()
///     .interval(Duration::from_secs(1))
///     .min_blocker_age(Duration::from_secs(5))
///     .run(async {
///         let db = pglock_runtime::connection().await?;
///         db.batch_execute("ALTER TABLE big ADD COLUMN c int").await?;
///         Ok::<_, pglock_runtime::Error>(())
///     })
///     .await?;
/// done.output
/// # }
/// ```
#[proc_macro_attribute]
pub fn prioritize(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::prioritize(args.into(), item.into()).into()
}
