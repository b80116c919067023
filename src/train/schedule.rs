//! Learning-rate schedules: linear warmup from 0, then cosine decay to 0, linear decay to 0, or
//! constant. `step` counts optimizer steps from 0.

use crate::spec::{Schedule, ScheduleKind};

pub fn lr_at(base: f64, s: &Schedule, step: u64, total: u64) -> f64 {
    if s.warmup > 0 && step < s.warmup {
        return base * (step + 1) as f64 / s.warmup as f64;
    }
    let span = total.saturating_sub(s.warmup).max(1) as f64;
    let progress = ((step - s.warmup.min(step)) as f64 / span).clamp(0.0, 1.0);
    match s.kind {
        ScheduleKind::Constant => base,
        ScheduleKind::Linear => base * (1.0 - progress),
        ScheduleKind::Cosine => base * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_decay() {
        let s = Schedule {
            kind: ScheduleKind::Cosine,
            warmup: 10,
        };
        assert!((lr_at(1.0, &s, 0, 110) - 0.1).abs() < 1e-12);
        assert!((lr_at(1.0, &s, 9, 110) - 1.0).abs() < 1e-12);
        assert!((lr_at(1.0, &s, 10, 110) - 1.0).abs() < 1e-12);
        assert!((lr_at(1.0, &s, 60, 110) - 0.5).abs() < 1e-12);
        assert!(lr_at(1.0, &s, 110, 110).abs() < 1e-12);
        let l = Schedule {
            kind: ScheduleKind::Linear,
            warmup: 0,
        };
        assert!((lr_at(2.0, &l, 50, 100) - 1.0).abs() < 1e-12);
        let c = Schedule {
            kind: ScheduleKind::Constant,
            warmup: 0,
        };
        assert_eq!(lr_at(3.0, &c, 99, 100), 3.0);
    }
}
