//! Mean pooling over the attention mask, then L2 normalisation: what
//! sentence-transformers' `Pooling(mean)` + `Normalize` do.

/// Mean of each row's token vectors where `mask` is 1.
///
/// `hidden` is `[batch, seq, dim]` row-major, `mask` is `[batch, seq]`.
/// Sums in f64 so that long inputs lose no precision; a row whose mask is
/// all zero (which the tokenizer never produces: there is always `[CLS]` and
/// `[SEP]`) yields zeros.
pub fn mean_pool(
    hidden: &[f32],
    mask: &[i64],
    batch: usize,
    seq: usize,
    dim: usize,
) -> Vec<Vec<f32>> {
    assert_eq!(hidden.len(), batch * seq * dim, "hidden state shape");
    assert_eq!(mask.len(), batch * seq, "mask shape");
    let mut pooled = Vec::with_capacity(batch);
    let mut sum = vec![0f64; dim];
    for row in 0..batch {
        sum.iter_mut().for_each(|value| *value = 0.0);
        let mut count = 0usize;
        for token in 0..seq {
            if mask[row * seq + token] == 0 {
                continue;
            }
            count += 1;
            let start = (row * seq + token) * dim;
            for (acc, value) in sum.iter_mut().zip(&hidden[start..start + dim]) {
                *acc += f64::from(*value);
            }
        }
        let denominator = count.max(1) as f64;
        pooled.push(
            sum.iter()
                .map(|value| (value / denominator) as f32)
                .collect(),
        );
    }
    pooled
}

/// Scales `vector` to unit length (left as is when it is all zero).
pub fn l2_normalize(vector: &mut [f32]) {
    let norm = vector
        .iter()
        .map(|value| f64::from(*value).powi(2))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 {
        vector
            .iter_mut()
            .for_each(|value| *value = (f64::from(*value) / norm) as f32);
    }
}

/// Cosine similarity of two vectors of the same length.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut norm_a, mut norm_b) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        dot += f64::from(*x) * f64::from(*y);
        norm_a += f64::from(*x).powi(2);
        norm_b += f64::from(*y).powi(2);
    }
    if norm_a == 0.0 || norm_b == 0.0 {
        return 0.0;
    }
    (dot / (norm_a.sqrt() * norm_b.sqrt())) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_pool_ignores_padding() {
        // batch 2, seq 3, dim 2; the second row has one padded token.
        let hidden = [
            1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 1.0, 1.0, 3.0, 3.0, 100.0, 100.0,
        ];
        let mask = [1, 1, 1, 1, 1, 0];
        let pooled = mean_pool(&hidden, &mask, 2, 3, 2);
        assert_eq!(pooled, vec![vec![3.0, 4.0], vec![2.0, 2.0]]);
    }

    #[test]
    fn l2_normalize_gives_unit_length() {
        let mut vector = [3.0, 4.0];
        l2_normalize(&mut vector);
        assert_eq!(vector, [0.6, 0.8]);
        let mut zero = [0.0, 0.0];
        l2_normalize(&mut zero);
        assert_eq!(zero, [0.0, 0.0]);
    }

    #[test]
    fn cosine_of_parallel_vectors_is_one() {
        assert!((cosine(&[1.0, 2.0], &[2.0, 4.0]) - 1.0).abs() < 1e-6);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    }
}
