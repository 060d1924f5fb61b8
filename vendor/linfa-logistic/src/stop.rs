//! vggcache patch: scikit-learn's stopping test as an option of the solver.
//!
//! argmin's L-BFGS stops when the **L2 norm** of the gradient is below `tol_grad` (upstream's
//! rule). scipy's L-BFGS-B, which scikit-learn's `LogisticRegression(solver="lbfgs")` runs, stops
//! when the **largest absolute component** of the (projected) gradient is at most `gtol`. For a
//! gradient of dimension `p` the L2 norm is up to `√p` times the max-abs, so the L2 rule at the same
//! number can run many more iterations. [`GradientNorm::MaxAbs`] wraps the L-BFGS solver in
//! [`Stop`], whose `terminate` applies the max-abs test to the state's gradient; the wrapped solver
//! keeps its cost-change test and gets `tol_grad = 0`, so its L2 test never fires. Everything else
//! (line search, memory, iterations) is the wrapped solver's own.

use argmin::core::{Error, IterState, Problem, Solver, TerminationReason, TerminationStatus, KV};
use ndarray::Dimension;

use crate::argmin_param::ArgminParam;
use crate::float::Float;

/// Which norm of the gradient the stopping tolerance applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde_crate::Serialize, serde_crate::Deserialize),
    serde(crate = "serde_crate")
)]
pub enum GradientNorm {
    /// Euclidean norm (upstream's rule, the default).
    #[default]
    L2,
    /// Largest absolute component (scipy's L-BFGS-B `gtol`, as scikit-learn uses it).
    MaxAbs,
}

type State<F, D> = IterState<ArgminParam<F, D>, ArgminParam<F, D>, (), (), (), F>;

/// A solver whose gradient test is `max |g_i| ≤ tol` when `max_abs` is set; otherwise the wrapped
/// solver's own tests only.
#[derive(Clone)]
pub struct Stop<S, F> {
    pub(crate) inner: S,
    pub(crate) max_abs: Option<F>,
}

impl<O, S, F, D> Solver<O, State<F, D>> for Stop<S, F>
where
    S: Solver<O, State<F, D>>,
    F: Float,
    D: Dimension,
{
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn init(
        &mut self,
        problem: &mut Problem<O>,
        state: State<F, D>,
    ) -> Result<(State<F, D>, Option<KV>), Error> {
        self.inner.init(problem, state)
    }

    fn next_iter(
        &mut self,
        problem: &mut Problem<O>,
        state: State<F, D>,
    ) -> Result<(State<F, D>, Option<KV>), Error> {
        self.inner.next_iter(problem, state)
    }

    fn terminate(&mut self, state: &State<F, D>) -> TerminationStatus {
        if let (Some(tol), Some(g)) = (self.max_abs, state.get_gradient()) {
            let max = g
                .as_array()
                .iter()
                .fold(F::zero(), |m, &v| if v.abs() > m { v.abs() } else { m });
            if max <= tol {
                return TerminationStatus::Terminated(TerminationReason::SolverConverged);
            }
        }
        self.inner.terminate(state)
    }
}
