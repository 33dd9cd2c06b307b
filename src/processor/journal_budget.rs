//! Each charge point's allowance of journal bytes: a token bucket (`events.charge_point_rate`
//! bytes per second, up to `events.charge_point_burst`), so one charge point (accepted or not)
//! cannot fill the disk or push the rest of the fleet's lines out by rotation. Lines over the
//! allowance are not written but counted; the next line that fits is preceded by one summary
//! line saying how many were left out. Billing lines (StopTransaction, MeterValues) are always
//! written, as are connects and disconnects: they spend the allowance but are never refused.
//!
//! Pure: time is passed in (milliseconds on the processor's clock).

/// The allowance every charge point gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetRule {
    /// Bytes per second (0: no limit).
    pub per_second: u64,
    /// Bytes that may be written at once after a quiet period.
    pub burst: u64,
}

impl BudgetRule {
    pub const UNLIMITED: BudgetRule = BudgetRule {
        per_second: 0,
        burst: 0,
    };
}

/// What to do with a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    Write,
    /// Write a summary of the lines left out first.
    WriteAfterSummary {
        lines: u32,
        bytes: u64,
    },
    /// Leave it out (counted).
    Suppress,
}

/// One charge point's bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JournalBudget {
    /// Bytes that may be written now, as of `updated_ms`; starts full (see [`Self::admit`]).
    tokens: u32,
    started: bool,
    updated_ms: u64,
    /// Left out since the last summary.
    suppressed_lines: u32,
    suppressed_bytes: u32,
}

impl JournalBudget {
    /// Decides on a line of about `bytes` at `now_ms`; `always` lines are written whatever the
    /// allowance (and spend it).
    pub fn admit(&mut self, rule: BudgetRule, now_ms: u64, bytes: usize, always: bool) -> Admit {
        if rule.per_second == 0 {
            return Admit::Write;
        }
        let burst = u32::try_from(rule.burst).unwrap_or(u32::MAX);
        if !self.started {
            self.started = true;
            self.tokens = burst;
            self.updated_ms = now_ms;
        }
        let elapsed = now_ms.saturating_sub(self.updated_ms);
        let earned = elapsed.saturating_mul(rule.per_second) / 1000;
        if earned > 0 {
            self.tokens = u32::try_from(u64::from(self.tokens).saturating_add(earned))
                .unwrap_or(u32::MAX)
                .min(burst);
            self.updated_ms = now_ms;
        }
        let cost = u32::try_from(bytes).unwrap_or(u32::MAX);
        if cost > self.tokens && !always {
            self.suppressed_lines = self.suppressed_lines.saturating_add(1);
            self.suppressed_bytes = self.suppressed_bytes.saturating_add(cost);
            return Admit::Suppress;
        }
        self.tokens = self.tokens.saturating_sub(cost);
        match self.take_summary() {
            Some((lines, bytes)) => Admit::WriteAfterSummary { lines, bytes },
            None => Admit::Write,
        }
    }

    /// What was left out and not summarised yet (cleared).
    pub fn take_summary(&mut self) -> Option<(u32, u64)> {
        if self.suppressed_lines == 0 {
            return None;
        }
        let summary = (self.suppressed_lines, u64::from(self.suppressed_bytes));
        self.suppressed_lines = 0;
        self.suppressed_bytes = 0;
        Some(summary)
    }

    /// Lines left out and not summarised yet.
    pub fn pending(&self) -> u32 {
        self.suppressed_lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: BudgetRule = BudgetRule {
        per_second: 1000,
        burst: 5000,
    };

    #[test]
    fn a_burst_then_the_rate_then_a_summary() {
        let mut budget = JournalBudget::default();
        for _ in 0..5 {
            assert_eq!(budget.admit(RULE, 0, 1000, false), Admit::Write);
        }
        assert_eq!(budget.admit(RULE, 0, 1000, false), Admit::Suppress);
        assert_eq!(budget.admit(RULE, 10, 1000, false), Admit::Suppress);
        assert_eq!(budget.pending(), 2);
        // Billing lines go through regardless.
        assert_eq!(
            budget.admit(RULE, 20, 1000, true),
            Admit::WriteAfterSummary {
                lines: 2,
                bytes: 2000
            }
        );
        assert_eq!(budget.admit(RULE, 30, 1000, false), Admit::Suppress);
        // A second later, 1000 bytes more.
        assert_eq!(
            budget.admit(RULE, 1030, 1000, false),
            Admit::WriteAfterSummary {
                lines: 1,
                bytes: 1000
            }
        );
        assert_eq!(budget.admit(RULE, 1030, 1000, false), Admit::Suppress);
        // Never more than the burst, however long the quiet.
        assert!(matches!(
            budget.admit(RULE, 1_000_000, 5000, false),
            Admit::WriteAfterSummary { .. }
        ));
        assert_eq!(budget.admit(RULE, 1_000_000, 1, false), Admit::Suppress);
        assert_eq!(budget.take_summary(), Some((1, 1)));
        assert_eq!(budget.take_summary(), None);
    }

    #[test]
    fn no_rule_no_limit() {
        let mut budget = JournalBudget::default();
        for _ in 0..1000 {
            assert_eq!(
                budget.admit(BudgetRule::UNLIMITED, 0, 1 << 20, false),
                Admit::Write
            );
        }
    }
}
