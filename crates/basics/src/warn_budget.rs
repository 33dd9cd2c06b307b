//! A budget of log lines per second: input from the network must not be able to flood the log.
//! What exceeds the budget is still counted (by whoever keeps the counters), never logged.

/// Lets `per_second` warnings through per wall-clock second of the caller's clock.
#[derive(Debug, Clone)]
pub struct WarnBudget {
    per_second: u32,
    second: u64,
    used: u32,
}

impl WarnBudget {
    pub fn new(per_second: u32) -> WarnBudget {
        WarnBudget {
            per_second,
            second: u64::MAX,
            used: 0,
        }
    }

    /// True when one more line may be logged at `now_ms` (any monotonic milliseconds).
    pub fn allow(&mut self, now_ms: u64) -> bool {
        let second = now_ms / 1000;
        if second != self.second {
            self.second = second;
            self.used = 0;
        }
        self.used = self.used.saturating_add(1);
        self.used <= self.per_second
    }
}

#[cfg(test)]
mod tests {
    use super::WarnBudget;

    #[test]
    fn a_few_per_second() {
        let mut budget = WarnBudget::new(2);
        assert!(budget.allow(10) && budget.allow(20));
        assert!(!budget.allow(30));
        assert!(budget.allow(1000));
    }
}
