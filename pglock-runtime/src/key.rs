//! Advisory lock keys and the string hashes that interoperate with other libraries.

use std::borrow::Cow;
use std::fmt;

use sha2::Digest;

/// An advisory lock key, as PostgreSQL knows it.
///
/// PostgreSQL has two separate key spaces: one 64-bit integer, or two 32-bit
/// integers. `LockKey::Int(1)` and `LockKey::Pair(0, 1)` are different locks.
/// Strings are hashed to a 64-bit key by a [`KeyHash`] algorithm.
///
/// ```
/// use pglock_runtime::{KeyHash, LockKey};
///
/// assert_eq!(LockKey::from(42_i64), LockKey::Int(42));
/// assert_eq!(LockKey::from((1, 2)), LockKey::Pair(1, 2));
/// // The default string hash is django-pglock's, so Python and Rust agree.
/// assert_eq!(LockKey::string("hello"), LockKey::Int(1054880662928880172));
/// assert_eq!(
///     LockKey::hashed("hello", KeyHash::Sqlx),
///     LockKey::Int(5976985304735029827)
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LockKey {
    /// A single 64-bit key (`pg_advisory_lock(bigint)`).
    Int(i64),
    /// A two-part key (`pg_advisory_lock(int, int)`), a separate key space.
    Pair(i32, i32),
}

impl LockKey {
    /// Hashes a string with the default algorithm, [`KeyHash::DjangoPglock`].
    pub fn string(s: &str) -> LockKey {
        LockKey::hashed(s, KeyHash::default())
    }

    /// Hashes a string with the given algorithm.
    pub fn hashed(s: &str, hash: KeyHash) -> LockKey {
        LockKey::Int(hash.hash(s))
    }

    /// The `(classid, objid, objsubid)` columns of this key's row in `pg_locks`.
    ///
    /// ```
    /// use pglock_runtime::LockKey;
    ///
    /// assert_eq!(LockKey::Int(-1).pg_locks_ids(), (u32::MAX, u32::MAX, 1));
    /// assert_eq!(LockKey::Pair(-1, 2).pg_locks_ids(), (u32::MAX, 2, 2));
    /// ```
    pub fn pg_locks_ids(self) -> (u32, u32, i16) {
        match self {
            LockKey::Int(k) => ((k >> 32) as u32, k as u32, 1),
            LockKey::Pair(a, b) => (a as u32, b as u32, 2),
        }
    }

    /// Decodes a `pg_locks` advisory row back into a key; `None` when `objsubid` is
    /// neither 1 nor 2.
    ///
    /// ```
    /// use pglock_runtime::LockKey;
    ///
    /// let key = LockKey::Int(-1292339565357005894);
    /// let (c, o, s) = key.pg_locks_ids();
    /// assert_eq!(LockKey::from_pg_locks(c, o, s), Some(key));
    /// ```
    pub fn from_pg_locks(classid: u32, objid: u32, objsubid: i16) -> Option<LockKey> {
        match objsubid {
            1 => Some(LockKey::Int(
                ((u64::from(classid) << 32) | u64::from(objid)) as i64,
            )),
            2 => Some(LockKey::Pair(classid as i32, objid as i32)),
            _ => None,
        }
    }
}

impl fmt::Display for LockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockKey::Int(k) => write!(f, "{k}"),
            LockKey::Pair(a, b) => write!(f, "({a}, {b})"),
        }
    }
}

impl From<i64> for LockKey {
    fn from(k: i64) -> LockKey {
        LockKey::Int(k)
    }
}

impl From<(i32, i32)> for LockKey {
    fn from((a, b): (i32, i32)) -> LockKey {
        LockKey::Pair(a, b)
    }
}

