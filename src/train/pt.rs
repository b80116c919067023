//! Continued pretraining data: documents are tokenised, each followed by EOS, concatenated into
//! one stream and cut into blocks of `max_len` tokens; the remainder that does not fill a block
//! is dropped (the MedicalGPT recipe). Every position is supervised.

use super::tasks::LmExample;

/// What packing produced, for the stage's data report.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PackReport {
    pub documents: u64,
    pub tokens: u64,
    pub blocks: u64,
    /// Tokens after the last full block, not trained on.
    pub dropped_tokens: u64,
}

/// Pack tokenised documents into blocks of `block` tokens, appending `eos` to each document that
/// does not already end with it.
pub fn pack(docs: &[Vec<u32>], eos: u32, block: usize) -> (Vec<LmExample>, PackReport) {
    let mut stream: Vec<u32> = Vec::new();
    for d in docs {
        stream.extend_from_slice(d);
        if d.last() != Some(&eos) {
            stream.push(eos);
        }
    }
    let block = block.max(2);
    let blocks: Vec<LmExample> = stream
        .chunks_exact(block)
        .map(|c| LmExample {
            ids: c.to_vec(),
            mask: vec![true; c.len()],
        })
        .collect();
    let report = PackReport {
        documents: docs.len() as u64,
        tokens: stream.len() as u64,
        blocks: blocks.len() as u64,
        dropped_tokens: (stream.len() % block) as u64,
    };
    (blocks, report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_separated_by_eos_and_the_tail_is_dropped() {
        let docs = vec![vec![5, 6, 7], vec![8, 0], vec![9]];
        let (blocks, r) = pack(&docs, 0, 3);
        // stream: 5 6 7 0 8 0 9 0
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].ids, vec![5, 6, 7]);
        assert_eq!(blocks[1].ids, vec![0, 8, 0]);
        assert_eq!(r.tokens, 8);
        assert_eq!(r.dropped_tokens, 2);
        assert!(blocks.iter().all(|b| b.mask.iter().all(|&m| m)));
    }
}
