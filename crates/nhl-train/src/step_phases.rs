//! Where a training step's wall-clock time goes, phase by phase.
//!
//! On the CPU backend every op has finished when it returns, so each phase's time is its work.
//! A GPU backend records work and runs it later: there the phases show where the host thread
//! spends or waits its time, and the waiting falls on whichever phase reads a result back.

use std::time::Instant;

/// The phases of one step, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Gathering the batch and the forward pass through backbone and hash layer.
    Forward,
    /// Every length's objective `J_k` and output gradient `D_k` (and, in the adaptive modes, the
    /// batch Gram matrix, which the CPU backend forms alongside).
    Objectives,
    /// The dominance weights from the gradient products (adaptive modes).
    Weights,
    /// Seeding the output gradient, the backward pass and the gradient accumulation.
    Backward,
    /// The optimiser step.
    Update,
}

impl Phase {
    /// Every phase, in step order.
    pub const ALL: [Phase; 5] = [
        Phase::Forward,
        Phase::Objectives,
        Phase::Weights,
        Phase::Backward,
        Phase::Update,
    ];

    /// A short lower-case name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Forward => "forward",
            Phase::Objectives => "objectives",
            Phase::Weights => "weights",
            Phase::Backward => "backward",
            Phase::Update => "update",
        }
    }
}

/// Wall-clock seconds that `steps` steps spent in each [`Phase`], summed.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepPhases {
    /// Steps timed.
    pub steps: usize,
    /// Seconds per phase, indexed in [`Phase::ALL`] order.
    pub seconds: [f64; 5],
}

impl StepPhases {
    /// The sum of both: `self` then `other`.
    pub fn merged(&self, other: &StepPhases) -> StepPhases {
        StepPhases {
            steps: self.steps + other.steps,
            seconds: std::array::from_fn(|i| self.seconds[i] + other.seconds[i]),
        }
    }

    /// Mean microseconds per step of each phase (zeros when no step was timed).
    pub fn micros_per_step(&self) -> [f64; 5] {
        let steps = self.steps.max(1) as f64;
        self.seconds.map(|s| s * 1e6 / steps)
    }
}

/// Times the consecutive phases of one step: [`PhaseClock::lap`] charges the time since the
/// previous lap (or the start) to a phase.
pub(crate) struct PhaseClock {
    last: Instant,
    seconds: [f64; 5],
}

impl PhaseClock {
    /// Starts timing a step.
    pub(crate) fn start() -> Self {
        Self {
            last: Instant::now(),
            seconds: [0.0; 5],
        }
    }

    /// Charges the time since the previous lap to `phase`.
    pub(crate) fn lap(&mut self, phase: Phase) {
        let now = Instant::now();
        self.seconds[phase as usize] += (now - self.last).as_secs_f64();
        self.last = now;
    }

    /// Adds this step's times to `total`.
    pub(crate) fn finish(self, total: &mut StepPhases) {
        *total = total.merged(&StepPhases {
            steps: 1,
            seconds: self.seconds,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn laps_fall_on_their_phases_and_steps_add_up() {
        let mut total = StepPhases::default();
        for _ in 0..2 {
            let mut clock = PhaseClock::start();
            std::thread::sleep(std::time::Duration::from_millis(3));
            clock.lap(Phase::Objectives);
            clock.lap(Phase::Update);
            clock.finish(&mut total);
        }
        assert_eq!(total.steps, 2);
        let us = total.micros_per_step();
        assert!(us[Phase::Objectives as usize] >= 3000.0, "{us:?}");
        for unused in [Phase::Forward, Phase::Weights, Phase::Backward] {
            assert_eq!(us[unused as usize], 0.0, "{unused:?}");
        }
        assert_eq!(StepPhases::default().micros_per_step(), [0.0; 5]);
    }
}