/// How a string key is turned into a 64-bit advisory key.
///
/// Pick the algorithm of the other programs that take the same locks, so that a
/// Rust process and a Python one naming `"nightly"` exclude each other.
///
/// ```
/// use pglock_runtime::KeyHash;
///
/// assert_eq!(KeyHash::DjangoPglock.hash("test"), 7313085519096743583);
/// assert_eq!(KeyHash::DjangoPglocks.hash("test"), -6951639720043709083);
/// assert_eq!(KeyHash::DjangoPglocksV1.hash("test"), -662733300);
/// assert_eq!(KeyHash::PostgresLock.hash("test"), 966482230667555116);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum KeyHash {
    /// django-pglock: the first 8 bytes of SHA-256, little-endian, signed.
    #[default]
    DjangoPglock,
    /// django-pglocks 2.x: the first 8 bytes of SHA-256, big-endian, signed.
    DjangoPglocks,
    /// django-pglocks 1.x: CRC-32 as a signed 32-bit integer, used as a 64-bit key.
    DjangoPglocksV1,
    /// postgres-lock: the first 18 decimal digits of SHA-1 read as an integer.
    PostgresLock,
    /// sqlx's `PgAdvisoryLock`: HKDF-SHA256 with info
    /// `"SQLx (Rust) Postgres advisory lock"`, 8 bytes little-endian.
    Sqlx,
}

impl KeyHash {
    /// Hashes `s` (its UTF-8 bytes) to a 64-bit key.
    pub fn hash(self, s: &str) -> i64 {
        let bytes = s.as_bytes();
        match self {
            KeyHash::DjangoPglock => {
                let d = sha2::Sha256::digest(bytes);
                i64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
            }
            KeyHash::DjangoPglocks => {
                let d = sha2::Sha256::digest(bytes);
                i64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
            }
            KeyHash::DjangoPglocksV1 => i64::from(crc32fast::hash(bytes) as i32),
            KeyHash::PostgresLock => {
                let d = sha1::Sha1::digest(bytes);
                let digits = decimal_digits(&d);
                digits[..digits.len().min(18)]
                    .parse()
                    .expect("at most 18 decimal digits fit an i64")
            }
            KeyHash::Sqlx => {
                let mut okm = [0u8; 8];
                hkdf::Hkdf::<sha2::Sha256>::new(None, bytes)
                    .expand(b"SQLx (Rust) Postgres advisory lock", &mut okm)
                    .expect("8 bytes is a valid HKDF output length");
                i64::from_le_bytes(okm)
            }
        }
    }

    /// The name used in attribute arguments (`hash = django_pglock`).
    pub fn name(self) -> &'static str {
        match self {
            KeyHash::DjangoPglock => "django_pglock",
            KeyHash::DjangoPglocks => "django_pglocks",
            KeyHash::DjangoPglocksV1 => "django_pglocks_v1",
            KeyHash::PostgresLock => "postgres_lock",
            KeyHash::Sqlx => "sqlx",
        }
    }
}

/// The decimal representation of a big-endian unsigned integer.
fn decimal_digits(be: &[u8]) -> String {
    let mut n: Vec<u8> = be.to_vec();
    let mut digits = Vec::new();
    while n.iter().any(|&b| b != 0) {
        let mut rem = 0u32;
        for b in n.iter_mut() {
            let cur = (rem << 8) | u32::from(*b);
            *b = (cur / 10) as u8;
            rem = cur % 10;
        }
        digits.push(b'0' + rem as u8);
    }
    if digits.is_empty() {
        digits.push(b'0');
    }
    digits.reverse();
    String::from_utf8(digits).expect("ASCII digits")
}

