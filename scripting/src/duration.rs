//! Durations as scripts write them: `"250ms"`, `"2s"`, `"1.5s"`, `"5m"`,
//! `"1h"`, `"1m30s"`, or a plain number of seconds.

use std::time::Duration;

/// Parses a duration string; the error says what was expected.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("an empty duration".to_owned());
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return Err(format!("`{text}` does not start with a number"));
        }
        let number: f64 = rest[..number_len]
            .parse()
            .map_err(|_| format!("`{}` is not a number", &rest[..number_len]))?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(format!("`{text}` has a number without a unit")),
            unit => return Err(format!("`{unit}` is not a unit of time")),
        };
        rest = &rest[unit_len..];
        total += number * seconds_per_unit;
    }
    Ok(Duration::from_secs_f64(total))
}

/// Parses a backoff range `"200ms..10s"` into (initial, cap).
pub fn parse_range(text: &str) -> Result<(Duration, Duration), String> {
    let Some((low, high)) = text.split_once("..") else {
        return Err(format!("`{text}` is not a range like \"200ms..10s\""));
    };
    let low = parse_duration(low)?;
    let high = parse_duration(high)?;
    if low > high {
        return Err(format!("the range `{text}` starts above its end"));
    }
    Ok((low, high))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("10").unwrap_err().contains("without a unit"));
        assert!(parse_duration("5 parsecs").is_err());
        assert_eq!(
            parse_range("200ms..10s"),
            Ok((Duration::from_millis(200), Duration::from_secs(10)))
        );
        assert!(parse_range("10s..1s").unwrap_err().contains("starts above"));
    }
}
