//! Supervised fine-tuning data: a rendered conversation is tokenised segment by segment, so the
//! loss mask follows the template exactly: assistant answers and their end marker are supervised,
//! everything else is context. Truncation is by tokens and keeps the start of the conversation.

use super::tasks::LmExample;

/// Build one example from `(token ids, supervised?)` segments, truncated to `max_len` tokens.
/// `None` when nothing supervised survives truncation.
pub fn example(segments: &[(Vec<u32>, bool)], max_len: usize) -> Option<LmExample> {
    let mut ids = Vec::new();
    let mut mask = Vec::new();
    for (seg, train) in segments {
        ids.extend_from_slice(seg);
        mask.extend(std::iter::repeat_n(*train, seg.len()));
    }
    ids.truncate(max_len);
    mask.truncate(max_len);
    // Position 0 is never a target.
    if mask.iter().skip(1).any(|&m| m) {
        Some(LmExample { ids, mask })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_follow_segments_and_truncation_is_by_tokens() {
        let segs = vec![(vec![1, 2, 3], false), (vec![4, 5], true), (vec![6], false)];
        let e = example(&segs, 16).unwrap();
        assert_eq!(e.ids, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(e.mask, vec![false, false, false, true, true, false]);
        let e = example(&segs, 4).unwrap();
        assert_eq!(e.ids, vec![1, 2, 3, 4]);
        assert!(example(&segs, 3).is_none(), "no supervised token left");
    }
}