/// Anything that names an advisory lock: integers, two-int tuples, strings, and
/// `(prefix, id)` pairs such as `("invoice", 42)`.
///
/// Strings are hashed with the [`KeyHash`] passed in; integer keys ignore it.
/// A `(prefix, value)` pair hashes the string `"{prefix}:{value}"`.
///
/// ```
/// use pglock_runtime::{KeyHash, LockKey, ToLockKey};
///
/// let h = KeyHash::default();
/// assert_eq!(42_i64.to_lock_key(h), LockKey::Int(42));
/// assert_eq!("nightly".to_lock_key(h), LockKey::string("nightly"));
/// assert_eq!(("invoice", 7).to_lock_key(h), LockKey::string("invoice:7"));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be used as an advisory lock key",
    label = "not convertible to a lock key",
    note = "keys are integers (`i64`, `u64`, …), `(i32, i32)`, strings, `(\"prefix\", part)` pairs \
            such as `(\"user\", id)`, or a `LockKey`; or implement `pglock_runtime::ToLockKey` for \
            `{Self}`"
)]
pub trait ToLockKey {
    /// Converts to a key, hashing strings with `hash`.
    fn to_lock_key(&self, hash: KeyHash) -> LockKey;

    /// The key and, for a key made from a string, that string: the lock's name,
    /// which pglock records so that operators read `billing::send_invoices`
    /// rather than a 64-bit number. The default has no name.
    ///
    /// ```
    /// use pglock_runtime::{KeyHash, LockKey, ToLockKey};
    ///
    /// let (key, name) = ("invoice", 7).to_named_key(KeyHash::default());
    /// assert_eq!((key, name.as_deref()), (LockKey::string("invoice:7"), Some("invoice:7")));
    /// assert_eq!(42_i64.to_named_key(KeyHash::default()).1, None);
    /// ```
    fn to_named_key(&self, hash: KeyHash) -> (LockKey, Option<Cow<'_, str>>) {
        (self.to_lock_key(hash), None)
    }
}

impl ToLockKey for LockKey {
    fn to_lock_key(&self, _: KeyHash) -> LockKey {
        *self
    }
}

macro_rules! int_keys {
    ($($t:ty),*) => {$(
        impl ToLockKey for $t {
            fn to_lock_key(&self, _: KeyHash) -> LockKey {
                LockKey::Int(i64::from(*self))
            }
        }
    )*};
}
int_keys!(i64, i32, i16, u32, u16, u8, i8);

/// A `u64` is its bits as PostgreSQL's signed 64-bit key (two's complement):
/// every `u64` gets a key of its own, up to `i64::MAX` the same number; above it,
/// the negative `i64` with the same bits (`u64::MAX` is `-1`).
///
/// ```
/// use pglock_runtime::{KeyHash, LockKey, ToLockKey};
///
/// assert_eq!(7_u64.to_lock_key(KeyHash::default()), LockKey::Int(7));
/// assert_eq!(u64::MAX.to_lock_key(KeyHash::default()), LockKey::Int(-1));
/// ```
impl ToLockKey for u64 {
    fn to_lock_key(&self, _: KeyHash) -> LockKey {
        LockKey::Int(i64::from_ne_bytes(self.to_ne_bytes()))
    }
}

/// As `u64`.
impl ToLockKey for usize {
    fn to_lock_key(&self, hash: KeyHash) -> LockKey {
        u64::try_from(*self).unwrap_or(u64::MAX).to_lock_key(hash)
    }
}

impl ToLockKey for (i32, i32) {
    fn to_lock_key(&self, _: KeyHash) -> LockKey {
        LockKey::Pair(self.0, self.1)
    }
}

impl ToLockKey for str {
    fn to_lock_key(&self, hash: KeyHash) -> LockKey {
        LockKey::hashed(self, hash)
    }

    fn to_named_key(&self, hash: KeyHash) -> (LockKey, Option<Cow<'_, str>>) {
        (LockKey::hashed(self, hash), Some(Cow::Borrowed(self)))
    }
}

impl ToLockKey for String {
    fn to_lock_key(&self, hash: KeyHash) -> LockKey {
        LockKey::hashed(self, hash)
    }

    fn to_named_key(&self, hash: KeyHash) -> (LockKey, Option<Cow<'_, str>>) {
        self.as_str().to_named_key(hash)
    }
}

