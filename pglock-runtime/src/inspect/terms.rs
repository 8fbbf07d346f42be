//! The terms on record, for operators: who leads each election, and the last
//! fencing token of each fenced lock.

use std::borrow::Cow;

use crate::error::Error;
use crate::lock::terms;
use crate::pool::registry::DEFAULT_ALIAS;
use crate::term::Term;

/// The terms recorded on the `"default"` alias; see [`Terms`].
///
/// ```no_run
/// # async fn f() -> Result<(), pglock_runtime::Error> {
/// for t in pglock_runtime::terms().list().await? {
///     println!("{t}");
/// }
/// # Ok(()) }
/// ```
pub fn terms() -> Terms {
    Terms::new()
}

/// Which terms to read: every name's, or one. Reads never create pglock's
/// schema: where it does not exist, no term was granted, and the list is empty.
#[derive(Debug, Clone)]
#[must_use]
pub struct Terms {
    alias: Cow<'static, str>,
    name: Option<String>,
}

impl Default for Terms {
    fn default() -> Terms {
        Terms::new()
    }
}

impl Terms {
    /// Every name's terms on `"default"`.
    pub fn new() -> Terms {
        Terms {
            alias: Cow::Borrowed(DEFAULT_ALIAS),
            name: None,
        }
    }

    /// Reads through a registered alias instead of `"default"` (and its
    /// [`Config::schema`](crate::Config::schema)).
    pub fn using(mut self, alias: impl Into<Cow<'static, str>>) -> Terms {
        self.alias = alias.into();
        self
    }

    /// Only this election's (or fenced lock's) name.
    pub fn name(mut self, name: impl Into<String>) -> Terms {
        self.name = Some(name.into());
        self
    }

    /// The last term of each name, by name, with whether its session still
    /// holds the lock.
    ///
    /// # Errors
    ///
    /// Checkout and database errors ([`ErrorKind::Permission`](crate::ErrorKind::Permission)
    /// when the role may not read pglock's schema).
    pub async fn list(&self) -> Result<Vec<Term>, Error> {
        terms::on_record(&self.alias, self.name.as_deref()).await
    }

    /// The current leader of the [`name`](Terms::name)d election (or holder of
    /// the fenced lock): its last term, if that term's session still holds the
    /// lock. Without a name, the first such term of any name.
    ///
    /// # Errors
    ///
    /// As [`list`](Terms::list).
    pub async fn current(&self) -> Result<Option<Term>, Error> {
        Ok(self.list().await?.into_iter().find(|t| t.holding))
    }
}
