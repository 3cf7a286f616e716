//! The numbers behind the train view's charts and gauges: per-interval training metrics from
//! the trainer's running epoch means, smoothed; downsampling and the recent window; samples/s
//! and the ETA. Pure: times come in with the events, nothing here reads the clock.

use std::time::{Duration, Instant};

/// Points kept in view when the whole run is shown: about a chart's width.
pub const WHOLE_RUN_POINTS: usize = 240;
/// Training points in the recent window.
pub const RECENT_POINTS: usize = 120;
/// Weight of the newest interval in the smoothed training curves.
const SMOOTHING: f64 = 0.3;
/// The ETA is shown once training has run this long and this many steps since it (re)started.
pub const WARM_UP: Duration = Duration::from_secs(3);
pub const WARM_UP_STEPS: usize = 3;
/// Samples/s is measured over roughly this much recent time.
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// Turns the trainer's running epoch means (reset at each epoch) into the mean of each
/// interval between two reads, smoothed by an exponential moving average.
#[derive(Debug, Clone, Default)]
pub struct Smoother {
    /// (samples, loss sum, correct sum) at the previous read of this epoch.
    previous: (f64, f64, f64),
    /// Smoothed (loss, accuracy).
    value: Option<(f64, f64)>,
}

impl Smoother {
    pub fn new_epoch(&mut self) {
        self.previous = (0.0, 0.0, 0.0);
    }

    /// Feeds the running means over the epoch's first `samples`; returns the smoothed
    /// (loss, accuracy), or None if no new samples were seen.
    pub fn push(&mut self, samples: usize, loss: f32, accuracy: f32) -> Option<(f64, f64)> {
        let n = samples as f64;
        let (loss_sum, correct) = (loss as f64 * n, accuracy as f64 * n);
        let (pn, pl, pc) = self.previous;
        if n <= pn {
            return None;
        }
        let interval = ((loss_sum - pl) / (n - pn), (correct - pc) / (n - pn));
        self.previous = (n, loss_sum, correct);
        let smoothed = match self.value {
            Some((l, a)) => (l + SMOOTHING * (interval.0 - l), a + SMOOTHING * (interval.1 - a)),
            None => interval,
        };
        self.value = Some(smoothed);
        Some(smoothed)
    }
}

/// At most `max_points` points standing for `points`: the mean of equal runs of them.
pub fn downsample(points: &[(f64, f64)], max_points: usize) -> Vec<(f64, f64)> {
    if points.len() <= max_points || max_points == 0 {
        return points.to_vec();
    }
    let per_bucket = points.len().div_ceil(max_points);
    points
        .chunks(per_bucket)
        .map(|bucket| {
            let n = bucket.len() as f64;
            let (sx, sy) = bucket.iter().fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x, sy + y));
            (sx / n, sy / n)
        })
        .collect()
}

/// The last `n` points.
pub fn recent(points: &[(f64, f64)], n: usize) -> &[(f64, f64)] {
    &points[points.len().saturating_sub(n)..]
}

/// Samples/s over the recent past, and the ETA once warmed up.
#[derive(Debug, Clone, Default)]
pub struct Throughput {
    /// (when, samples trained in the run so far), oldest first.
    marks: Vec<(Instant, usize)>,
    steps_since_start: usize,
    started: Option<Instant>,
}

impl Throughput {
    /// Forgets the past: after a pause the rate would include the idle time.
    pub fn restart(&mut self) {
        *self = Throughput::default();
    }

    pub fn mark(&mut self, at: Instant, samples_done: usize) {
        self.started.get_or_insert(at);
        self.steps_since_start += 1;
        self.marks.push((at, samples_done));
        // Keep the newest mark older than the window as the window's start.
        while self.marks.len() > 2 && at.duration_since(self.marks[1].0) >= RATE_WINDOW {
            self.marks.remove(0);
        }
    }

    pub fn samples_per_second(&self) -> Option<f64> {
        let (first, last) = (self.marks.first()?, self.marks.last()?);
        let seconds = last.0.duration_since(first.0).as_secs_f64();
        (seconds > 0.0 && last.1 > first.1).then(|| (last.1 - first.1) as f64 / seconds)
    }

    /// Time left for `remaining` samples, after the warm-up.
    pub fn eta(&self, remaining: usize) -> Option<Duration> {
        let (started, last) = (self.started?, self.marks.last()?);
        if last.0.duration_since(started) < WARM_UP || self.steps_since_start < WARM_UP_STEPS {
            return None;
        }
        let rate = self.samples_per_second()?;
        Some(Duration::from_secs_f64(remaining as f64 / rate))
    }
}

/// `1h02m`, `3m05s` or `42s`.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_come_from_differences_of_running_means() {
        let mut s = Smoother::default();
        // 100 samples at loss 2.0, then 100 more at loss 1.0 (running mean 1.5).
        assert_eq!(s.push(100, 2.0, 0.5), Some((2.0, 0.5)));
        let (loss, acc) = s.push(200, 1.5, 0.75).unwrap();
        assert!((loss - (2.0 + SMOOTHING * (1.0 - 2.0))).abs() < 1e-6, "{loss}");
        assert!((acc - (0.5 + SMOOTHING * (1.0 - 0.5))).abs() < 1e-6, "{acc}");
        assert_eq!(s.push(200, 1.5, 0.75), None);
        s.new_epoch();
        assert!(s.push(50, 0.5, 1.0).is_some());
    }

    #[test]
    fn downsampling_keeps_means_and_bounds_the_count() {
        let points: Vec<(f64, f64)> = (0..1000).map(|i| (i as f64, 1.0)).collect();
        let small = downsample(&points, 100);
        assert_eq!(small.len(), 100);
        assert!(small.iter().all(|p| p.1 == 1.0));
        assert_eq!(small[0].0, 4.5);
        assert_eq!(downsample(&points[..10], 100).len(), 10);
        assert_eq!(recent(&points, 5)[0].0, 995.0);
        assert_eq!(recent(&points[..2], 5).len(), 2);
    }

    #[test]
    fn eta_waits_for_the_warm_up_and_follows_the_rate() {
        let t0 = Instant::now();
        let mut t = Throughput::default();
        t.mark(t0, 100);
        t.mark(t0 + Duration::from_secs(1), 1100);
        assert_eq!(t.samples_per_second(), Some(1000.0));
        assert_eq!(t.eta(5000), None, "before the warm-up");
        t.mark(t0 + Duration::from_secs(4), 4100);
        assert_eq!(t.eta(5000), Some(Duration::from_secs(5)));
        // The window slides: it starts at the newest mark at least RATE_WINDOW old (4 s).
        t.mark(t0 + Duration::from_secs(30), 6100);
        t.mark(t0 + Duration::from_secs(31), 8100);
        assert_eq!(t.samples_per_second(), Some(4000.0 / 27.0));
        t.restart();
        assert_eq!(t.samples_per_second(), None);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_duration(Duration::from_secs(42)), "42s");
        assert_eq!(format_duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(format_duration(Duration::from_secs(3720)), "1h02m");
    }
}