/// `"{prefix}:{value}"`, named by the same string.
fn prefixed(
    prefix: &str,
    part: &dyn KeyPart,
    hash: KeyHash,
) -> (LockKey, Option<Cow<'static, str>>) {
    let mut name = format!("{prefix}:");
    // Writing into a `String` cannot fail.
    let _ = part.write_part(&mut name);
    (LockKey::hashed(&name, hash), Some(Cow::Owned(name)))
}

/// The second part of a `("prefix", part)` key: written into the string
/// `"prefix:part"` that is hashed. Integers, strings, `char` and `bool` are
/// parts; floats are not (`0.1 + 0.2` and `0.3` would name different locks).
/// Implement it for an id type of your own by writing the id exactly.
///
/// ```
/// use std::fmt;
/// use pglock_runtime::{advisory, KeyPart};
///
/// struct UserId(u64);
///
/// impl KeyPart for UserId {
///     fn write_part(&self, out: &mut dyn fmt::Write) -> fmt::Result {
///         write!(out, "{}", self.0)
///     }
/// }
///
/// let lock = advisory(("user", UserId(7)));
/// assert_eq!(lock.key(), advisory("user:7").key());
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be part of a lock key",
    label = "not a key part",
    note = "key parts are integers, strings, `char` and `bool` (not floats: equal-looking values \
            would name different locks); implement `pglock_runtime::KeyPart` for `{Self}` to \
            write an id type of your own"
)]
pub trait KeyPart {
    /// Writes the part as it appears in the hashed string.
    ///
    /// # Errors
    ///
    /// Only the writer's.
    fn write_part(&self, out: &mut dyn fmt::Write) -> fmt::Result;
}

macro_rules! display_parts {
    ($($t:ty),*) => {$(
        impl KeyPart for $t {
            fn write_part(&self, out: &mut dyn fmt::Write) -> fmt::Result {
                write!(out, "{self}")
            }
        }
    )*};
}
display_parts!(
    i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize, char, bool, str, String
);

impl<T: KeyPart + ?Sized> KeyPart for &T {
    fn write_part(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        (**self).write_part(out)
    }
}

impl<T: KeyPart> ToLockKey for (&str, T) {
    fn to_lock_key(&self, hash: KeyHash) -> LockKey {
        self.to_named_key(hash).0
    }

    fn to_named_key(&self, hash: KeyHash) -> (LockKey, Option<Cow<'_, str>>) {
        prefixed(self.0, &self.1, hash)
    }
}

impl<T: KeyPart> ToLockKey for (String, T) {
    fn to_lock_key(&self, hash: KeyHash) -> LockKey {
        self.to_named_key(hash).0
    }

    fn to_named_key(&self, hash: KeyHash) -> (LockKey, Option<Cow<'_, str>>) {
        prefixed(&self.0, &self.1, hash)
    }
}

impl<T: ToLockKey + ?Sized> ToLockKey for &T {
    fn to_lock_key(&self, hash: KeyHash) -> LockKey {
        (**self).to_lock_key(hash)
    }

    fn to_named_key(&self, hash: KeyHash) -> (LockKey, Option<Cow<'_, str>>) {
        (**self).to_named_key(hash)
    }
}

/// A UUID (feature `uuid`) is hashed as its hyphenated lower-case string, like a
/// string key, and named by it.
///
/// ```
/// # #[cfg(feature = "uuid")] {
/// use pglock_runtime::{advisory, LockKey};
///
/// let id = uuid::Uuid::nil();
/// assert_eq!(advisory(id).key(), LockKey::string("00000000-0000-0000-0000-000000000000"));
/// assert_eq!(advisory(("job", id)).key(), LockKey::string("job:00000000-0000-0000-0000-000000000000"));
/// # }
/// ```
#[cfg(feature = "uuid")]
impl ToLockKey for uuid::Uuid {
    fn to_lock_key(&self, hash: KeyHash) -> LockKey {
        self.to_named_key(hash).0
    }

    fn to_named_key(&self, hash: KeyHash) -> (LockKey, Option<Cow<'_, str>>) {
        let name = self.hyphenated().to_string();
        (LockKey::hashed(&name, hash), Some(Cow::Owned(name)))
    }
}

