//! Durations written in attribute arguments: `0`, `1.5` (seconds), `"250ms"`,
//! `"2s"`, `"1m30s"`, or `none`. Checked and converted at compile time.

use syn::{Expr, ExprLit, ExprUnary, Lit, UnOp};

/// A parsed duration argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DurationArg {
    /// `none`: no limit.
    None,
    /// A duration in nanoseconds.
    Nanos(u64),
}

const UNITS: &str = "`ms`, `s`, `m`, `h` (also `us`, `ns`, `d`)";

/// Parses a duration expression; the error message says what to write instead.
pub(crate) fn parse(expr: &Expr) -> Result<DurationArg, syn::Error> {
    let span = syn::spanned::Spanned::span(expr);
    match expr {
        Expr::Path(p) if p.path.is_ident("none") => Ok(DurationArg::None),
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => {
            let secs: u64 = i
                .base10_parse()
                .map_err(|_| syn::Error::new(span, "this duration is too large"))?;
            secs.checked_mul(1_000_000_000)
                .map(DurationArg::Nanos)
                .ok_or_else(|| syn::Error::new(span, "this duration is too large"))
        }
        Expr::Lit(ExprLit {
            lit: Lit::Float(f), ..
        }) => {
            let secs: f64 = f.base10_parse()?;
            if !secs.is_finite() || secs > 1.0e9 {
                return Err(syn::Error::new(span, "this duration is too large"));
            }
            Ok(DurationArg::Nanos((secs * 1e9).round() as u64))
        }
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => parse_str(&s.value())
            .map(DurationArg::Nanos)
            .map_err(|msg| syn::Error::new(span, msg)),
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_), ..
        }) => Err(syn::Error::new(
            span,
            "durations cannot be negative: write a positive number of seconds, a string such as \
             `\"250ms\"`, or `none` for no limit",
        )),
        _ => Err(syn::Error::new(
            span,
            "expected a duration: a number of seconds (`5`, `0.25`), a string with a unit \
             (`\"250ms\"`, `\"2s\"`, `\"1m\"`), or `none`",
        )),
    }
}

/// Parses `"250ms"`, `"1.5s"`, `"1m30s"`.
fn parse_str(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration: write for example `\"2s\"` or `\"250ms\"`".into());
    }
    if t.starts_with('-') {
        return Err("durations cannot be negative".into());
    }
    let mut total: u128 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!(
                "malformed duration {s:?}: expected a number before each unit, as in `\"1m30s\"`"
            ));
        }
        let number: f64 = rest[..num_len].parse().map_err(|_| {
            format!(
                "malformed duration {s:?}: `{}` is not a number",
                &rest[..num_len]
            )
        })?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.' || c.is_whitespace())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = rest[unit_len..].trim_start();
        let nanos_per: f64 = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" | "sec" | "secs" => 1e9,
            "m" | "min" | "mins" => 60e9,
            "h" | "hr" | "hrs" => 3600e9,
            "d" => 86400e9,
            "" => {
                return Err(format!(
                    "missing unit in duration {s:?}: write for example `\"{}s\"`; units: {UNITS}",
                    &t[..num_len.min(t.len())]
                ))
            }
            other => {
                return Err(format!(
                    "unknown unit `{other}` in duration {s:?}; expected one of {UNITS}"
                ))
            }
        };
        total += (number * nanos_per).round() as u128;
    }
    u64::try_from(total).map_err(|_| "this duration is too large".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(src: &str) -> Result<DurationArg, String> {
        parse(&syn::parse_str(src).unwrap()).map_err(|e| e.to_string())
    }

    #[test]
    fn forms() {
        assert_eq!(p("0"), Ok(DurationArg::Nanos(0)));
        assert_eq!(p("2"), Ok(DurationArg::Nanos(2_000_000_000)));
        assert_eq!(p("0.25"), Ok(DurationArg::Nanos(250_000_000)));
        assert_eq!(p("\"250ms\""), Ok(DurationArg::Nanos(250_000_000)));
        assert_eq!(p("\"1m30s\""), Ok(DurationArg::Nanos(90_000_000_000)));
        assert_eq!(p("\"1.5s\""), Ok(DurationArg::Nanos(1_500_000_000)));
        assert_eq!(p("none"), Ok(DurationArg::None));
    }

    #[test]
    fn errors() {
        assert!(p("-1").unwrap_err().contains("negative"));
        assert!(p("\"-2s\"").unwrap_err().contains("negative"));
        assert!(p("\"5y\"").unwrap_err().contains("unknown unit `y`"));
        assert!(p("\"5\"").unwrap_err().contains("missing unit"));
        assert!(p("\"abc\"").unwrap_err().contains("malformed"));
        assert!(p("\"\"").unwrap_err().contains("empty"));
        assert!(p("forever").unwrap_err().contains("expected a duration"));
    }
}
