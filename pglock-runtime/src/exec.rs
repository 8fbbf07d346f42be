//! Running pglock's statements on a pooled connection (prepared once per
//! connection) or on a caller's client (one round trip with typed parameters).

use std::future::Future;
use std::pin::pin;
use std::task::Context;

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row};

use crate::connection::Connection;
use crate::error::Error;
use crate::key::LockKey;
use crate::registry::PgConn;

/// Where statements run.
#[derive(Clone, Copy)]
pub(crate) struct Exec<'a> {
    pub(crate) client: &'a Client,
    pg: Option<&'a PgConn>,
}

pub(crate) type Param<'a> = (&'a (dyn ToSql + Sync), Type);

impl<'a> Exec<'a> {
    pub(crate) fn pooled(conn: &'a Connection) -> Exec<'a> {
        Exec::on(conn.pg())
    }

    /// On a pooled session, beyond its checkout (a pipelined release's check).
    pub(crate) fn on(pg: &'a PgConn) -> Exec<'a> {
        Exec {
            client: &pg.client,
            pg: Some(pg),
        }
    }

    /// pglock's record of a pooled connection; `None` on a caller's client.
    pub(crate) fn pg(&self) -> Option<&'a PgConn> {
        self.pg
    }

    /// The server session the connection was opened on, when pglock knows it and
    /// it is stable (not behind a transaction pooler).
    pub(crate) fn session_pid(&self) -> Option<i32> {
        self.pg.filter(|pg| !pg.is_pooled()).map(|pg| pg.pid)
    }

    /// Whether the connection goes through a transaction pooler.
    pub(crate) fn is_pooled(&self) -> bool {
        self.pg.is_some_and(PgConn::is_pooled)
    }

    /// Records that the connection goes through a transaction pooler.
    pub(crate) fn mark_pooled(&self) {
        if let Some(pg) = self.pg {
            pg.mark_pooled();
        }
    }

    pub(crate) fn borrowed(client: &'a Client) -> Exec<'a> {
        Exec { client, pg: None }
    }

    pub(crate) async fn query(
        &self,
        sql: &'static str,
        params: &[Param<'_>],
    ) -> Result<Vec<Row>, Error> {
        match self.pg {
            Some(pg) if !pg.is_pooled() => {
                let stmt = pg.statement(sql).await?;
                let values: Vec<&(dyn ToSql + Sync)> = params.iter().map(|(v, _)| *v).collect();
                self.client.query(&stmt, &values).await.map_err(|e| {
                    if e.code()
                        == Some(&tokio_postgres::error::SqlState::INVALID_SQL_STATEMENT_NAME)
                    {
                        // pglock's own prepared statement is gone: the statement ran
                        // on another server session than the one it was prepared on.
                        pg.mark_pooled();
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
            .ok_or_else(|| {
                Error::new(
                    crate::ErrorKind::Database,
                    format!("no row returned by `{sql}`"),
                )
            })
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

/// Puts the request of a tokio-postgres future on the wire now, without waiting for
/// its response. tokio-postgres sends a simple query during the first poll and
/// discards responses nobody waits for, so the statement still runs, in order with
/// everything else sent on that connection. For backstops in `Drop`.
pub(crate) fn send_now<F: Future>(fut: F) {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
    let _ = fut.as_mut().poll(&mut cx);
}