#[cfg(feature = "uuid")]
impl KeyPart for uuid::Uuid {
    fn write_part(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        write!(out, "{}", self.hyphenated())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The test vectors of DESIGN.md: string, django-pglock, pglocks 2.x, pglocks 1.x,
    // postgres-lock.
    const VECTORS: &[(&str, i64, i64, i64, i64)] = &[
        (
            "hello",
            1054880662928880172,
            3238736544897475342,
            907060870,
            975987071262755080,
        ),
        (
            "test",
            7313085519096743583,
            -6951639720043709083,
            -662733300,
            966482230667555116,
        ),
        (
            "some lock",
            -1292339565357005894,
            -5006958056254205714,
            -205618829,
            101875854625702283,
        ),
        (
            "",
            1449310910991872227,
            -2039914840885289964,
            0,
            124584541093122799,
        ),
    ];

    #[test]
    fn design_vectors() {
        for &(s, pglock, pglocks, v1, postgres_lock) in VECTORS {
            assert_eq!(KeyHash::DjangoPglock.hash(s), pglock, "django-pglock {s:?}");
            assert_eq!(KeyHash::DjangoPglocks.hash(s), pglocks, "pglocks 2.x {s:?}");
            assert_eq!(KeyHash::DjangoPglocksV1.hash(s), v1, "pglocks 1.x {s:?}");
            assert_eq!(
                KeyHash::PostgresLock.hash(s),
                postgres_lock,
                "postgres-lock {s:?}"
            );
        }
    }

    #[test]
    fn sqlx_vectors() {
        assert_eq!(
            KeyHash::Sqlx.hash("my first Postgres advisory lock!"),
            -5560419505042474287
        );
        assert_eq!(KeyHash::Sqlx.hash("hello"), 5976985304735029827);
    }

    #[test]
    fn default_is_django_pglock() {
        assert_eq!(LockKey::string("hello"), LockKey::Int(1054880662928880172));
        assert_eq!(
            "hello".to_lock_key(KeyHash::default()),
            LockKey::Int(1054880662928880172)
        );
    }

    #[test]
    fn pg_locks_mapping_round_trips() {
        for key in [
            LockKey::Int(0),
            LockKey::Int(1),
            LockKey::Int(-1),
            LockKey::Int(i64::MIN),
            LockKey::Int(i64::MAX),
            LockKey::Int(-1292339565357005894),
            LockKey::Pair(0, 0),
            LockKey::Pair(-5, 7),
            LockKey::Pair(i32::MIN, i32::MAX),
        ] {
            let (c, o, s) = key.pg_locks_ids();
            assert_eq!(LockKey::from_pg_locks(c, o, s), Some(key));
        }
        // The high half's sign is kept in classid as an unsigned 32-bit value.
        assert_eq!(
            LockKey::Int(-2).pg_locks_ids(),
            (0xFFFF_FFFF, 0xFFFF_FFFE, 1)
        );
        assert_eq!(LockKey::Int(0x1_0000_0002).pg_locks_ids(), (1, 2, 1));
        assert_eq!(LockKey::from_pg_locks(1, 2, 3), None);
    }

    #[test]
    fn decimal_digits_of_big_numbers() {
        assert_eq!(decimal_digits(&[0]), "0");
        assert_eq!(decimal_digits(&[1, 0]), "256");
        assert_eq!(decimal_digits(&[0xFF; 8]), u64::MAX.to_string());
    }

    #[test]
    fn small_integer_types_are_int_keys() {
        let h = KeyHash::default();
        assert_eq!(42_i32.to_lock_key(h), LockKey::Int(42));
        assert_eq!(u32::MAX.to_lock_key(h), LockKey::Int(i64::from(u32::MAX)));
        assert_eq!((3, 4).to_lock_key(h), LockKey::Pair(3, 4));
        assert_eq!(
            (String::from("a"), "b").to_lock_key(h),
            LockKey::string("a:b")
        );
    }
}
