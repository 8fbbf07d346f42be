//! Running pglock's statements on one of its own sessions (prepared once per
//! session) or on a caller's client (one round trip with typed parameters), and
//! binding lock keys as parameters.

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row, SimpleQueryMessage, SimpleQueryRow};

use crate::error::{Error, ErrorKind};
use crate::key::LockKey;
use crate::wire::session::Session;

/// Where statements run.
#[derive(Clone, Copy)]
pub(crate) struct Exec<'a> {
    pub(crate) client: &'a Client,
    session: Option<&'a Session>,
}

/// A bind parameter and its type.
pub(crate) type Param<'a> = (&'a (dyn ToSql + Sync), Type);

impl<'a> Exec<'a> {
    /// On one of pglock's sessions: a checkout (`Connection::exec`), or a
    /// session beyond its checkout (a pipelined release's check).
    pub(crate) fn on(session: &'a Session) -> Exec<'a> {
        Exec {
            client: &session.client,
            session: Some(session),
        }
    }

    /// On a caller's client, of which pglock knows nothing.
    pub(crate) fn borrowed(client: &'a Client) -> Exec<'a> {
        Exec {
            client,
            session: None,
        }
    }

    /// pglock's record of the session; `None` on a caller's client.
    pub(crate) fn session(&self) -> Option<&'a Session> {
        self.session
    }

    /// The server session the connection was opened on, when pglock knows it and
    /// it is stable (not behind a transaction pooler).
    pub(crate) fn session_pid(&self) -> Option<i32> {
        self.session.filter(|s| !s.behind_pooler()).map(|s| s.pid)
    }

    /// Whether the connection goes through a transaction pooler.
    pub(crate) fn behind_pooler(&self) -> bool {
        self.session.is_some_and(Session::behind_pooler)
    }

    /// What a session-level lock or setting is refused with behind a pooler
    /// (on a caller's client, of which pglock knows nothing, never called:
    /// [`behind_pooler`](Exec::behind_pooler) is false there).
    pub(crate) fn pooler_refusal(&self) -> Error {
        self.session
            .map_or_else(Error::pooler, Session::pooler_refusal)
    }

    /// Records that the connection goes through a transaction pooler.
    pub(crate) fn mark_behind_pooler(&self) {
        if let Some(s) = self.session {
            s.mark_behind_pooler();
        }
    }

    pub(crate) async fn query(
        &self,
        sql: &'static str,
        params: &[Param<'_>],
    ) -> Result<Vec<Row>, Error> {
        match self.session {
            Some(session) if session.prepares() => {
                let stmt = session.statement(sql).await?;
                let values: Vec<&(dyn ToSql + Sync)> = params.iter().map(|(v, _)| *v).collect();
                self.client.query(&stmt, &values).await.map_err(|e| {
                    if e.code()
                        == Some(&tokio_postgres::error::SqlState::INVALID_SQL_STATEMENT_NAME)
                    {
                        // pglock's own prepared statement is gone: the statement ran
                        // on another server session than the one it was prepared on.
                        session.mark_behind_pooler();
                        return Error::pooler().with_source(e);
                    }
                    Error::from_pg(e)
                })
            }
            _ => self
                .client
                .query_typed(sql, params)
                .await
                .map_err(Error::from_pg),
        }
    }

    pub(crate) async fn one(&self, sql: &'static str, params: &[Param<'_>]) -> Result<Row, Error> {
        self.query(sql, params)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| Error::new(ErrorKind::Database, format!("no row returned by `{sql}`")))
    }

    pub(crate) async fn batch(&self, sql: &str) -> Result<(), Error> {
        self.client.batch_execute(sql).await.map_err(Error::from_pg)
    }
}

/// The bind parameters of a key: one `int8`, or two `int4`.
pub(crate) struct KeyParams {
    int: i64,
    a: i32,
    b: i32,
    pair: bool,
}

impl KeyParams {
    pub(crate) fn new(key: LockKey) -> KeyParams {
        match key {
            LockKey::Int(k) => KeyParams {
                int: k,
                a: 0,
                b: 0,
                pair: false,
            },
            LockKey::Pair(a, b) => KeyParams {
                int: 0,
                a,
                b,
                pair: true,
            },
        }
    }

    /// 0 for a 64-bit key, 1 for a pair: the first index into the `sql` tables.
    pub(crate) fn kind(&self) -> usize {
        usize::from(self.pair)
    }

    /// [`with`](KeyParams::with), then `session_guard` (an `int4`) if given.
    pub(crate) fn with_guard<'a>(
        &'a self,
        extra: &[Param<'a>],
        session_guard: Option<&'a Option<i32>>,
    ) -> Vec<Param<'a>> {
        let mut v = self.with(extra);
        if let Some(g) = session_guard {
            v.push((g, Type::INT4));
        }
        v
    }

    /// The key's parameters followed by `extra`.
    pub(crate) fn with<'a>(&'a self, extra: &[Param<'a>]) -> Vec<Param<'a>> {
        let mut v: Vec<Param<'a>> = if self.pair {
            vec![(&self.a, Type::INT4), (&self.b, Type::INT4)]
        } else {
            vec![(&self.int, Type::INT8)]
        };
        v.extend_from_slice(extra);
        v
    }
}

/// The first row of a simple-query response (values as text), if any.
pub(crate) fn first_row(messages: &[SimpleQueryMessage]) -> Option<&SimpleQueryRow> {
    messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => Some(r),
        _ => None,
    })
}
