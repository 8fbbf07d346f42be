//! What an annotated function returns when acquiring fails.

use crate::error::Error;

/// The return types of functions annotated with `on_fail = raise` (the default),
/// `#[lock_timeout]` or `#[prioritize]`: a failure to acquire becomes the function's
/// error, and an error result rolls back an `xact` transaction.
///
/// Implemented for `Result<T, E>` where `E: From<pglock_runtime::Error>`.
///
/// ```
/// use pglock_runtime::{Error, Raise};
///
/// #[derive(Debug)]
/// enum JobError { Lock(Error), Io(std::io::Error) }
/// impl From<Error> for JobError {
///     fn from(e: Error) -> Self { JobError::Lock(e) }
/// }
///
/// fn assert_raise<R: Raise>() {}
/// assert_raise::<Result<u32, JobError>>();
/// ```
#[diagnostic::on_unimplemented(
    message = "`on_fail = raise` needs a function returning `Result<_, E>` where `E: From<pglock_runtime::Error>`; `{Self}` is not",
    label = "a failure to acquire the lock has nowhere to go in this return type",
    note = "return a `Result` whose error type implements `From<pglock_runtime::Error>`, or use `on_fail = skip` to skip the body instead"
)]
pub trait Raise: Sized {
    /// The value to return when the lock could not be acquired (or released).
    fn from_error(e: Error) -> Self;

    /// Whether this value is a failure (rolls back an `xact` transaction).
    fn is_failure(&self) -> bool;
}

impl<T, E: From<Error>> Raise for Result<T, E> {
    fn from_error(e: Error) -> Self {
        Err(E::from(e))
    }

    fn is_failure(&self) -> bool {
        self.is_err()
    }
}

/// The value a function annotated with `on_fail = skip` returns when it skips its
/// body because the lock could not be acquired.
///
/// Implemented for `()`, `bool` (`false`), `Option<T>` (`None`) and `Result<T, E>`
/// where `T: Skipped` (`Ok(T::skipped())`, so `Ok(None)`, `Ok(())`). Implement it
/// for your own types:
///
/// ```
/// use pglock_runtime::Skipped;
///
/// enum Run { Done(u32), Skipped }
///
/// impl Skipped for Run {
///     fn skipped() -> Self { Run::Skipped }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`on_fail = skip` needs a return type with a \"skipped\" value; `{Self}` has none",
    label = "no `pglock_runtime::Skipped` value for this type",
    note = "return `()`, `bool`, `Option<_>` or `Result<Option<_>, _>`, or implement `pglock_runtime::Skipped` for `{Self}`"
)]
pub trait Skipped: Sized {
    /// The value returned instead of running the body.
    fn skipped() -> Self;

    /// Whether a value the body returned is a failure (rolls back an `xact`
    /// transaction). `false` unless overridden; `true` for `Err` results.
    fn is_failure(&self) -> bool {
        false
    }
}

impl Skipped for () {
    fn skipped() -> Self {}
}

impl Skipped for bool {
    fn skipped() -> Self {
        false
    }
}

impl<T> Skipped for Option<T> {
    fn skipped() -> Self {
        None
    }
}

impl<T: Skipped, E> Skipped for Result<T, E> {
    fn skipped() -> Self {
        Ok(T::skipped())
    }

    fn is_failure(&self) -> bool {
        self.is_err()
    }
}
