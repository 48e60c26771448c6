//! The general way: Burn's reverse-mode autodiff, for any function.

use std::marker::PhantomData;
use std::ops::Range;

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;

use crate::{Differentiable, FullRows, JacobianError, PerSample};

/// How [`ReverseMode`] gathers the rows of the per-sample Jacobian (see the
/// [crate documentation](crate)). The full layout always takes one pass per row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Strategy {
    /// One forward and one backward pass per row of cotangents.
    PerOutput,
    /// The batch repeated once per row of cotangents, each copy carrying its own: one forward
    /// and one backward pass for all rows of a chunk.
    #[default]
    StackedOutputs,
}

/// Any function `f: Tensor<AD, D> -> Tensor<AD, 2>` on an autodiff backend `AD`, a closure or a
/// module's `forward`, differentiated by Burn's reverse mode. Its Jacobians are tensors of
/// `AD`'s inner backend, on the input's device.
///
/// Burn's autodiff consumes its graph in each backward pass, so every backward pass has a
/// forward pass of its own; the [`Strategy`] decides how many.
///
/// ```
/// use burn::backend::{Autodiff, NdArray};
/// use burn::tensor::Tensor;
/// use jacobian::{per_sample, JacobianConfig, ReverseMode, Strategy};
///
/// type B = Autodiff<NdArray>;
/// let device = Default::default();
/// // Element-wise square of 3 features: each sample's Jacobian is diag(2 x[b]).
/// let square = ReverseMode::new(|x: Tensor<B, 2>| x.clone() * x).with_strategy(Strategy::PerOutput);
/// let x = Tensor::<NdArray, 2>::from_floats([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]], &device);
/// let j = per_sample::<_, _, 2, 3>(&square, x, &JacobianConfig::new()).unwrap().jacobian;
/// let expected = Tensor::<NdArray, 3>::from_floats(
///     [[[2.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 6.0]],
///      [[-2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]],
///     &device,
/// );
/// j.into_data().assert_eq(&expected.into_data(), true);
/// ```
pub struct ReverseMode<AD, F> {
    f: F,
    strategy: Strategy,
    backend: PhantomData<fn() -> AD>,
}

impl<AD: AutodiffBackend, F> ReverseMode<AD, F> {
    /// Wraps `f`, with the default [`Strategy`].
    pub fn new<const D: usize>(f: F) -> Self
    where
        F: Fn(Tensor<AD, D>) -> Tensor<AD, 2>,
    {
        ReverseMode {
            f,
            strategy: Strategy::default(),
            backend: PhantomData,
        }
    }

    /// The same function, its rows gathered by `strategy`.
    pub fn with_strategy(self, strategy: Strategy) -> Self {
        ReverseMode { strategy, ..self }
    }

    /// How rows are gathered.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// Vector-Jacobian products of `copies` rows of cotangents, gathered by `strategy`: row `c`
    /// of the result is `sum_{b, k} cotangents[c, b, k] d y[b, k] / d x`, with `f(x)`.
    ///
    /// # Shapes
    ///
    /// - x: `[n, input dims...]`
    /// - cotangents: `[copies, n, O]`
    /// - output: `[copies, n, N]` and `[n, O]`
    fn vector_jacobian_products<const D: usize>(
        &self,
        x: Tensor<AD::InnerBackend, D>,
        cotangents: Tensor<AD::InnerBackend, 3>,
        strategy: Strategy,
    ) -> Result<Products<AD::InnerBackend>, JacobianError>
    where
        F: Fn(Tensor<AD, D>) -> Tensor<AD, 2>,
    {
        let [copies, n, outputs] = cotangents.dims();
        let input_len = x.dims()[1..].iter().product::<usize>();
        match strategy {
            Strategy::PerOutput => {
                let mut rows = Vec::with_capacity(copies);
                let mut first_outputs = None;
                for c in 0..copies {
                    let xc = Tensor::<AD, D>::from_inner(x.clone()).require_grad();
                    let y = (self.f)(xc.clone());
                    check_outputs(&y, n, outputs)?;
                    first_outputs.get_or_insert_with(|| y.clone().inner());
                    let cotangent = cotangents.clone().narrow(0, c, 1).reshape([n, outputs]);
                    let grads = backward((y * Tensor::from_inner(cotangent)).sum());
                    rows.push(gradient(&xc, &grads, [1, n, input_len]));
                }
                let outputs = first_outputs.ok_or(JacobianError::EmptyBatch)?;
                Ok(Products {
                    rows: Tensor::cat(rows, 0),
                    outputs,
                })
            }
            Strategy::StackedOutputs => {
                // Copy c of the batch (samples c*n .. (c+1)*n) carries cotangent row c.
                let stacked = Tensor::cat(vec![x; copies], 0);
                let xs = Tensor::<AD, D>::from_inner(stacked).require_grad();
                let y = (self.f)(xs.clone());
                check_outputs(&y, copies * n, outputs)?;
                let first_outputs = y.clone().inner().narrow(0, 0, n);
                let cotangents = Tensor::from_inner(cotangents.reshape([copies * n, outputs]));
                let grads = backward((y * cotangents).sum());
                Ok(Products {
                    rows: gradient(&xs, &grads, [copies, n, input_len]),
                    outputs: first_outputs,
                })
            }
        }
    }
}

