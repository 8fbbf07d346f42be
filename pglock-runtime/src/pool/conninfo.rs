//! The parts of a connection string that tokio-postgres does not take: the TLS
//! parameters (`sslmode` with libpq's five values, `sslrootcert`, `sslcert`,
//! `sslkey`), taken out of a URL (`postgres://…?sslmode=verify-full`) or a
//! key=value string (`host=… sslmode=verify-full`) before the rest is parsed.

use std::path::PathBuf;

use crate::error::Error;
use crate::wire::tls::TlsSettings;

/// The parameters pglock handles itself.
const TLS_KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// Splits `s` into the connection string without the TLS parameters, and those.
pub(crate) fn split_tls(s: &str) -> Result<(String, TlsSettings), Error> {
    let trimmed = s.trim_start();
    let (rest, pairs) =
        if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
            split_url(s)
        } else {
            split_key_values(s)
        };
    let mut tls = TlsSettings::default();
    for (key, value) in pairs {
        match key.as_str() {
            "sslmode" => tls.mode = Some(value.parse()?),
            "sslrootcert" => tls.root_cert = Some(PathBuf::from(value)),
            "sslcert" => tls.client_cert = Some(PathBuf::from(value)),
            "sslkey" => tls.client_key = Some(PathBuf::from(value)),
            _ => unreachable!("only TLS keys are taken out"),
        }
    }
    Ok((rest, tls))
}

/// `postgres://…?a=1&sslmode=require&b=2` → (`postgres://…?a=1&b=2`, sslmode).
fn split_url(s: &str) -> (String, Vec<(String, String)>) {
    let Some((base, query)) = s.split_once('?') else {
        return (s.to_owned(), Vec::new());
    };
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    for part in query.split('&') {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let key = decode(k);
        if TLS_KEYS.contains(&key.as_str()) {
            taken.push((key, decode(v)));
        } else {
            kept.push(part);
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (rest, taken)
}

/// Percent-decoding, as tokio-postgres does for URL parameters.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let byte = hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0);
                out.push(u8::try_from(byte).unwrap_or(b'?'));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `host=h sslmode='verify-full' user=u` → (`host=h  user=u`, sslmode): the
/// grammar of libpq's key=value strings (values bare or single-quoted, with
/// backslash escapes); anything it cannot read is left for tokio-postgres to
/// reject.
fn split_key_values(s: &str) -> (String, Vec<(String, String)>) {
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    let mut i = 0;
    let mut cut: Vec<(usize, usize)> = Vec::new();
    let mut taken = Vec::new();
    let at = |i: usize| chars.get(i).map(|&(_, c)| c);
    let offset = |i: usize| chars.get(i).map_or(s.len(), |&(o, _)| o);
    while i < chars.len() {
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        let start = i;
        while at(i).is_some_and(|c| c != '=' && !c.is_whitespace()) {
            i += 1;
        }
        let key: String = chars[start..i].iter().map(|&(_, c)| c).collect();
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        if at(i) != Some('=') {
            break;
        }
        i += 1;
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        let mut value = String::new();
        if at(i) == Some('\'') {
            i += 1;
            while let Some(c) = at(i) {
                i += 1;
                match c {
                    '\'' => break,
                    '\\' => {
                        if let Some(next) = at(i) {
                            value.push(next);
                            i += 1;
                        }
                    }
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = at(i).filter(|c| !c.is_whitespace()) {
                i += 1;
                if c == '\\' {
                    if let Some(next) = at(i) {
                        value.push(next);
                        i += 1;
                    }
                } else {
                    value.push(c);
                }
            }
        }
        if TLS_KEYS.contains(&key.as_str()) {
            cut.push((offset(start), offset(i)));
            taken.push((key, value));
        }
    }
    let mut rest = String::with_capacity(s.len());
    let mut from = 0;
    for (a, b) in cut {
        rest.push_str(&s[from..a]);
        from = b;
    }
    rest.push_str(&s[from..]);
    (rest, taken)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tls::SslMode;

    #[test]
    fn urls_lose_their_tls_parameters_and_keep_the_rest() {
        let (rest, tls) = split_tls(
            "postgres://u:p@db:5433/app?application_name=x&sslmode=verify-full\
             &sslrootcert=%2Fetc%2Fca.pem&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgres://u:p@db:5433/app?application_name=x&connect_timeout=3"
        );
        assert_eq!(tls.mode, Some(SslMode::VerifyFull));
        assert_eq!(tls.root_cert, Some(PathBuf::from("/etc/ca.pem")));
        let (rest, tls) = split_tls("postgresql://db/app?sslmode=require").unwrap();
        assert_eq!(rest, "postgresql://db/app");
        assert_eq!(tls.mode, Some(SslMode::Require));
        let (rest, tls) = split_tls("postgres://db/app").unwrap();
        assert_eq!(
            (rest.as_str(), tls),
            ("postgres://db/app", TlsSettings::default())
        );
    }

    #[test]
    fn key_value_strings_lose_their_tls_parameters_and_keep_the_rest() {
        let (rest, tls) = split_tls(
            "host=db sslmode = 'verify-ca' user=u sslcert=/c.pem sslkey='/my key.pem' \
             password='a b\\'c'",
        )
        .unwrap();
        assert_eq!(rest, "host=db  user=u   password='a b\\'c'");
        assert_eq!(tls.mode, Some(SslMode::VerifyCa));
        assert_eq!(tls.client_cert, Some(PathBuf::from("/c.pem")));
        assert_eq!(tls.client_key, Some(PathBuf::from("/my key.pem")));
        assert!(rest.parse::<tokio_postgres::Config>().is_ok());
    }

    #[test]
    fn a_bad_sslmode_says_which_values_exist() {
        let e = split_tls("postgres://db/app?sslmode=verify").unwrap_err();
        assert!(e.to_string().contains("verify-ca or verify-full"), "{e}");
    }
}
