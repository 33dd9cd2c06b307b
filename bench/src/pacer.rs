//! Connect pacing for one fleet thread: a token bucket for `--connect-rate` (its share), with a
//! burst of 10 ms worth so connects go out evenly rather than in per-poll waves. Time is passed
//! in (microseconds), so it is tested without waiting.

#[derive(Debug, Clone)]
pub struct Pacer {
    /// Tokens per microsecond; None: unlimited.
    per_us: Option<f64>,
    tokens: f64,
    burst: f64,
    last_us: u64,
}

impl Pacer {
    /// `per_second`: this thread's share of `--connect-rate`, None for unlimited.
    pub fn new(per_second: Option<f64>, now_us: u64) -> Pacer {
        let per_us = per_second.map(|r| r / 1e6);
        let burst = per_second.map_or(0.0, |r| (r / 100.0).max(1.0));
        Pacer {
            per_us,
            tokens: burst.min(1.0),
            burst,
            last_us: now_us,
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now_us: u64) -> bool {
        let Some(per_us) = self.per_us else {
            return true;
        };
        let elapsed = now_us.saturating_sub(self.last_us) as f64;
        self.last_us = now_us;
        self.tokens = (self.tokens + elapsed * per_us).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// When the next token will be there (`now_us` when unlimited or available).
    pub fn next_token_at(&self, now_us: u64) -> u64 {
        match self.per_us {
            None => now_us,
            Some(_) if self.tokens >= 1.0 => now_us,
            Some(per_us) => {
                let wait = ((1.0 - self.tokens) / per_us).ceil() as u64;
                self.last_us.saturating_add(wait).max(now_us)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_always_has_a_token() {
        let mut p = Pacer::new(None, 0);
        assert!((0..1000).all(|_| p.try_take(0)));
        assert_eq!(p.next_token_at(5), 5);
    }

    #[test]
    fn rate_is_kept_over_time() {
        let mut p = Pacer::new(Some(1000.0), 0); // one per ms, burst 10
        let mut taken = 0;
        let mut now = 0;
        while now <= 1_000_000 {
            while p.try_take(now) {
                taken += 1;
            }
            now = p.next_token_at(now).max(now + 1);
        }
        assert!((995..=1011).contains(&taken), "{taken}");
    }

    #[test]
    fn next_token_time_is_exact() {
        let mut p = Pacer::new(Some(10.0), 0); // one per 100 ms
        assert!(p.try_take(0));
        assert!(!p.try_take(1));
        let at = p.next_token_at(1);
        assert!((99_999..=100_001).contains(&at), "{at}");
        assert!(p.try_take(at));
    }
}