/// Vector-Jacobian products and `f(x)`.
///
/// # Shapes
///
/// - rows: `[copies, n, N]`
/// - outputs: `[n, O]`
struct Products<B: Backend> {
    rows: Tensor<B, 3>,
    outputs: Tensor<B, 2>,
}

impl<AD, F, const D: usize> Differentiable<AD::InnerBackend, D> for ReverseMode<AD, F>
where
    AD: AutodiffBackend,
    F: Fn(Tensor<AD, D>) -> Tensor<AD, 2>,
{
    fn forward(&self, x: Tensor<AD::InnerBackend, D>) -> Tensor<AD::InnerBackend, 2> {
        // The input does not require gradients: nothing is recorded.
        (self.f)(Tensor::from_inner(x)).inner()
    }

    fn per_sample(
        &self,
        x: Tensor<AD::InnerBackend, D>,
    ) -> Result<PerSample<AD::InnerBackend>, JacobianError> {
        let n = x.dims()[0];
        let outputs = num_outputs(self, &x)?;
        // Row k carries e_k at every sample's outputs: since samples are independent,
        // d (sum_b y[b, k]) / d x[b] is row k of sample b's Jacobian, for all b at once.
        let cotangents = Tensor::eye(outputs, &x.device())
            .reshape([outputs, 1, outputs])
            .expand([outputs, n, outputs]);
        let products = self.vector_jacobian_products(x, cotangents, self.strategy)?;
        Ok(PerSample {
            jacobian: products.rows.swap_dims(0, 1), // [O, n, N] -> [n, O, N]
            outputs: products.outputs,
        })
    }

    fn full_rows(
        &self,
        x: Tensor<AD::InnerBackend, D>,
        rows: Range<usize>,
    ) -> Result<FullRows<AD::InnerBackend>, JacobianError> {
        let n = x.dims()[0];
        let input_len = x.dims()[1..].iter().product::<usize>();
        let outputs = num_outputs(self, &x)?;
        let device = x.device();
        // Row (b, k) carries e_k at sample b's outputs and zero at every other sample's:
        // nothing is assumed of how samples interact. Nor are rows stacked into a larger
        // batch: when samples interact, f of a larger batch is another function.
        let samples = Tensor::eye(n, &device)
            .narrow(0, rows.start, rows.len())
            .reshape([rows.len(), 1, n, 1]);
        let classes = Tensor::eye(outputs, &device).reshape([1, outputs, 1, outputs]);
        let cotangents = (samples * classes).reshape([rows.len() * outputs, n, outputs]);
        let products = self.vector_jacobian_products(x, cotangents, Strategy::PerOutput)?;
        Ok(FullRows {
            jacobian: products.rows.reshape([rows.len(), outputs, n, input_len]),
            outputs: products.outputs.narrow(0, rows.start, rows.len()),
        })
    }

    fn disconnected_outputs(
        &self,
        x: Tensor<AD::InnerBackend, D>,
    ) -> Result<Vec<usize>, JacobianError> {
        let outputs = num_outputs(self, &x)?;
        let mut disconnected = Vec::new();
        for k in 0..outputs {
            let xk = Tensor::<AD, D>::from_inner(x.clone()).require_grad();
            let grads = backward((self.f)(xk.clone()).narrow(1, k, 1).sum());
            if xk.grad(&grads).is_none() {
                disconnected.push(k);
            }
        }
        Ok(disconnected)
    }
}

/// Outputs per sample, from `f` of the first sample.
fn num_outputs<AD, F, const D: usize>(
    f: &ReverseMode<AD, F>,
    x: &Tensor<AD::InnerBackend, D>,
) -> Result<usize, JacobianError>
where
    AD: AutodiffBackend,
    F: Fn(Tensor<AD, D>) -> Tensor<AD, 2>,
{
    if x.dims()[0] == 0 {
        return Err(JacobianError::EmptyBatch);
    }
    let y = f.forward(x.clone().narrow(0, 0, 1));
    check_outputs(&y, 1, y.dims()[1])?;
    Ok(y.dims()[1])
}

fn check_outputs<B: Backend>(
    y: &Tensor<B, 2>,
    batch: usize,
    outputs: usize,
) -> Result<(), JacobianError> {
    if y.dims() == [batch, outputs] {
        Ok(())
    } else {
        Err(JacobianError::OutputShape {
            batch,
            output: y.dims().to_vec(),
        })
    }
}

/// Gradients of the scalar `root`. A tracked zero is added first: Burn panics on the backward
/// pass of a tensor outside any graph (an output that does not depend on the input), while
/// this way such an input simply gets no gradient.
fn backward<AD: AutodiffBackend>(root: Tensor<AD, 1>) -> AD::Gradients {
    let anchor = Tensor::<AD, 1>::zeros([1], &root.device()).require_grad();
    (root + anchor).backward()
}

/// `x`'s gradient reshaped to `shape`; zeros when `x` does not reach the root.
fn gradient<AD: AutodiffBackend, const D: usize>(
    x: &Tensor<AD, D>,
    grads: &AD::Gradients,
    shape: [usize; 3],
) -> Tensor<AD::InnerBackend, 3> {
    match x.grad(grads) {
        Some(g) => g.reshape(shape),
        None => Tensor::zeros(shape, &x.device()),
    }
}
