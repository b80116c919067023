//! DPO data: the prompt rendered with the chat template (generation prompt appended), each
//! response tokenised and followed by EOS.
//!
//! Truncation is by tokens. When prompt + longest response exceed `max_len`, the prompt keeps its
//! end (the latest turns) and gives up tokens first, but never below half of `max_len`; then each
//! response keeps its start and is cut to what remains.

use super::tasks::PrefExample;

pub fn example(
    prompt: &[u32],
    chosen: &[u32],
    rejected: &[u32],
    eos: u32,
    max_len: usize,
) -> Option<PrefExample> {
    let with_eos = |r: &[u32]| {
        let mut v = r.to_vec();
        if v.last() != Some(&eos) {
            v.push(eos);
        }
        v
    };
    let mut chosen = with_eos(chosen);
    let mut rejected = with_eos(rejected);
    let longest = chosen.len().max(rejected.len());
    let mut prompt = prompt.to_vec();
    if prompt.len() + longest > max_len {
        let keep = max_len
            .saturating_sub(longest)
            .max(max_len / 2)
            .min(prompt.len());
        prompt.drain(..prompt.len() - keep);
    }
    let room = max_len.saturating_sub(prompt.len());
    chosen.truncate(room);
    rejected.truncate(room);
    if prompt.is_empty() || chosen.is_empty() || rejected.is_empty() || chosen == rejected {
        return None;
    }
    Some(PrefExample {
        prompt,
        chosen,
        rejected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_end_with_eos_and_fit() {
        let e = example(&[1, 2, 3], &[4, 5], &[6], 0, 16).unwrap();
        assert_eq!(e.chosen, vec![4, 5, 0]);
        assert_eq!(e.rejected, vec![6, 0]);
        let long: Vec<u32> = (10..30).collect();
        let e = example(&long, &[4, 5, 6, 7, 8, 9, 10, 11], &[6], 0, 10).unwrap();
        assert_eq!(
            e.prompt,
            (25..30).collect::<Vec<u32>>(),
            "prompt keeps its end"
        );
        assert_eq!(e.chosen.len(), 5);
        assert!(e.prompt.len() + e.chosen.len() <= 10);
        assert!(
            example(&[1], &[4], &[4], 0, 8).is_none(),
            "identical responses"
        );
    }
}
