//! A replayed answer against the recorded one. Outcomes must be of the same
//! kind; an ok answer must have the same text, fields, fallback flags and a
//! vector whose cosine to the recorded one is at least the threshold; an
//! error must have failed in the same stage with the same class. Messages
//! and times are not compared (they carry times and ids).

use spindle_journal::OutcomeRecord;

/// One way a replayed answer differs from the recorded one.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// `outcome`, `text`, `field NAME`, `vector`, `degraded`,
    /// `embed_fallback`, `stage`, `class`.
    pub what: String,
    pub recorded: String,
    pub replayed: String,
}

/// The differences of `replayed` from `recorded` (empty: the same answer).
pub fn compare(
    recorded: &OutcomeRecord,
    replayed: &OutcomeRecord,
    cosine_min: f32,
) -> Vec<Difference> {
    let mut differences = Vec::new();
    let mut differ = |what: &str, recorded: String, replayed: String| {
        if recorded != replayed {
            differences.push(Difference {
                what: what.to_owned(),
                recorded,
                replayed,
            });
        }
    };
    match (recorded, replayed) {
        (
            OutcomeRecord::Ok {
                text,
                vector,
                fields,
                degraded,
                embed_fallback,
            },
            OutcomeRecord::Ok {
                text: text_again,
                vector: vector_again,
                fields: fields_again,
                degraded: degraded_again,
                embed_fallback: embed_fallback_again,
            },
        ) => {
            differ("text", text.clone(), text_again.clone());
            let mut names: Vec<&String> = fields
                .iter()
                .chain(fields_again.iter())
                .map(|(name, _)| name)
                .collect();
            names.sort();
            names.dedup();
            for name in names {
                let value = |fields: &[(String, String)]| {
                    fields
                        .iter()
                        .find(|(field, _)| field == name)
                        .map_or_else(|| "(absent)".to_owned(), |(_, value)| value.clone())
                };
                differ(&format!("field {name}"), value(fields), value(fields_again));
            }
            match (vector, vector_again) {
                (None, None) => {}
                (Some(a), Some(b)) => match cosine(a, b) {
                    Some(similarity) if similarity >= cosine_min => {}
                    Some(similarity) => differ(
                        "vector",
                        format!("{} dimensions", a.len()),
                        format!("cosine {similarity:.6} < {cosine_min}"),
                    ),
                    None => differ(
                        "vector",
                        format!("{} dimensions", a.len()),
                        format!("{} dimensions", b.len()),
                    ),
                },
                (a, b) => differ("vector", vector_words(a), vector_words(b)),
            }
            differ("degraded", degraded.to_string(), degraded_again.to_string());
            differ(
                "embed_fallback",
                embed_fallback.to_string(),
                embed_fallback_again.to_string(),
            );
        }
        (
            OutcomeRecord::Error { stage, class, .. },
            OutcomeRecord::Error {
                stage: stage_again,
                class: class_again,
                ..
            },
        ) => {
            differ("stage", stage.clone(), stage_again.clone());
            differ("class", class.clone(), class_again.clone());
        }
        (recorded, replayed) => differ(
            "outcome",
            recorded.kind().to_owned(),
            replayed.kind().to_owned(),
        ),
    }
    differences
}

/// The cosine of two vectors of the same length (`None` otherwise).
pub fn cosine(a: &[f32], b: &[f32]) -> Option<f32> {
    if a.len() != b.len() {
        return None;
    }
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|x| *x as f64 * *x as f64).sum::<f64>().sqrt();
    let (norm_a, norm_b) = (norm(a), norm(b));
    if norm_a == 0.0 || norm_b == 0.0 {
        return Some(if norm_a == norm_b { 1.0 } else { 0.0 });
    }
    Some((dot / (norm_a * norm_b)) as f32)
}

fn vector_words(vector: &Option<Vec<f32>>) -> String {
    match vector {
        Some(vector) => format!("{} dimensions", vector.len()),
        None => "no vector".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str, vector: Option<Vec<f32>>) -> OutcomeRecord {
        OutcomeRecord::Ok {
            text: text.to_owned(),
            vector,
            fields: vec![("lang".into(), "en".into())],
            degraded: false,
            embed_fallback: false,
        }
    }

    #[test]
    fn equal_answers_have_no_difference_and_vectors_compare_by_cosine() {
        let recorded = ok("a", Some(vec![1.0, 0.0]));
        assert!(compare(&recorded, &ok("a", Some(vec![1.0, 0.0001])), 0.999).is_empty());
        let differences = compare(&recorded, &ok("b", Some(vec![0.0, 1.0])), 0.999);
        let whats: Vec<&str> = differences.iter().map(|d| d.what.as_str()).collect();
        assert_eq!(whats, ["text", "vector"]);
        let differences = compare(&recorded, &OutcomeRecord::Timeout, 0.999);
        assert_eq!(differences[0].what, "outcome");
        assert_eq!(differences[0].replayed, "timeout");
    }
}
