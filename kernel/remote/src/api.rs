//! The two wire formats: OpenAI-compatible `POST /v1/embeddings`
//! (`{"model", "input": [...]}` answered `{"data": [{"index", "embedding"}]}`)
//! and Text Embeddings Inference's `POST /embed` (`{"inputs": [...]}`
//! answered `[[...], ...]`).

use serde_json::{Value, json};

use crate::client::RemoteError;

pub(crate) fn openai_request(model: &str, texts: Vec<String>) -> Value {
    json!({ "model": model, "input": texts, "encoding_format": "float" })
}

pub(crate) fn tei_request(texts: Vec<String>) -> Value {
    json!({ "inputs": texts, "normalize": true, "truncate": true })
}

/// The vectors of an OpenAI answer, in the order of the input (by `index`).
pub(crate) fn openai_vectors(answer: &Value) -> Result<Vec<Vec<f32>>, RemoteError> {
    let data = answer["data"]
        .as_array()
        .ok_or_else(|| RemoteError::Answer("no `data` list in the answer".to_owned()))?;
    let mut indexed = Vec::with_capacity(data.len());
    for (position, item) in data.iter().enumerate() {
        let index = item["index"]
            .as_u64()
            .map_or(position, |index| index as usize);
        indexed.push((index, numbers(&item["embedding"])?));
    }
    indexed.sort_by_key(|(index, _)| *index);
    Ok(indexed.into_iter().map(|(_, vector)| vector).collect())
}

pub(crate) fn tei_vectors(answer: &Value) -> Result<Vec<Vec<f32>>, RemoteError> {
    answer
        .as_array()
        .ok_or_else(|| RemoteError::Answer("the answer is not a list of vectors".to_owned()))?
        .iter()
        .map(numbers)
        .collect()
}

fn numbers(value: &Value) -> Result<Vec<f32>, RemoteError> {
    value
        .as_array()
        .ok_or_else(|| RemoteError::Answer("an embedding is not a list of numbers".to_owned()))?
        .iter()
        .map(|number| {
            number
                .as_f64()
                .map(|number| number as f32)
                .ok_or_else(|| RemoteError::Answer("an embedding holds a non-number".to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_answers_are_put_back_in_input_order() {
        let answer = json!({
            "object": "list",
            "data": [
                { "object": "embedding", "index": 1, "embedding": [0.0, 1.0] },
                { "object": "embedding", "index": 0, "embedding": [1.0, 0.0] },
            ],
        });
        assert_eq!(
            openai_vectors(&answer).expect("vectors"),
            [vec![1.0, 0.0], vec![0.0, 1.0]]
        );
        assert!(openai_vectors(&json!({ "error": "no" })).is_err());
    }

    #[test]
    fn tei_answers_are_lists_of_vectors() {
        assert_eq!(
            tei_vectors(&json!([[0.5, 0.5], [1.0, 0.0]])).expect("vectors"),
            [vec![0.5, 0.5], vec![1.0, 0.0]]
        );
        assert!(tei_vectors(&json!([["x"]])).is_err());
    }
}
