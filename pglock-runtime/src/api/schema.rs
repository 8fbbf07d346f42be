//! pglock's own schema as SQL, for administrators.

/// The SQL that creates pglock's own schema `name` (the record of scheduled runs
/// and lock names) at the version this release writes, as one idempotent
/// transaction. pglock runs the same statements itself on first use; a role
/// without `CREATE` on the database gets an error that prints this script, for an
/// administrator to run. With `role`, the script also grants that role what
/// pglock needs. `pglock schema` prints it.
///
/// ```
/// let sql = pglock_runtime::schema_sql("pglock", Some("app"));
/// assert!(sql.contains("CREATE SCHEMA IF NOT EXISTS \"pglock\""));
/// assert!(sql.contains("GRANT USAGE ON SCHEMA \"pglock\" TO \"app\""));
/// ```
pub fn schema_sql(name: &str, role: Option<&str>) -> String {
    crate::sql::schema_script(name, role)
}
